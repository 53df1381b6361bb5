// Row 3, `storage_month`: one customer's object after a simulated month of per-minute usage and
// per-minute cron runs (so per-minute Stripe reports), with the Stripe double. Storage, not speed:
// it runs once, after the repetitions, in a workerd of its own (its clock is simulated).
//
// Simulated time: a bench-only entry (built with esbuild, like the delayed gateway; no hook in the
// gateway's source) moves `Date.now` in the gateway's isolate to the simulated time, and shifts
// every alarm its objects set by the same offset, so their timers fire in simulated time. The cron
// is driven with `scheduledTime`, as the other rows do. Each step: set the clock, one request,
// wait until the directory lists the customer as due, one cron run.
import { adminClient } from "./admin.mjs";
import { fmt } from "./load.mjs";
import { ADMIN_TOKEN, buildBenchEntry, compatibilityDate, compatibilityFlags, GATEWAY_DURABLE_OBJECTS, miniflare } from "./workers.mjs";

const DAY_MS = 86_400_000;
const MONTH_DAYS = 30;
/** Short retention for this row, so a month shows the rows the timers delete; the defaults are 90 days. */
const MONTH_RETENTION = { REPORT_RETENTION_DAYS: 7, usage_retention_days: 8 };

function buildClockedGateway(gatewayPath) {
  return buildBenchEntry(
    "gateway-clocked.js",
    `
        import gateway, { CustomerAccount as A, Directory as D, WebhookDispatcher as W } from ${JSON.stringify(gatewayPath)};
        const realNow = Date.now.bind(Date);
        let offset = 0;
        Date.now = () => realNow() + offset;
        // Alarms are real time: one set for simulated time t fires at t - offset. The simulated
        // time each object asked for is kept, so moving the clock can set it again (kick): what
        // became due in the jump then fires at once, as it would have over the real interval.
        function shifted(ctx) {
          const storage = ctx.storage;
          const set = storage.setAlarm.bind(storage);
          const get = storage.getAlarm.bind(storage);
          const remove = storage.deleteAlarm.bind(storage);
          storage.setAlarm = (at, options) => {
            storage.simulatedAlarmAt = Number(at);
            return set(Math.max(1, Number(at) - offset), options);
          };
          storage.getAlarm = async (options) => ((await get(options)) === null ? null : storage.simulatedAlarmAt);
          storage.deleteAlarm = (options) => {
            storage.simulatedAlarmAt = null;
            return remove(options);
          };
          return ctx;
        }
        const clocked = (Base) =>
          class extends Base {
            constructor(ctx, env) {
              super(shifted(ctx), env);
            }
            async alarm(info) {
              this.ctx.storage.simulatedAlarmAt = null;
              return super.alarm(info);
            }
            async benchKick() {
              const at = this.ctx.storage.simulatedAlarmAt;
              if (at !== null && at !== undefined) await this.ctx.storage.setAlarm(at);
            }
          };
        export const CustomerAccount = clocked(A);
        export const Directory = clocked(D);
        export const WebhookDispatcher = clocked(W);
        export default {
          // A request with x-bench-clock first moves the simulated clock (and kicks the alarms of
          // the customer named in x-bench-customer and of the directory).
          async fetch(request, env, ctx) {
            const at = request.headers.get("x-bench-clock");
            if (at === null) return gateway.fetch(request, env, ctx);
            offset = Number(at) - realNow();
            const kick = (ns, name) => ns.get(ns.idFromName(name)).benchKick();
            await Promise.all([kick(env.CUSTOMERS, request.headers.get("x-bench-customer")), kick(env.DIRECTORY, "global")]);
            const headers = new Headers(request.headers);
            headers.delete("x-bench-clock");
            headers.delete("x-bench-customer");
            return gateway.fetch(new Request(request, { headers }), env, ctx);
          },
          scheduled: (controller, env, ctx) => gateway.scheduled(controller, env, ctx),
        };`,
  );
}

