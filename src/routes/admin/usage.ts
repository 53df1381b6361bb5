import { Hono } from "hono";
import { type AppEnv, customerStub } from "../../env";
import { queryInt } from "../../http";
import { HOUR_MS } from "../../lib/time";
import { totalsByMeter, usageJson } from "../../usage";
import { customerId, notFound } from "./customers";

/** `/admin/customers/{id}/usage`: requests and charges per meter per usage bucket, for charts. */
export const usage = new Hono<AppEnv>();

usage.get("/customers/:id/usage", async (c) => {
  const id = customerId(c.req.param("id"));
  const hours = queryInt(c, "hours", 168, 1, 24 * 90);
  const stub = customerStub(c.env, id);
  if (!(await stub.exists())) notFound(id);
  const now = Date.now();
  // Buckets that started up to one bucket before the window still overlap it.
  const since = now - hours * HOUR_MS - c.var.config.PRICING.usage_bucket_seconds * 1000;
  const points = (await stub.usageSeries(since)).map((r) => ({
    meter: r.meter,
    at: r.bucket,
    requests: r.requests,
    micros: r.micros,
  }));
  return c.json({
    currency: c.var.config.PRICING.currency,
    bucket_seconds: c.var.config.PRICING.usage_bucket_seconds,
    hours,
    totals: { last_24h: totalsByMeter(points, now - 24 * HOUR_MS), range: totalsByMeter(points, since) },
    series: usageJson(points),
  });
});
