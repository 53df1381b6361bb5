// `npm run simulate:control-plane`: a model of the control plane at 10k, 100k and 1M customers
// (docs/operating/scaling.md): the directory shards' sweep, the Stripe call budget and report
// sizing (STRIPE_BUDGET), minute by minute over two simulated days. Deterministic (seeded PRNG),
// plain Node.js, no dependencies. What it models, as the gateway does it:
// - Activity: most customers idle, a few hot. 75 % make no request; 20 % are light (3 one-cent
//   requests a day on average, at random minutes); 4.5 % regular (100 cents a day, spread over
//   the day); 0.5 % hot (3,000 cents a day). Each customer's rate is its class's mean times an
//   exponential factor (mean 1). Every customer has a key, so every one is due for the periodic
//   reconcile (RECONCILE_INTERVAL_SECONDS, 3,600).
// - The budget: live defaults (50 calls a second, 12 per endpoint, 20 % kept for Checkout). A
//   visit makes one call; the shards' alarms visit at 0.9 × min(per endpoint, total − Checkout's
//   part) a second, split among the shards (budget.ts visitsPerSecond). Customers with reports go
//   first, customers due only for the reconcile take what is left (directory claimDue).
// - Report sizing: batching turns on when more customers are due than a minute of the
//   balance-transaction budget can report, and stays on at least 10 minutes; while on, usage is
//   due once it is worth min_report_cents (100) or max_report_delay_seconds (86,400, less 5
//   minutes for the sweep to come) have passed since the customer's last report; while off,
//   every cent is due at the next cron run.
// - The directory's own load per shard: the budget's RPCs (one a visit), the customers' rollups
//   (an active customer pushes at most every ROLLUP_INTERVAL_SECONDS, 60) and snapshots (one when
//   usage becomes due, one after each visit), against a Durable Object's soft limit of about
//   1,000 requests a second; and the sweep's ceiling with no Stripe work (emails only):
//   CRON_BATCH_SIZE visits, 16 at a time, then the alarm a second later, with VISIT_MS a visit.
// Not modelled: Checkout and auto top-up (interactive, within Checkout's reserved part), post-paid
// meter events (their own budget of 500 a second), cohort crossings (a forced report is one more
// report, within the same budget), 429s from Stripe (the budget halves for a minute).
import { pathToFileURL } from "node:url";

export const CLASSES = [
  { name: "idle", share: 0.75, centsPerDay: 0, continuous: false },
  { name: "light", share: 0.2, centsPerDay: 3, continuous: false },
  { name: "regular", share: 0.045, centsPerDay: 100, continuous: true },
  { name: "hot", share: 0.005, centsPerDay: 3000, continuous: true },
];

export const DEFAULTS = {
  seed: 38,
  days: 2,
  callsPerSecond: 50,
  perEndpointPerSecond: 12,
  checkoutReservedPercent: 20,
  minReportCents: 100,
  maxReportDelaySeconds: 86_400,
  reconcileIntervalSeconds: 3600,
  rollupIntervalSeconds: 60,
  cronBatchSize: 200,
  /** A visit with no Stripe call: the customer's runCycle and its snapshot, in milliseconds (an assumption). */
  visitMs: 30,
  shardCounts: [1, 4, 16],
};

export function prng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MINUTES_PER_DAY = 1440;

