// What a billed request costs, counted: the counted pass (every gateway row run once more on a
// workerd of its own running the counted entry, `counted.mjs`), the workerd's CPU time, and the
// cost per million requests at Cloudflare's list prices. Counts do not move with the machine.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import { sleep } from "./load.mjs";

/**
 * Cloudflare's list prices, USD, read 2026-12-07 from
 * https://developers.cloudflare.com/workers/platform/pricing/ (Workers Standard) and
 * https://developers.cloudflare.com/durable-objects/platform/pricing/ (SQLite-backed objects):
 * the price past the Workers Paid plan's monthly allowances.
 */
export const PRICES = {
  read_on: "2026-12-07",
  sources: ["https://developers.cloudflare.com/workers/platform/pricing/", "https://developers.cloudflare.com/durable-objects/platform/pricing/"],
  workers_request_per_million: 0.3,
  cpu_per_million_ms: 0.02,
  do_request_per_million: 0.15,
  do_duration_per_million_gb_s: 12.5,
  do_memory_gb: 0.128,
  rows_written_per_million: 1.0,
  rows_read_per_million: 0.001,
  storage_per_gb_month: 0.2,
};

/** The cost of one million requests that each cost `per` (rows over the life, RPCs, duration, CPU). */
export function costPerMillion({ rows_written_per_request_lifetime, rows_read_per_request, rpcs_per_request, duration_ms_per_request, cpu_us_per_request }, workersRequests = 1) {
  const p = PRICES;
  const lines = {
    workers_requests: workersRequests * p.workers_request_per_million,
    cpu: ((cpu_us_per_request ?? 0) / 1000) * p.cpu_per_million_ms,
    do_requests: rpcs_per_request * p.do_request_per_million,
    do_duration: (duration_ms_per_request / 1000) * p.do_memory_gb * p.do_duration_per_million_gb_s,
    rows_written: rows_written_per_request_lifetime * p.rows_written_per_million,
    rows_read: rows_read_per_request * p.rows_read_per_million,
  };
  const total = Object.values(lines).reduce((a, b) => a + b, 0);
  return { total, lines };
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** The pids of this process's workerd children (Miniflare starts one per instance). */
export function workerdPids() {
  const out = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const ppid = Number(stat.slice(close + 2).split(" ")[1]);
      if (comm.startsWith("workerd") && ppid === process.pid) out.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

/** A process's user + system CPU time so far, in µs (Linux /proc; NaN elsewhere). */
export function cpuMicros(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** Runs `run()` and adds the workerd's CPU per request (µs) to its result. */
export async function withCpu(pid, run) {
  const before = cpuMicros(pid);
  const result = await run();
  if (!result || typeof result.requests !== "number") return result;
  return { ...result, cpu_us_per_request: (cpuMicros(pid) - before) / Math.max(1, result.requests) };
}

/** Idle: the workerd used at most one clock tick (10 ms, 2% of a core) over a QUIET_WINDOW_MS window. */
const QUIET_WINDOW_MS = 500;
/** A workerd that never goes quiet is counted anyway after this long. */
const QUIET_LIMIT_MS = 5_000;

/** Waits until the workerd is idle; its CPU µs then and over the last (idle) window, or null if it never went quiet. */
async function quiet(pid) {
  const started = Date.now();
  let last = cpuMicros(pid);
  while (Date.now() - started < QUIET_LIMIT_MS) {
    await new Promise((r) => setTimeout(r, QUIET_WINDOW_MS));
    const now = cpuMicros(pid);
    if (now - last <= 1e6 / CLK_TCK) return { at: now, idleWindowMicros: now - last };
    last = now;
  }
  return null;
}

/**
 * `run()` counted from idle to idle: the count starts once the workerd is idle, so work left by
 * what ran before (alarms, folds, pushes) is not this run's, and ends once it is idle again, so
 * this run's own trailing work is; the last idle window, which is not the run's, is taken off.
 */
async function idleToIdle(pid, run) {
  const start = await quiet(pid);
  const before = start?.at ?? cpuMicros(pid);
  const result = await run();
  const end = await quiet(pid);
  const after = end ? end.at - end.idleWindowMicros : cpuMicros(pid);
  return { requests: result.requests, micros: after - before };
}

/**
 * The gateway's CPU per request over the floor's, paired: `chunks` short runs of each, interleaved
 * (floor, gateway, floor, …), each counted from idle to idle, and summed per side. What moves the
 * CPU of one process on a shared machine (other processes' load, frequency, cache) moves both
 * sides of a pair alike, so the sums' ratio holds still where the ratio of two long runs minutes
 * apart does not. Returns the ratio, each side's µs per request and the chunks' own ratios.
 */
export async function pairedCpu(pid, sides, chunks) {
  const totals = sides.map(() => ({ micros: 0, requests: 0 }));
  const pairs = [];
  for (let i = 0; i < chunks; i++) {
    const per = [];
    for (const [s, side] of sides.entries()) {
      const { requests, micros } = await idleToIdle(pid, side.run);
      totals[s].micros += micros;
      totals[s].requests += requests;
      per.push(micros / Math.max(1, requests));
    }
    pairs.push(per[1] / per[0]);
  }
  const [floor, gateway] = totals.map((t) => t.micros / Math.max(1, t.requests));
  return { ratio: gateway / floor, floor_us: floor, gateway_us: gateway, chunk_ratios: pairs };
}

function get(base, host, path, method = "GET") {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname: url.hostname, port: url.port, path, method, headers: { host } }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString())));
    });
    req.on("error", reject);
    req.end();
  });
}