function monthWorker(scriptPath, originUrl, stripeUrl) {
  return {
    name: "month",
    modules: true,
    scriptPath,
    compatibilityDate,
    compatibilityFlags,
    durableObjects: GATEWAY_DURABLE_OBJECTS,
    bindings: {
      ADMIN_TOKEN,
      ORIGIN_URL: originUrl,
      STRIPE_API_BASE: stripeUrl,
      STRIPE_SECRET_KEY: "sk_test_bench_month",
      STRIPE_WEBHOOK_SECRET: "whsec_bench_month",
      LOG_LEVEL: "error",
      REPORT_RETENTION_DAYS: MONTH_RETENTION.REPORT_RETENTION_DAYS,
      PRICING: {
        currency: "usd",
        default_price_cents: "1",
        default_meter: "api_requests",
        usage_bucket_seconds: 3600,
        usage_retention_days: MONTH_RETENTION.usage_retention_days,
      },
    },
    routes: ["month.bench/*"],
  };
}

/**
 * Runs the simulated month: 30 days, one request and one cron run every `60 / scale` seconds of
 * simulated time (every minute at BENCH_SCALE=1), stopping early at `maxSeconds` of real time.
 * Returns rows per table of the customer's object, and what the summary says about them.
 */
async function storageMonth({ scriptPath, originUrl, scale, maxSeconds, StripeDouble, serveHandler }) {
  const stepMs = Math.max(60_000, Math.round(60_000 / scale));
  const steps = Math.floor((MONTH_DAYS * DAY_MS) / stepMs);
  const stripe = new StripeDouble({ webhookSecret: "whsec_bench_month" });
  const stripeServer = await serveHandler((r) => stripe.handle(r));
  const mf = miniflare([monthWorker(await buildClockedGateway(scriptPath), originUrl, stripeServer.url)]);
  try {
    const base = String(await mf.ready);
    const admin = adminClient(base, "month.bench");
    const worker = await mf.getWorker("month");
    const call = async (path, headers = {}) => {
      const response = await mf.dispatchFetch(new URL(path, base), { headers: { host: "month.bench", ...headers } });
      return { status: response.status, text: await response.text() };
    };

    // One Stripe customer with credit for the whole month, known at the edge, with one key.
    const customer = stripe.createCustomer({ name: "Month", email: "month@example.com", balance: -10_000_000 });
    for (const event of stripe.takeEvents()) {
      const { body, signature } = await stripe.sign(event);
      await admin("POST", "/webhooks/stripe", body, { "stripe-signature": signature });
    }
    const key = (await admin("POST", `/admin/customers/${customer.id}/keys`, {})).body.key;
    for (let i = 0; i < 200 && (await call("/v1/data", { authorization: `Bearer ${key}` })).status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }

    // The month checks that the timers keep the tables bounded, which needs all 30 days: a loaded
    // machine gets at least two minutes for it, whatever BENCH_MAX_SECONDS gives the rows that time.
    const month = await runMonth({ admin, worker, call, customerId: customer.id, key, steps, stepMs, maxSeconds: Math.max(maxSeconds, 120) });
    return await monthResult(admin, customer.id, stepMs, month);
  } finally {
    await mf.dispose();
    await stripeServer.close();
  }
}

