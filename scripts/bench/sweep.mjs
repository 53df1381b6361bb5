// Row 8: the control plane at 2,000 customers within Stripe's rate limit (`sweep_2000`). A
// workerd of its own runs the gateway with Stripe on, against the tests' Stripe double enforcing a
// sandbox's limit (25 calls a second, 429 past it). Set up at full speed (customers, their first
// reconcile, their requests: most customers idle, a few hot), then the same storage under the
// budget measured: cron runs once a minute, as Cloudflare's trigger does, until every cent
// charged is reported. `npm run bench -- --only sweep_2000` runs it alone.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { adminClient, inBatches } from "./admin.mjs";
import { fmt, sleep } from "./load.mjs";
import { gatewayWorker } from "./workers.mjs";

const WEBHOOK_SECRET = "whsec_bench";
/** Stripe's sandbox limit, which the double enforces here. */
const STRIPE_LIMIT = 25;
/** What the row's gateway may use of it (the budget must hold: no 429 reaches it). */
export const SWEEP_BUDGET = { max_calls_per_second: 20, max_calls_per_endpoint_per_second: 20, min_report_cents: 100, max_report_delay_seconds: 60 };
const CRON_EVERY_MS = 60_000;

/** Requests per customer: 1 in 20 hot (120), 3 in 20 busy (10), the rest one request each. */
export function requestsOf(i) {
  const r = i % 20;
  return r === 0 ? 120 : r <= 3 ? 10 : 1;
}

function gateway(ctx, stripeUrl, budget) {
  return gatewayWorker("gateway", ctx.scriptPath, {
    ORIGIN_URL: ctx.originUrl,
    STRIPE_API_BASE: stripeUrl,
    STRIPE_SECRET_KEY: "sk_test_bench",
    STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
    LOG_LEVEL: "error",
    ...(budget ? { STRIPE_BUDGET: budget } : {}),
  });
}

const start = (persist, worker) => new Miniflare(convertV4MiniflareOptions({ resourcePersistencePath: persist, workers: [worker] }));

