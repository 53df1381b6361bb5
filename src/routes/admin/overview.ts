import { Hono } from "hono";
import { type AppEnv, allShards, sumOverviews } from "../../env";
import { COHORTS } from "../../lib/config";
import { formatCents, formatMoney, microsToWholeCents } from "../../lib/money";
import { DAY_MS } from "../../lib/time";
import { totalsByMeter, usageJson } from "../../usage";

/** `/admin/overview`: the numbers across customers the dashboard's overview shows, the directory shards' rollups summed. */
export const overview = new Hono<AppEnv>();

overview.get("/overview", async (c) => {
  const currency = c.var.config.PRICING.currency;
  const o = sumOverviews(await Promise.all(allShards(c.env, c.var.config.DIRECTORY_SHARDS).map((shard) => shard.overview())));
  const now = Date.now();
  const points = o.usage.map((u) => ({ meter: u.meter, at: u.hour, requests: u.requests, micros: u.micros }));
  return c.json({
    customers: o.customers,
    cohorts: COHORTS.map((name) => ({ name, members: o.cohorts[name] ?? 0 })),
    credit_outstanding: {
      currency,
      total_cents: microsToWholeCents(o.outstandingMicros),
      total_exact_cents: formatCents(o.outstandingMicros),
      total: formatMoney(o.outstandingMicros, currency),
      customers_with_credit: o.customersWithCredit,
      overdrawn_exact_cents: formatCents(o.overdrawnMicros),
    },
    stripe_reports: { pending: o.reports.pending, failed: o.reports.failed, customers_with_failed: o.reports.customersWithFailed },
    emails: o.emails,
    usage_totals: { last_24h: totalsByMeter(points, now - DAY_MS), last_7d: totalsByMeter(points, now - 7 * DAY_MS) },
    usage_by_hour: usageJson(points),
    rolled_up_at: o.rolledUpAt,
  });
});
