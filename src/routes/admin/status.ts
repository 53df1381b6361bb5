import { Hono } from "hono";
import { type AppEnv, allShards } from "../../env";
import { formatCents } from "../../lib/money";
import { paymentsStatus } from "../../payments/offer";

/** `/admin/status`: what is configured (agent payments' facilitator included), and, with Stripe on, the call budget's use and how far behind usage reports are. */
export const status = new Hono<AppEnv>();

status.get("/status", async (c) => {
  const config = c.var.config;
  const shards = config.DIRECTORY_SHARDS;
  const base = {
    stripe: config.stripeEnabled ? "on" : "off",
    email_delivery: config.emailDelivery,
    origin: config.ORIGIN_URL,
    // Exact, as configured: a sub-cent price is a decimal string, never a float.
    default_price_cents: formatCents(config.PRICING.fallback.priceMicros),
    minimum_balance_cents: config.GOVERNANCE.minimum_balance_cents,
    payments: await paymentsStatus(config),
    directory_shards: shards,
  };
  if (!config.stripeEnabled) return c.json(base);
  const parts = await Promise.all(allShards(c.env, shards).map((shard) => shard.status()));
  const b = config.stripeBudget;
  const sum = (pick: (p: (typeof parts)[number]) => number) => parts.reduce((total, p) => total + pick(p), 0);
  const max = (pick: (p: (typeof parts)[number]) => number) => Math.max(0, ...parts.map(pick));
  const granted = sum((p) => p.budget.last_minute.granted);
  const batching = parts.filter((p) => p.reports.batching).length;
  return c.json({
    ...base,
    stripe_budget: {
      mode: b.mode,
      max_calls_per_second: b.callsPerSecond,
      max_calls_per_endpoint_per_second: b.perEndpointPerSecond,
      max_meter_events_per_second: b.meterEventsPerSecond,
      checkout_reserved_percent: b.checkoutReservedPercent,
      // Below the maximum for a while after Stripe answered 429.
      calls_per_second_now: Math.round(sum((p) => p.budget.calls_per_second) * 1000) / 1000,
      shrunk_by: max((p) => p.budget.shrunk_by),
      shrunk_until: max((p) => p.budget.shrunk_until ?? 0) || null,
      last_minute: {
        seconds: max((p) => p.budget.last_minute.seconds),
        asked: sum((p) => p.budget.last_minute.asked),
        granted,
        refused: sum((p) => p.budget.last_minute.refused),
        stripe_429: sum((p) => p.budget.last_minute.stripe_429),
      },
      // Calls granted against what the budget allowed over the same seconds (30 to 60 of them).
      use_percent: Math.round((granted / (b.callsPerSecond * max((p) => p.budget.last_minute.seconds))) * 1000) / 10,
      shards: parts.map((p, k) => ({ shard: k, ...p.budget })),
    },
    report_delay: {
      batching: batching > 0,
      batching_shards: batching,
      min_report_cents: b.minReportMicros / 1_000_000,
      max_report_delay_seconds: b.maxReportDelayMs / 1000,
      due_now: sum((p) => p.reports.due_now),
      oldest_due_seconds: max((p) => p.reports.oldest_due_seconds),
      oldest_held_seconds: max((p) => p.reports.oldest_held_seconds),
    },
  });
});