/** The sum of the counts of every host in `hosts` (each a worker with its own isolate). */
async function snapshot(base, hosts) {
  const sum = { rpcs: 0, rpc_by_method: {}, alarms: 0, written: {}, read: {}, duration_ms: 0, in_flight: 0, alarms_pending: 0 };
  for (const host of hosts) {
    const c = await get(base, host, "/__bench/counts");
    for (const [k, v] of Object.entries(c.rpcs)) {
      sum.rpc_by_method[k] = (sum.rpc_by_method[k] ?? 0) + v;
      sum.rpcs += v;
    }
    for (const side of ["written", "read"]) for (const [k, v] of Object.entries(c[side])) sum[side][k] = (sum[side][k] ?? 0) + v;
    sum.alarms += c.alarms;
    sum.duration_ms += c.duration_ms;
    sum.in_flight += c.in_flight;
    sum.alarms_pending += c.alarms_pending;
  }
  return sum;
}

const total = (map) => Object.values(map).reduce((a, b) => a + b, 0);

/** Waits (at most `ms`) until nothing is in flight, no alarm is due and the writes stopped moving. */
async function settle(base, hosts, ms = 8_000) {
  const deadline = Date.now() + ms;
  let last = -1;
  for (;;) {
    await sleep(250);
    const s = await snapshot(base, hosts);
    const written = total(s.written) + s.alarms;
    if ((s.in_flight === 0 && s.alarms_pending === 0 && written === last) || Date.now() > deadline) return s;
    last = written;
  }
}

function diff(after, before) {
  const sub = (a, b) =>
    Object.fromEntries(
      Object.entries(a)
        .map(([k, v]) => [k, v - (b[k] ?? 0)])
        .filter(([, v]) => v !== 0),
    );
  return {
    rpcs: after.rpcs - before.rpcs,
    rpc_by_method: sub(after.rpc_by_method, before.rpc_by_method),
    alarms: after.alarms - before.alarms,
    written: sub(after.written, before.written),
    read: sub(after.read, before.read),
    duration_ms: after.duration_ms - before.duration_ms,
  };
}

/** The life of a row: far enough for every per-request row to be pruned (holds and Idempotency-Keys keep 24 hours). */
const LIFETIME_MS = 25 * 3_600_000;