/** One run: `customers` customers over `days` days, minute by minute. */
export function simulate(customers, options = {}) {
  const o = { ...DEFAULTS, ...options };
  const random = prng(o.seed);
  const exp = () => -Math.log(1 - random());
  const minutes = o.days * MINUTES_PER_DAY;
  const visitsPerMinute = 0.9 * Math.min(o.perEndpointPerSecond, o.callsPerSecond * (1 - o.checkoutReservedPercent / 100)) * 60;
  const reportsPerMinute = o.perEndpointPerSecond * 60;
  const maxDelay = o.maxReportDelaySeconds / 60;
  // Held usage is due this early, so the sweep reports it in time (stripe/reports.ts heldUntil).
  const heldFor = maxDelay - Math.min(5, maxDelay / 10);

  // Active customers only (idle ones cost a reconcile, counted apart).
  const active = [];
  for (const c of CLASSES) if (c.centsPerDay > 0) active.push({ ...c, count: Math.round(customers * c.share) });
  const n = active.reduce((s, c) => s + c.count, 0);
  const rate = new Float64Array(n); // cents a minute
  const continuous = new Uint8Array(n);
  const pending = new Float64Array(n);
  const firstUnreported = new Float64Array(n).fill(-1);
  const lastReport = new Float64Array(n);
  const queued = new Uint8Array(n);
  const nextEvent = new Float64Array(n);
  let i = 0;
  for (const c of active) {
    for (let k = 0; k < c.count; k++, i++) {
      rate[i] = (c.centsPerDay / MINUTES_PER_DAY) * exp();
      continuous[i] = c.continuous ? 1 : 0;
      // Steady state: the last report was some time in the last day.
      lastReport[i] = -random() * maxDelay;
      if (!c.continuous) nextEvent[i] = exp() / rate[i];
    }
  }
  // Light customers' requests, by minute (a calendar of who makes one).
  const calendar = new Map();
  const schedule = (id, at) => {
    const m = Math.ceil(at);
    if (m >= minutes) return;
    let list = calendar.get(m);
    if (!list) calendar.set(m, (list = []));
    list.push(id);
  };
  for (let id = 0; id < n; id++) if (!continuous[id]) schedule(id, nextEvent[id]);
  // Held usage comes due after max_report_delay_seconds: a calendar too (one entry a customer).
  const heldDue = new Map();
  const heldAt = new Float64Array(n).fill(-1);
  const hold = (id, at) => {
    if (heldAt[id] === at) return;
    heldAt[id] = at;
    if (!heldDue.has(at)) heldDue.set(at, []);
    heldDue.get(at).push(id);
  };

  let queue = [];
  let head = 0;
  let batchingUntil = -1;
  let reconcileBacklog = 0;
  const reconcilePerMinute = customers / (o.reconcileIntervalSeconds / 60);
  const day2 = MINUTES_PER_DAY;
  const stats = {
    reports: 0,
    reconciles: 0,
    visits: 0,
    snapshots: 0,
    rollups: 0,
    worstDelayMinutes: 0,
    batchingMinutes: 0,
    peakCallsPerMinute: 0,
    worstCycleSeconds: 0,
    centsUsed: 0,
    centsReported: 0,
  };
  const lastRollup = new Float64Array(n).fill(-Infinity);

  const worth = (id, now, batching) => pending[id] >= 1 && (!batching || pending[id] >= o.minReportCents || now - lastReport[id] >= heldFor);

  for (let now = 0; now < minutes; now++) {
    const batching = now < batchingUntil;
    const measuring = now >= day2;
    const touched = [];
    for (let id = 0; id < n; id++) {
      if (!continuous[id]) continue;
      pending[id] += rate[id];
      if (measuring) stats.centsUsed += rate[id];
      touched.push(id);
    }
    for (const id of calendar.get(now) ?? []) {
      pending[id] += 1;
      if (measuring) stats.centsUsed += 1;
      touched.push(id);
      schedule(id, now + exp() / rate[id]);
    }
    calendar.delete(now);
    for (const id of heldDue.get(now) ?? []) {
      heldAt[id] = -1;
      touched.push(id);
    }
    heldDue.delete(now);
    for (const id of touched) {
      if (pending[id] >= 1 && firstUnreported[id] < 0) firstUnreported[id] = now;
      if (measuring && now - lastRollup[id] >= o.rollupIntervalSeconds / 60) {
        lastRollup[id] = now;
        stats.rollups++;
      }
      if (queued[id]) continue;
      if (worth(id, now, batching)) {
        queued[id] = 1;
        queue.push(id);
        if (measuring) stats.snapshots++;
      } else if (batching && pending[id] >= 1) hold(id, Math.max(now + 1, Math.ceil(lastReport[id] + heldFor)));
    }
    // The cron's minute: batching is decided by who is due against a minute of reports.
    if (queue.length - head > reportsPerMinute) {
      if (batchingUntil < now + 5) batchingUntil = now + 10;
    }
    if (now < batchingUntil && !batching) {
      // Batching just turned on: usage not worth a call stays held, out of the queue until it is.
      const kept = [];
      for (const id of queue.slice(head)) {
        if (worth(id, now, true)) kept.push(id);
        else {
          queued[id] = 0;
          hold(id, Math.max(now + 1, Math.ceil(lastReport[id] + heldFor)));
        }
      }
      queue = kept;
      head = 0;
    }
    if (measuring && now < batchingUntil) stats.batchingMinutes++;
    // Visits this minute, reports first.
    const visits = Math.min(queue.length - head, Math.floor(visitsPerMinute));
    const served = queue.slice(head, head + visits);
    head += visits;
    if (head > 100_000) {
      queue = queue.slice(head);
      head = 0;
    }
    for (const id of served) {
      queued[id] = 0;
      const delay = now - firstUnreported[id];
      const whole = Math.floor(pending[id]);
      pending[id] -= whole;
      lastReport[id] = now;
      firstUnreported[id] = pending[id] >= 1 ? now : -1;
      if (measuring) {
        stats.reports++;
        stats.centsReported += whole;
        stats.snapshots++;
        stats.worstDelayMinutes = Math.max(stats.worstDelayMinutes, delay);
      }
    }
    reconcileBacklog += reconcilePerMinute;
    const reconciles = Math.min(reconcileBacklog, visitsPerMinute - visits);
    reconcileBacklog -= reconciles;
    if (measuring) {
      stats.reconciles += reconciles;
      stats.visits += visits + reconciles;
      stats.peakCallsPerMinute = Math.max(stats.peakCallsPerMinute, visits + reconciles);
      // From the cron tick to the last report due at it: due ÷ the paced visit rate.
      stats.worstCycleSeconds = Math.max(stats.worstCycleSeconds, (Math.min(visits + queue.length - head, visitsPerMinute) / visitsPerMinute) * 60);
    }
  }
  // Usage still waiting at the end has waited this long so far.
  for (let id = 0; id < n; id++) if (firstUnreported[id] >= 0) stats.worstDelayMinutes = Math.max(stats.worstDelayMinutes, minutes - firstUnreported[id]);
  const seconds = (minutes - day2) * 60;
  const callsPerSecond = (stats.reports + stats.reconciles) / seconds;
  const reconcileEverySeconds = stats.reconciles > 0 ? customers / (stats.reconciles / seconds) : Number.POSITIVE_INFINITY;
  const perShard = o.shardCounts.map((shards) => ({
    shards,
    directoryRequestsPerSecond: (stats.visits * 2 + stats.rollups + stats.snapshots) / seconds / shards,
    sweepCeilingPerSecond: (shards * o.cronBatchSize) / (Math.ceil(o.cronBatchSize / 16) * (o.visitMs / 1000) + 1),
  }));
  return {
    customers,
    active: n,
    callsPerSecond,
    peakCallsPerSecond: stats.peakCallsPerMinute / 60,
    budgetPerSecond: o.callsPerSecond,
    reportsPerSecond: stats.reports / seconds,
    perEndpointPerSecond: o.perEndpointPerSecond,
    worstReportDelaySeconds: stats.worstDelayMinutes * 60,
    maxReportDelaySeconds: o.maxReportDelaySeconds,
    batchingShare: stats.batchingMinutes / (minutes - day2),
    cycleSeconds: stats.worstCycleSeconds,
    reconcileEverySeconds,
    centsUsed: stats.centsUsed,
    centsReported: stats.centsReported,
    perShard,
  };
}

