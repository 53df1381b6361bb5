// Row 7: Stripe traffic. Each run starts a gateway of its own with Stripe on (the tests' Stripe
// double, over HTTP), proxies requests between cron runs, and counts the Stripe API calls: usage
// is reported per customer and cron run, so they are bounded by customers × runs, not requests.
import { adminClient, inBatches } from "./admin.mjs";
import { sleep, summarize } from "./load.mjs";
import { gatewayWorker, miniflare } from "./workers.mjs";

const WEBHOOK_SECRET = "whsec_bench";
const CRON_RUNS = 3;

async function stripeRun(ctx, customers, requests) {
  const stripe = new ctx.StripeDouble({ webhookSecret: WEBHOOK_SECRET });
  const stripeServer = await ctx.serveHandler((r) => stripe.handle(r));
  const smf = miniflare([
    gatewayWorker("gateway", ctx.scriptPath, {
      ORIGIN_URL: ctx.originUrl,
      STRIPE_API_BASE: stripeServer.url,
      STRIPE_SECRET_KEY: "sk_test_bench",
      STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
      // These rows count calls per customer and cron run, not pacing: the budget out of the way
      // (a sandbox's 10 a second would leave most customers to the shard's alarm). sweep_2000 paces.
      STRIPE_BUDGET: { max_calls_per_second: 10_000, max_calls_per_endpoint_per_second: 10_000 },
    }),
  ]);
  const sbase = String(await smf.ready);
  const adminCall = adminClient(sbase);
  const gateway = await smf.getWorker("gateway");
  const keys = await inBatches(Array.from({ length: customers }), 16, async () => {
    const customer = stripe.createCustomer({ name: "Bench", email: "b@example.com", balance: -10_000_000 });
    for (const event of stripe.takeEvents()) {
      const { body, signature } = await stripe.sign(event);
      await adminCall("POST", "/webhooks/stripe", body, { "stripe-signature": signature });
    }
    return (await adminCall("POST", `/admin/customers/${customer.id}/keys`, {})).body.key;
  });
  await sleep(200);
  const callsBefore = stripe.requests.length;
  const latencies = [];
  const statuses = {};
  let seconds = 0;
  for (let run = 0; run < CRON_RUNS; run++) {
    const part = await ctx.load({
      base: sbase,
      host: "gateway.bench",
      concurrency: 64,
      total: Math.round(requests / CRON_RUNS),
      request: (i) => ({ path: "/v1/data", headers: { authorization: `Bearer ${keys[i % keys.length]}` } }),
    });
    latencies.push(...part.latencies);
    seconds += part.seconds;
    for (const [status, count] of Object.entries(part.statuses)) statuses[status] = (statuses[status] ?? 0) + count;
    await sleep(200); // the objects' directory updates (alarms)
    await gateway.scheduled({ scheduledTime: new Date(), cron: "* * * * *" });
  }
  const calls = stripe.requests.length - callsBefore;
  const debits = stripe.requests.slice(callsBefore).filter((r) => r.path.endsWith("/balance_transactions")).length;
  await smf.dispose();
  await stripeServer.close();
  const served = statuses[200] ?? 0;
  return {
    ...summarize(latencies, seconds, statuses),
    customers,
    cron_runs: CRON_RUNS,
    served,
    stripe_calls: calls,
    stripe_calls_per_100k: (calls / served) * 100_000,
    balance_transactions: debits,
    bound: customers * CRON_RUNS,
  };
}

export function rows(ctx) {
  return [
    ["stripe_calls_10c", 10, ctx.n(5_000)],
    ["stripe_calls_100c", 100, ctx.n(5_000)],
    ["stripe_calls_100c_4x", 100, ctx.n(20_000)],
  ].map(([id, customers, requests]) => ({
    id,
    name: `7. Stripe traffic: ${customers} customers`,
    run: () => stripeRun(ctx, customers, requests),
    cells: ({ m, runs, x, fmt }) => {
      const r = m(id);
      const worst = Math.max(...runs(id).map((run) => run.balance_transactions));
      return [
        `${r.served} proxied req, ${r.cron_runs} cron runs, ${x}`,
        `${r.stripe_calls} Stripe API calls (${fmt(r.stripe_calls_per_100k)} per 100,000 req)`,
        `${worst} balance transactions at most in a run (at most customers × runs = ${r.bound})`,
      ];
    },
  }));
}
