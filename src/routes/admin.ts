import { Hono } from "hono";
import { z } from "zod";
import { COHORTS } from "../config";
import { sendViaMailChannels } from "../email/mailchannels";
import { customerStub, directoryStub, type AppEnv } from "../env";
import { ApiError } from "../errors";
import { jsonBody, queryInt } from "../http";
import { CUSTOMER_ID } from "../keys";
import { mergeValues } from "../merge";
import { limitBody } from "../middleware/body-limit";
import { adminAuth } from "../middleware/admin-auth";
import { MAX_AMOUNT_CENTS, centsToMicros, microsToWholeCents } from "../money";
import { escapeHtml, renderString } from "../template";

const ADMIN_BODY_LIMIT = 64 * 1024;

const CustomerBody = z.strictObject({
  email: z.email().max(320).nullable().optional(),
  name: z.string().max(200).nullable().optional(),
  metadata: z.record(z.string().max(40), z.string().max(500)).optional(),
  plan: z.enum(["prepaid", "postpaid"]).optional(),
  minimum_balance_cents: z.int().min(-MAX_AMOUNT_CENTS).max(MAX_AMOUNT_CENTS).nullable().optional(),
});

const KeyBody = z.strictObject({ name: z.string().max(100).optional() });

const CreditBody = z.strictObject({
  amount: z
    .int("amount must be a whole number of cents")
    .min(-MAX_AMOUNT_CENTS)
    .max(MAX_AMOUNT_CENTS)
    .refine((n) => n !== 0, "amount must not be 0"),
  reason: z.string().min(1).max(500),
});

const TestEmailBody = z.strictObject({
  template: z.enum(COHORTS),
  to: z.email(),
  customer_id: z.string().regex(CUSTOMER_ID).optional(),
});

function customerId(raw: string): string {
  if (!CUSTOMER_ID.test(raw)) throw new ApiError("invalid_request", "Customer ids match [A-Za-z0-9_-]{1,64}.");
  return raw;
}

function notFound(id: string): never {
  throw new ApiError("not_found", `No customer ${id}.`);
}

export const admin = new Hono<AppEnv>().basePath("/admin");

admin.use(adminAuth(), limitBody(ADMIN_BODY_LIMIT));

admin.get("/status", (c) => {
  const config = c.var.config;
  return c.json({
    stripe: config.stripeEnabled ? "on" : "off",
    email_delivery: config.emailDelivery,
    origin: config.ORIGIN_URL,
    default_price_cents: config.PRICING.fallback.priceMicros / 1_000_000,
    minimum_balance_cents: config.GOVERNANCE.minimum_balance_cents,
  });
});

admin.get("/customers", async (c) => {
  const limit = queryInt(c, "limit", 50, 1, 500);
  return c.json(await directoryStub(c.env).customers(c.req.query("cursor") ?? null, limit));
});

admin.put("/customers/:id", async (c) => {
  const id = customerId(c.req.param("id"));
  const body = await jsonBody(c, CustomerBody);
  const result = await customerStub(c.env, id).upsertProfile(id, body);
  const summary = await customerStub(c.env, id).summary();
  return c.json(summary, result.created ? 201 : 200);
});

admin.get("/customers/:id", async (c) => {
  const id = customerId(c.req.param("id"));
  return c.json((await customerStub(c.env, id).summary()) ?? notFound(id));
});

admin.post("/customers/:id/keys", async (c) => {
  const id = customerId(c.req.param("id"));
  const body = await jsonBody(c, KeyBody);
  const key = (await customerStub(c.env, id).createKey(body.name ?? null)) ?? notFound(id);
  return c.json(key, 201);
});

admin.get("/customers/:id/keys", async (c) => {
  const id = customerId(c.req.param("id"));
  const stub = customerStub(c.env, id);
  if (!(await stub.summary())) notFound(id);
  return c.json({ keys: await stub.listKeys() });
});

admin.delete("/customers/:id/keys/:keyId", async (c) => {
  const id = customerId(c.req.param("id"));
  if (!(await customerStub(c.env, id).revokeKey(c.req.param("keyId")))) {
    throw new ApiError("not_found", `No active key ${c.req.param("keyId")} for customer ${id}.`);
  }
  return c.body(null, 204);
});