export const SIZES = [10_000, 100_000, 1_000_000];

export function runAll(options = {}) {
  return SIZES.map((customers) => simulate(customers, options));
}

const fmt = (x, digits = 0) => x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const duration = (s) => (!Number.isFinite(s) ? "never" : s >= 3600 ? `${fmt(s / 3600, 1)} h` : s >= 60 ? `${fmt(s / 60, 1)} min` : `${fmt(s)} s`);

export function formatTables(results) {
  const lines = [
    "Stripe (second simulated day; budget: live defaults, 50 calls/s, 12 per endpoint, 20 % kept for Checkout)",
    "",
    "| customers | active | Stripe calls/s (peak minute) | reports/s | worst report delay | batching | sweep cycle | reconcile every |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    lines.push(
      `| ${fmt(r.customers)} | ${fmt(r.active)} | ${fmt(r.callsPerSecond, 1)} (${fmt(r.peakCallsPerSecond, 1)}) of ${r.budgetPerSecond} | ${fmt(r.reportsPerSecond, 2)} of ${r.perEndpointPerSecond} | ${fmt(r.worstReportDelaySeconds)} s (max ${fmt(r.maxReportDelaySeconds)} s) | ${fmt(r.batchingShare * 100)} % of the time | ${duration(r.cycleSeconds)} | ${duration(r.reconcileEverySeconds)} |`,
    );
  }
  lines.push("", "Directory shards (requests a second to each shard, against about 1,000; the sweep's ceiling with no Stripe work)", "");
  const shardCounts = results[0].perShard.map((p) => p.shards);
  lines.push(
    `| customers | ${shardCounts.map((s) => `${s} shard${s > 1 ? "s" : ""}: req/s each, sweep ceiling`).join(" | ")} |`,
    `|---|${shardCounts.map(() => "---").join("|")}|`,
  );
  for (const r of results)
    lines.push(`| ${fmt(r.customers)} | ${r.perShard.map((p) => `${fmt(p.directoryRequestsPerSecond)}, ${fmt(p.sweepCeilingPerSecond)} visits/s`).join(" | ")} |`);
  return lines.join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const started = Date.now();
  const results = runAll();
  console.log(formatTables(results));
  console.log(`\n(seed ${DEFAULTS.seed}, ${DEFAULTS.days} simulated days, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
}
