import { Hono } from "hono";
import { type AppEnv, customerStub } from "../../env";
import { queryInt } from "../../http";
import { TOKEN_KINDS, type TokenKind } from "../../lib/meters";
import { HOUR_MS } from "../../lib/time";
import { modelUsageJson, totalsByMeter, totalsByModel, usageJson } from "../../usage";
import { customerId, notFound } from "./customers";

/** `/admin/customers/{id}/usage`: requests and charges per meter per usage bucket (and per model for tokens meters), for charts. */
export const usage = new Hono<AppEnv>();

usage.get("/customers/:id/usage", async (c) => {
  const id = customerId(c.req.param("id"));
  const hours = queryInt(c, "hours", 168, 1, 24 * 90);
  const stub = customerStub(c.env, id);
  if (!(await stub.exists())) notFound(id);
  const now = Date.now();
  // Buckets that started up to one bucket before the window still overlap it.
  const since = now - hours * HOUR_MS - c.var.config.PRICING.usage_bucket_seconds * 1000;
  const { meters: usageRows, models: modelRows } = await stub.usageSeries(since);
  const points = usageRows.map((r) => ({ meter: r.meter, at: r.bucket, requests: r.requests, micros: r.micros }));
  const models = modelRows.map((r) => ({
    meter: r.meter,
    model: r.model,
    at: r.bucket,
    requests: r.requests,
    tokens: Object.fromEntries(TOKEN_KINDS.map((k) => [k, r[k]])) as Record<TokenKind, number>,
    micros: r.micros,
  }));
  return c.json({
    currency: c.var.config.PRICING.currency,
    bucket_seconds: c.var.config.PRICING.usage_bucket_seconds,
    hours,
    totals: { last_24h: totalsByMeter(points, now - 24 * HOUR_MS), range: totalsByMeter(points, since) },
    series: usageJson(points),
    // Tokens meters, split by model (the models table's row) and token kind.
    models: { totals: { last_24h: totalsByModel(models, now - 24 * HOUR_MS), range: totalsByModel(models, since) }, series: modelUsageJson(models) },
  });
});