/**
 * Counts one row on the counted workerd: its `run` once (after its setup and warm-up), then the
 * clock moved on by a day and an hour so the prunes run. `hosts` are every counted worker of that
 * workerd (a leased row's requests reach its customers' objects from several isolates), read
 * after each row has settled, so a row's counts are what its requests caused. Returns the
 * per-request counts.
 */
export async function countRow(base, hosts, row) {
  await row.setup?.();
  await row.warm?.();
  const start = await settle(base, hosts);
  const result = await row.run(0);
  const pathEnd = await settle(base, hosts);
  await get(base, hosts[0], `/__bench/advance?ms=${LIFETIME_MS}`, "POST");
  for (const host of hosts.slice(1)) await get(base, host, `/__bench/advance?ms=${LIFETIME_MS}`, "POST");
  const lifeEnd = await settle(base, hosts);
  const path = diff(pathEnd, start);
  const life = diff(lifeEnd, start);
  const requests = Math.max(1, result.requests);
  const per = (x) => x / requests;
  return {
    requests: result.requests,
    events: result.events,
    rows_written_per_request: per(total(path.written)),
    rows_written_per_request_lifetime: per(total(life.written)),
    rows_read_per_request: per(total(path.read)),
    rpcs_per_request: per(path.rpcs + path.alarms),
    rpcs_per_request_lifetime: per(life.rpcs + life.alarms),
    duration_ms_per_request: per(life.duration_ms),
    written_by_table: Object.fromEntries(Object.entries(life.written).map(([k, v]) => [k, per(v)])),
    written_on_path_by_table: Object.fromEntries(Object.entries(path.written).map(([k, v]) => [k, per(v)])),
    rpcs_by_method: Object.fromEntries(Object.entries(path.rpc_by_method).map(([k, v]) => [k, per(v)])),
    alarms_per_request: per(path.alarms),
    exact: result.exact,
  };
}

/**
 * The cron's work on customers with nothing to do: `runs` cron invocations a minute apart (the
 * shipped schedule) on `worker` after the counted rows, whose `customers` are idle by then. Per
 * run, and per customer per day (1,440 runs).
 */
export async function countCron(base, hosts, worker, customers, runs = 5) {
  const start = await settle(base, hosts);
  const { now } = await get(base, hosts[0], "/__bench/advance?ms=0", "POST");
  for (let i = 0; i < runs; i++) await worker.scheduled({ scheduledTime: new Date(now + i * 60_000), cron: "* * * * *" });
  const end = await settle(base, hosts);
  const d = diff(end, start);
  const perRun = (x) => x / runs;
  const perCustomerDay = (x) => (x / runs / customers) * 1440;
  const counts = {
    runs,
    customers,
    rows_written_per_run: perRun(total(d.written)),
    rows_read_per_run: perRun(total(d.read)),
    rpcs_per_run: perRun(d.rpcs + d.alarms),
    duration_ms_per_run: perRun(d.duration_ms),
    written_by_table_per_run: Object.fromEntries(Object.entries(d.written).map(([k, v]) => [k, perRun(v)])),
    rpcs_by_method_per_run: Object.fromEntries(Object.entries(d.rpc_by_method).map(([k, v]) => [k, perRun(v)])),
  };
  // A cron invocation is one Workers request; its CPU is not measured (counted workerd).
  const cost = costPerMillion(
    {
      rows_written_per_request_lifetime: perCustomerDay(total(d.written)),
      rows_read_per_request: perCustomerDay(total(d.read)),
      rpcs_per_request: perCustomerDay(d.rpcs + d.alarms),
      duration_ms_per_request: perCustomerDay(d.duration_ms),
      cpu_us_per_request: 0,
    },
    1440 / customers,
  );
  return { ...counts, cost_per_million_customer_days_usd: cost.total, cost_lines: cost.lines };
}