async function sweepRun(ctx, customers) {
  const persist = mkdtempSync(join(os.tmpdir(), "payg-sweep-"));
  const stripe = new ctx.StripeDouble({ webhookSecret: WEBHOOK_SECRET });
  const stripeServer = await ctx.serveHandler((r) => stripe.handle(r));

  // Set-up, at full speed: an unbounded budget and no rate limit.
  let mf = start(persist, gateway(ctx, stripeServer.url, { max_calls_per_second: 10_000, max_calls_per_endpoint_per_second: 10_000 }));
  let base = String(await mf.ready);
  let adminCall = adminClient(base);
  const ids = [];
  const keys = await inBatches(
    Array.from({ length: customers }, (_, i) => i),
    16,
    async () => {
      const customer = stripe.createCustomer({ name: "Sweep", email: "s@example.com", balance: -1_000_000 });
      ids.push(customer.id);
      for (const event of stripe.takeEvents()) {
        const { body, signature } = await stripe.sign(event);
        await adminCall("POST", "/webhooks/stripe", body, { "stripe-signature": signature });
      }
      return { id: customer.id, key: (await adminCall("POST", `/admin/customers/${customer.id}/keys`, {})).body.key };
    },
  );
  const work = keys.flatMap((k, i) => Array.from({ length: requestsOf(i) }, () => k.key));
  const load = await ctx.load({
    base,
    host: "gateway.bench",
    concurrency: 64,
    total: work.length,
    request: (i) => ({ path: "/v1/data", headers: { authorization: `Bearer ${work[i]}` } }),
  });
  // One cent a request (the bench's default price).
  const charged = load.statuses[200] ?? 0;
  await sleep(2_000); // the objects' directory pushes (alarms)
  await mf.dispose();

  // Measured: the same storage under the row's budget, Stripe enforcing its limit.
  stripe.rateLimit({ perSecond: STRIPE_LIMIT, perEndpointPerSecond: STRIPE_LIMIT });
  const callsBefore = stripe.requests.length;
  mf = start(persist, gateway(ctx, stripeServer.url, SWEEP_BUDGET));
  base = String(await mf.ready);
  adminCall = adminClient(base);
  const worker = await mf.getWorker("gateway");
  const reported = () =>
    ids.reduce(
      (sum, id) =>
        sum +
        stripe
          .balanceTransactions(id)
          .filter((t) => String(t.metadata?.payg_report ?? "").startsWith("payg_usage"))
          .reduce((s, t) => s + t.amount, 0),
      0,
    );
  const started = Date.now();
  const deadline = started + ctx.maxSeconds * 1000;
  let cronRuns = 0;
  let nextCron = started;
  let batchingSeen = false;
  let worstDelay = 0;
  while (reported() < charged && Date.now() < deadline) {
    if (Date.now() >= nextCron) {
      await worker.scheduled({ scheduledTime: new Date(), cron: "* * * * *" });
      cronRuns++;
      nextCron += CRON_EVERY_MS;
    }
    const status = (await adminCall("GET", "/admin/status")).body;
    batchingSeen ||= status.report_delay?.batching === true;
    worstDelay = Math.max(worstDelay, status.report_delay?.oldest_held_seconds ?? 0, status.report_delay?.oldest_due_seconds ?? 0);
    await sleep(1_000);
  }
  const cycleSeconds = (Date.now() - started) / 1000;
  const calls = stripe.requests.slice(callsBefore);
  const status = (await adminCall("GET", "/admin/status")).body;
  await mf.dispose();
  await stripeServer.close();
  rmSync(persist, { recursive: true, force: true });
  const cents = reported();
  return {
    requests: work.length,
    seconds: cycleSeconds,
    rps: work.length / cycleSeconds,
    p50: NaN,
    p99: NaN,
    statuses: {},
    customers,
    stripe_calls: calls.length,
    stripe_429_answered: stripe.rateLimitedCount,
    cents_charged: charged,
    cents_reported: cents,
    cycle_seconds: cycleSeconds,
    cron_runs: cronRuns,
    batching: batchingSeen,
    worst_report_delay_seconds: worstDelay,
    calls_per_second: calls.length / cycleSeconds,
    budget_last_minute: status.stripe_budget?.last_minute ?? null,
  };
}

export function rows(ctx) {
  const customers = ctx.n(2_000);
  return [
    {
      id: "sweep_2000",
      name: `8. Control plane: ${customers} customers, Stripe limited to ${STRIPE_LIMIT} calls/s`,
      runOnce: () => sweepRun(ctx, customers),
      cells: ({ m }) => {
        const r = m("sweep_2000");
        return [
          `${r.customers} customers, ${r.requests} req (1 in 20 hot), budget ${SWEEP_BUDGET.max_calls_per_second}/s, cron every 60 s`,
          `every cent reported in ${fmt(r.cycle_seconds)} s (${r.cron_runs} cron runs), ${r.stripe_calls} Stripe calls (${fmt(r.calls_per_second, 1)}/s)${r.batching ? ", reports batched" : ""}`,
          `${r.cents_reported} of ${r.cents_charged} cents reported, ${r.stripe_429_answered} × 429 from Stripe`,
        ];
      },
      json: ({ m }) => {
        const {
          requests,
          customers: c,
          stripe_calls,
          stripe_429_answered,
          cents_charged,
          cents_reported,
          cycle_seconds,
          cron_runs,
          batching,
          worst_report_delay_seconds,
          calls_per_second,
        } = m("sweep_2000");
        return {
          requests,
          customers: c,
          stripe_calls,
          stripe_429_answered,
          cents_charged,
          cents_reported,
          cycle_seconds: Number(cycle_seconds.toFixed(1)),
          cron_runs,
          batching,
          worst_report_delay_seconds,
          calls_per_second: Number(calls_per_second.toFixed(2)),
        };
      },
    },
  ];
}
