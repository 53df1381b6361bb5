import { Hono } from "hono";
import { z } from "zod";
import { type AppEnv, allShards, customerStub, mergeCustomerPages } from "../../env";
import { jsonBody, queryInt } from "../../http";
import { CUSTOMER_ID } from "../../lib/api-key-format";
import { ApiError } from "../../lib/errors";
import { MAX_AMOUNT_CENTS, MAX_STRIPE_AMOUNT_CENTS, microsToWholeCents } from "../../lib/money";
import { autoTopUpField } from "./auto-top-up-settings";

const CustomerBody = z.strictObject({
  email: z.email().max(320).nullable().optional(),
  name: z.string().max(200).nullable().optional(),
  metadata: z.record(z.string().max(40), z.string().max(500)).optional(),
  plan: z.enum(["prepaid", "postpaid"]).optional(),
  minimum_balance_cents: z.int().min(-MAX_AMOUNT_CENTS).max(MAX_AMOUNT_CENTS).nullable().optional(),
});

const cap = {
  spend_cap_cents: z.int("spend_cap_cents must be a whole number of cents").min(1).max(MAX_STRIPE_AMOUNT_CENTS).nullable().optional(),
  cap_period: z.enum(["day", "month"]).optional(),
};
const KeyBody = z.strictObject({ name: z.string().max(100).optional(), ...cap });
const KeyPatch = z.strictObject(cap);

const CreditBody = z.strictObject({
  amount: z
    .int("amount must be a whole number of cents")
    .min(-MAX_STRIPE_AMOUNT_CENTS)
    .max(MAX_STRIPE_AMOUNT_CENTS)
    .refine((n) => n !== 0, "amount must not be 0"),
  reason: z.string().min(1).max(500),
});

export function customerId(raw: string): string {
  if (!CUSTOMER_ID.test(raw)) throw new ApiError("invalid_request", "Customer ids match [A-Za-z0-9_-]{1,64}.");
  return raw;
}

export function notFound(id: string): never {
  throw new ApiError("not_found", `No customer ${id}.`);
}

/** The `Idempotency-Key` header of an admin write, if any. */
export function idempotencyKey(header: string | undefined): string | undefined {
  if (header !== undefined && !/^[\x21-\x7e]{1,128}$/.test(header)) {
    throw new ApiError("invalid_request", "Idempotency-Key must be 1-128 printable characters.");
  }
  return header;
}

/** `/admin/customers…`: profiles, keys, credits, the ledger and the email log. */
export const customers = new Hono<AppEnv>();

customers.get("/customers", async (c) => {
  const limit = queryInt(c, "limit", 50, 1, 500);
  const q = c.req.query("q")?.trim().slice(0, 200) || null;
  const cursor = c.req.query("cursor") ?? null;
  // Every shard is searched at once; their pages are merged by id.
  const pages = await Promise.all(allShards(c.env, c.var.config.DIRECTORY_SHARDS).map((shard) => shard.customers(cursor, limit, q)));
  return c.json(mergeCustomerPages(pages, limit));
});

customers.put("/customers/:id", async (c) => {
  const id = customerId(c.req.param("id"));
  const { auto_topup, ...body } = await jsonBody(c, CustomerBody.extend({ auto_topup: autoTopUpField(c.var.config) }));
  if (auto_topup && !c.var.config.stripeEnabled) throw new ApiError("stripe_not_configured", "Auto top-up charges a saved card: set STRIPE_SECRET_KEY.");
  const result = await customerStub(c.env, id).upsertProfile(id, body, auto_topup);
  if ("refused" in result) throw new ApiError("conflict", result.refused);
  const summary = await customerStub(c.env, id).summary();
  return c.json(summary, result.created ? 201 : 200);
});

customers.get("/customers/:id", async (c) => {
  const id = customerId(c.req.param("id"));
  return c.json((await customerStub(c.env, id).summary()) ?? notFound(id));
});

/**
 * What one proxied request was charged, by its `x-request-id`: for a request billed from its
 * response, the hold, the units read, the units past the hold (never charged) and why it settled.
 * A streamed response's charge also ends the stream as an SSE comment (Workers cannot send trailers).
 */
