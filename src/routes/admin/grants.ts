import { Hono } from "hono";
import { z } from "zod";
import { type AppEnv, customerStub } from "../../env";
import { jsonBody, queryInt } from "../../http";
import { meterByName } from "../../lib/config";
import { ApiError } from "../../lib/errors";
import { MAX_STRIPE_AMOUNT_CENTS, microsToWholeCents } from "../../lib/money";
import { customerId, idempotencyKey, notFound } from "./customers";

const GrantBody = z.strictObject({
  amount: z.int("amount must be a whole number of cents").min(1).max(MAX_STRIPE_AMOUNT_CENTS),
  category: z.enum(["paid", "promotional"]).optional(),
  priority: z.int().min(0).max(1_000).optional(),
  expires_at: z.int("expires_at is Unix seconds").min(1).max(32_503_680_000).optional(),
  meters: z.array(z.string().min(1).max(64)).min(1).max(50).optional(),
  reason: z.string().min(1).max(500),
});

/** `/admin/customers/{id}/grants…`: credit grants with a category, priority, expiry and meter scope. */
export const grants = new Hono<AppEnv>();

grants.post("/customers/:id/grants", async (c) => {
  const id = customerId(c.req.param("id"));
  const body = await jsonBody(c, GrantBody);
  const config = c.var.config;
  if (body.expires_at !== undefined && body.expires_at * 1000 <= Date.now()) {
    throw new ApiError("invalid_request", "expires_at must be in the future (Unix seconds).");
  }
  const unknown = (body.meters ?? []).filter((m) => !meterByName(config, m));
  if (unknown.length) throw new ApiError("invalid_request", `Unknown meters: ${unknown.join(", ")}.`, { unknown_meters: unknown });
  const key = idempotencyKey(c.req.header("idempotency-key"));
  const stub = customerStub(c.env, id);
  if (!(await stub.exists())) notFound(id);
  const result = await stub.grant({
    customerId: id,
    amountCents: body.amount,
    reason: body.reason,
    ...(body.category ? { category: body.category } : {}),
    ...(body.priority !== undefined ? { priority: body.priority } : {}),
    ...(body.expires_at !== undefined ? { expiresAt: body.expires_at } : {}),
    ...(body.meters ? { meters: [...new Set(body.meters)] } : {}),
    ...(key ? { reference: `grant_${key}` } : {}),
  });
  if (result.status === "conflict") throw new ApiError("conflict", "This Idempotency-Key was already used for a different grant.");
  if (result.status === "balance_limit") throw new ApiError("conflict", "This grant would take the balance past the largest balance the gateway holds.");
  return c.json({ ...(await stub.grantView(result.grant!.id)), balance: { available_cents: microsToWholeCents(result.balanceMicros) } }, result.status === "created" ? 201 : 200);
});

grants.get("/customers/:id/grants", async (c) => {
  const id = customerId(c.req.param("id"));
  const stub = customerStub(c.env, id);
  if (!(await stub.exists())) notFound(id);
  return c.json({ grants: await stub.listGrants(queryInt(c, "limit", 100, 1, 500)) });
});

grants.delete("/customers/:id/grants/:grantId", async (c) => {
  const id = customerId(c.req.param("id"));
  const stub = customerStub(c.env, id);
  if (!(await stub.exists())) notFound(id);
  const voided = await stub.voidGrant(c.req.param("grantId"));
  if (!voided) throw new ApiError("not_found", `No open grant ${c.req.param("grantId")} for customer ${id}.`);
  return c.json(voided);
});