admin.post("/customers/:id/credits", async (c) => {
  const id = customerId(c.req.param("id"));
  const body = await jsonBody(c, CreditBody);
  const idempotencyKey = c.req.header("idempotency-key");
  if (idempotencyKey !== undefined && !/^[\x21-\x7e]{1,128}$/.test(idempotencyKey)) {
    throw new ApiError("invalid_request", "Idempotency-Key must be 1-128 printable characters.");
  }
  const stub = customerStub(c.env, id);
  if (!(await stub.summary())) notFound(id);
  const result = await stub.grant({
    customerId: id,
    amountCents: body.amount,
    reason: body.reason,
    ...(idempotencyKey ? { reference: `admin_${idempotencyKey}` } : {}),
  });
  if (result.conflict) {
    throw new ApiError("conflict", "This Idempotency-Key was already used for a different amount.");
  }
  return c.json(
    {
      applied: result.applied,
      ledger_entry_id: result.entryId,
      balance: { available_cents: microsToWholeCents(result.balanceMicros) },
    },
    result.applied ? 201 : 200,
  );
});

admin.get("/customers/:id/ledger", async (c) => {
  const id = customerId(c.req.param("id"));
  const limit = queryInt(c, "limit", 50, 1, 500);
  const cursor = c.req.query("cursor") === undefined ? undefined : queryInt(c, "cursor", 0, 1, Number.MAX_SAFE_INTEGER);
  const stub = customerStub(c.env, id);
  if (!(await stub.summary())) notFound(id);
  return c.json(await stub.ledgerPage({ limit, ...(cursor ? { before: cursor } : {}) }));
});

admin.get("/customers/:id/emails", async (c) => {
  const id = customerId(c.req.param("id"));
  const stub = customerStub(c.env, id);
  if (!(await stub.summary())) notFound(id);
  return c.json({ delivery: c.var.config.emailDelivery, emails: await stub.emails(queryInt(c, "limit", 50, 1, 500)) });
});

admin.get("/cohorts", async (c) => {
  const counts = await directoryStub(c.env).cohortCounts();
  return c.json({ cohorts: COHORTS.map((name) => ({ name, members: counts[name] ?? 0 })) });
});

admin.get("/cohorts/:cohort/members", async (c) => {
  const cohort = c.req.param("cohort");
  if (!(COHORTS as readonly string[]).includes(cohort)) throw new ApiError("not_found", `No cohort ${cohort}.`);
  const limit = queryInt(c, "limit", 50, 1, 500);
  return c.json(await directoryStub(c.env).cohortMembers(cohort as (typeof COHORTS)[number], c.req.query("cursor") ?? null, limit));
});

/** Like the tutorial's Test button: renders a template with a customer's (or sample) data and sends it. */
admin.post("/emails/test", async (c) => {
  const config = c.var.config;
  const body = await jsonBody(c, TestEmailBody);
  const template = config.EMAILS?.templates[body.template];
  if (!config.EMAILS || !template) throw new ApiError("not_found", `No email template for cohort ${body.template}.`);
  let values = mergeValues(
    config,
    { id: "cus_sample", name: "Ada Lovelace", email: body.to },
    { balanceMicros: 0, minimumMicros: centsToMicros(config.GOVERNANCE.minimum_balance_cents), priceMicros: config.PRICING.fallback.priceMicros },
  );
  if (body.customer_id) {
    const summary = (await customerStub(c.env, body.customer_id).summary()) as {
      customer: { id: string; name: string | null; email: string | null };
      balance: { available_cents: number; minimum_cents: number };
    } | null;
    if (!summary) notFound(body.customer_id);
    const { customer, balance } = summary;
    values = mergeValues(config, customer, {
      balanceMicros: centsToMicros(balance.available_cents),
      minimumMicros: centsToMicros(balance.minimum_cents),
      priceMicros: config.PRICING.fallback.priceMicros,
    });
  }
  const email = {
    to: body.to,
    subject: renderString(template.subject, values),
    text: renderString(template.text, values),
    html: template.html ? renderString(template.html, escapeHtml(values)) : null,
  };
  if (config.emailDelivery === "outbox") {
    const id = await directoryStub(c.env).recordTestEmail(email);
    return c.json({ status: "outbox", id, email }, 202);
  }
  const result = await sendViaMailChannels(config, { ...email, ...(email.html ? { html: email.html } : { html: undefined }) });
  if (result.outcome !== "sent") throw new ApiError("upstream_error", `MailChannels did not accept the email: ${result.error}`);
  return c.json({ status: "sent", email }, 202);
});

admin.get("/emails/test-outbox", async (c) => {
  return c.json({ emails: await directoryStub(c.env).testOutbox(queryInt(c, "limit", 50, 1, 500)) });
});

admin.all("*", (c) => {
  const path = new URL(c.req.url).pathname;
  const allowed = admin.routes
    .filter((r) => r.method !== "ALL" && new RegExp(`^${r.path.replace(/:[^/]+/g, "[^/]+")}$`).test(path))
    .map((r) => r.method);
  if (allowed.length) {
    throw new ApiError("method_not_allowed", `${c.req.method} is not allowed on ${path}; use ${[...new Set(allowed)].join(", ")}.`);
  }
  throw new ApiError("not_found", `No admin route ${c.req.method} ${path}.`);
});