customers.get("/customers/:id/requests/:requestId", async (c) => {
  const id = customerId(c.req.param("id"));
  const requestId = c.req.param("requestId");
  if (!/^[\x21-\x7e]{1,128}$/.test(requestId)) throw new ApiError("invalid_request", "Request ids are 1-128 printable characters.");
  const charge = await customerStub(c.env, id).requestCharge(requestId);
  if (!charge) throw new ApiError("not_found", `No charge for request ${requestId} of customer ${id} (charges are kept for the refund window; holds until they are pruned).`);
  return c.json(charge);
});

customers.post("/customers/:id/keys", async (c) => {
  const id = customerId(c.req.param("id"));
  const body = await jsonBody(c, KeyBody);
  const key = (await customerStub(c.env, id).createKey(body.name ?? null, { spendCapCents: body.spend_cap_cents ?? null, capPeriod: body.cap_period ?? null })) ?? notFound(id);
  return c.json(key, 201);
});

/** Sets (or, with `spend_cap_cents: null`, removes) a key's spend cap. */
customers.patch("/customers/:id/keys/:keyId", async (c) => {
  const id = customerId(c.req.param("id"));
  const body = await jsonBody(c, KeyPatch);
  if (body.spend_cap_cents === undefined) throw new ApiError("invalid_request", "spend_cap_cents is required (null removes the cap).");
  const stub = customerStub(c.env, id);
  if (!(await stub.setKeyCap(c.req.param("keyId"), body.spend_cap_cents, body.cap_period ?? null))) {
    throw new ApiError("not_found", `No active key ${c.req.param("keyId")} for customer ${id}.`);
  }
  return c.json((await stub.listKeys()).find((k) => k.id === c.req.param("keyId")));
});

customers.get("/customers/:id/keys", async (c) => {
  const id = customerId(c.req.param("id"));
  const stub = customerStub(c.env, id);
  if (!(await stub.exists())) notFound(id);
  return c.json({ keys: await stub.listKeys() });
});

customers.delete("/customers/:id/keys/:keyId", async (c) => {
  const id = customerId(c.req.param("id"));
  if (!(await customerStub(c.env, id).revokeKey(c.req.param("keyId")))) {
    throw new ApiError("not_found", `No active key ${c.req.param("keyId")} for customer ${id}.`);
  }
  return c.body(null, 204);
});

customers.post("/customers/:id/credits", async (c) => {
  const id = customerId(c.req.param("id"));
  const body = await jsonBody(c, CreditBody);
  const key = idempotencyKey(c.req.header("idempotency-key"));
  const stub = customerStub(c.env, id);
  if (!(await stub.exists())) notFound(id);
  const result = await stub.credit({
    customerId: id,
    amountCents: body.amount,
    reason: body.reason,
    ...(key ? { reference: `admin_${key}` } : {}),
  });
  if (result.conflict) {
    throw new ApiError("conflict", "This Idempotency-Key was already used for a different amount.");
  }
  if (result.limit) throw new ApiError("conflict", "This credit would take the balance past the largest balance the gateway holds.");
  return c.json(
    {
      applied: result.applied,
      ledger_entry_id: result.entryId,
      balance: { available_cents: microsToWholeCents(result.balanceMicros) },
    },
    result.applied ? 201 : 200,
  );
});

customers.get("/customers/:id/ledger", async (c) => {
  const id = customerId(c.req.param("id"));
  const limit = queryInt(c, "limit", 50, 1, 500);
  const cursor = c.req.query("cursor") === undefined ? undefined : queryInt(c, "cursor", 0, 1, Number.MAX_SAFE_INTEGER);
  const stub = customerStub(c.env, id);
  if (!(await stub.exists())) notFound(id);
  return c.json(await stub.ledgerPage({ limit, ...(cursor ? { before: cursor } : {}) }));
});

customers.get("/customers/:id/emails", async (c) => {
  const id = customerId(c.req.param("id"));
  const stub = customerStub(c.env, id);
  if (!(await stub.exists())) notFound(id);
  return c.json({ delivery: c.var.config.emailDelivery, emails: await stub.emails(queryInt(c, "limit", 50, 1, 500)) });
});