/** The month's steps, in simulated time; stops at `maxSeconds` of real time. */
async function runMonth({ admin, worker, call, customerId, key, steps, stepMs, maxSeconds }) {
  const clock = (at) => ({ "x-bench-clock": String(at), "x-bench-customer": customerId });
  const start = Math.ceil(Date.now() / 60_000) * 60_000;
  const deadline = Date.now() + maxSeconds * 1000;
  const started = process.hrtime.bigint();
  const statuses = {};
  let done = 0;
  let missed = 0;
  for (let i = 0; i < steps && Date.now() < deadline; i++) {
    const t = start + i * stepMs;
    const { status } = await call("/v1/data", { authorization: `Bearer ${key}`, ...clock(t) });
    statuses[status] = (statuses[status] ?? 0) + 1;
    // The object tells the directory it has usage to report from its alarm, right after the request.
    let due = false;
    for (let tries = 0; tries < 50 && !due; tries++) {
      const listed = (await admin("GET", `/admin/customers?q=${customerId}`)).body.customers[0];
      due = listed?.due_at !== null && listed?.due_at !== undefined && listed.due_at <= t + 1_000;
      if (!due) await new Promise((r) => setTimeout(r, 2));
    }
    if (!due) missed++;
    await worker.scheduled({ scheduledTime: new Date(t + 1_000), cron: "* * * * *" });
    done++;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  // Let the last alarms (retention, rollup) run at the end of the simulated span.
  await call("/v1/data", { authorization: `Bearer ${key}`, ...clock(start + done * stepMs) });
  await new Promise((r) => setTimeout(r, 300));
  return { done, missed, statuses, seconds };
}

/** Rows per table of the customer's object after the month, and whether they stayed bounded. */
async function monthResult(admin, customerId, stepMs, { done, missed, statuses, seconds }) {
  const storage = (await admin("GET", `/admin/customers/${customerId}/storage`)).body;
  const summary = (await admin("GET", `/admin/customers/${customerId}`)).body;
  const usage = summary.ledger_summary.find((r) => r.kind === "usage") ?? { entries: 0, count: 0 };
  const reported = summary.stripe.report_totals.filter((r) => r.kind === "usage_debit").reduce((sum, r) => sum + r.amount, 0);
  // The most rows the timers leave: a report per step and a usage row per bucket within the
  // retention (the current ones included), and the carried-forward row.
  const within = (days) => Math.ceil((days * DAY_MS) / stepMs);
  const bound = {
    reports: within(MONTH_RETENTION.REPORT_RETENTION_DAYS) + 2,
    usage_rows: Math.min(within(MONTH_RETENTION.usage_retention_days), MONTH_RETENTION.usage_retention_days * 24) + 2,
  };
  const result = {
    steps: done,
    step_seconds: stepMs / 1000,
    simulated_days: Number(((done * stepMs) / DAY_MS).toFixed(2)),
    seconds,
    statuses,
    missed_due: missed,
    tables: storage.tables,
    database_bytes: storage.database_bytes,
    reports_kept: summary.stripe.report_rows_kept,
    reports_archived: summary.stripe.report_rows_archived,
    usage_rows: usage.entries,
    usage_requests: usage.count,
    // Every charged cent is in a report (kept or archived) or still waiting for the next one.
    usage_accounted: reported + Number(summary.stripe.pending_usage_exact_cents) === usage.count,
    balance_equals_ledger_sum: summary.balance.ledger_sum_exact_cents === summary.balance.total_exact_cents,
    retention: MONTH_RETENTION,
    bound,
  };
  return {
    ...result,
    bounded: result.reports_kept <= bound.reports && result.usage_rows <= bound.usage_rows && result.usage_accounted && result.balance_equals_ledger_sum,
  };
}

export function rows(ctx) {
  const month = ({ runs }) => runs("storage_month")[0];
  const yes = (ok) => (ok ? "yes" : "NO");
  return [
    {
      id: "storage_month",
      name: "3. Storage after a month",
      runOnce: () => storageMonth(ctx),
      cells: (s) => {
        const r = month(s);
        return [
          `${r.steps} steps of ${fmt(r.step_seconds / 60)} min over ${r.simulated_days} simulated days: a request and a cron run each (Stripe double); REPORT_RETENTION_DAYS=${r.retention.REPORT_RETENTION_DAYS}, usage_retention_days=${r.retention.usage_retention_days}`,
          `rows: ${Object.entries(r.tables)
            .filter(([, count]) => count > 0)
            .map(([t, count]) => `${t} ${count}`)
            .join(", ")}; ${fmt(r.database_bytes / 1024)} KiB`,
          `reports ${r.reports_kept} kept (at most ${r.bound.reports}) + ${r.reports_archived} archived; usage rows ${r.usage_rows} (at most ${r.bound.usage_rows}) for ${r.usage_requests} requests; every cent reported or pending: ${yes(r.usage_accounted)}; balance = ledger sum: ${yes(r.balance_equals_ledger_sum)}; bounded: ${yes(r.bounded)}`,
        ];
      },
      json: (s) => ({ rps: null, p50_ms: null, p99_ms: null, ...month(s), seconds: Number(month(s).seconds.toFixed(3)) }),
    },
  ];
}
