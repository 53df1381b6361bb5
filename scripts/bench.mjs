// `npm run bench`: the gateway in the local Workers runtime (workerd through Miniflare, no dev
// server proxy in between) against a local origin on loopback, next to the baselines that explain
// its cost: a plain pass-through worker, and the design's floor (a worker that makes one Durable
// Object RPC with one SQLite write per request, then proxies like the plain worker).
//
// Every row is measured BENCH_REPEAT times (default 3), interleaved: each repetition runs every
// row once, in a fixed order. Each row reports its median run by throughput (that run's p50 and
// p99). Bounded in requests and time (BENCH_MAX_SECONDS per row and run); stops by itself.
// BENCH_SCALE=0.01 makes a short smoke run; BENCH_JSON=<file> also writes every row as JSON;
// `--only <id>[,<id>…]` runs those rows alone (`npm run bench -- --only sweep_2000`).
// After the repetitions, the rows marked `counted` (the gateway rows) run once more on a workerd of
// their own running the counted entry (bench/counted.mjs): rows written and read, object requests
// and duration per request, over the request path and over the rows' life (bench/counts.mjs), priced
// at Cloudflare's list prices (bench/cost.mjs); every timed run also reports workerd's CPU per
// request. `--counts` runs only what those need (COUNTS_IDS, one repetition, a tenth of the requests).
// `storage_month` (bench/storage.mjs) runs once, on a simulated clock: rows per table of
// one customer after 30 days of a request and a cron run every minute (coarser below scale 1).
//
// This file is the runner; the rows are in scripts/bench/, one module per row family. A family
// exports `rows(ctx)`: its rows in table order, each
//   { id, name,
//     setup?(),      once, before any row is warmed up or measured (customers, keys);
//     warm?(),       once, after every row's setup, not recorded;
//     run?(rep),     every repetition, in table order: returns the load's result (`load.mjs`);
//     runOnce?(),    once, after the repetitions and the shared workerd (a workerd of its own);
//     cells(stats),  the table's measured, result and check columns;
//     json?(stats),  its JSON fields after id and name (default: the median run and every run);
//     counted? }     true for a gateway row whose requests the counted pass counts;
// a row with neither run nor runOnce reports what other rows measured. A family may also export
// `workers(ctx)` (its workers in the shared workerd), `ratios(stats)` (named numbers for the
// cells and the JSON) and `summary(stats)` (lines printed above the table).
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { adminClient, createCustomers } from "./bench/admin.mjs";
import { COUNTS_IDS, costRows, countsCell, countsJson, countsSummary } from "./bench/cost.mjs";
import { buildCountedGateway } from "./bench/counted.mjs";
import { countCron, countRow, pairedCpu, withCpu, workerdPids } from "./bench/counts.mjs";
import { fmt, load } from "./bench/load.mjs";
import { cpuSides } from "./bench/overhead.mjs";
import { bundleGateway, loadStripeDouble, miniflare } from "./bench/workers.mjs";
import { startDemoOrigin } from "./demo-origin.mjs";

// `--counts`: only what the counts need (the rows in COUNTS_IDS, one repetition, a tenth of the
// requests: counts per request are steady long before), then the counted pass.
const COUNTS = process.argv.includes("--counts");
const SCALE = Number(process.env.BENCH_SCALE ?? 1) * (COUNTS ? 0.1 : 1);
const REPEAT = COUNTS ? 1 : Math.max(1, Math.floor(Number(process.env.BENCH_REPEAT ?? 3)));
const MAX_SECONDS_PER_ROW = Number(process.env.BENCH_MAX_SECONDS ?? 300);
const JSON_PATH = process.env.BENCH_JSON;
const onlyAt = process.argv.indexOf("--only");
const ONLY = onlyAt === -1 ? (COUNTS ? new Set(COUNTS_IDS) : null) : new Set((process.argv[onlyAt + 1] ?? "").split(",").filter(Boolean));
// Each row's request count at BENCH_SCALE=1 is `n(count)` in its family: sized so that the full
// run (3 repetitions) takes about 15 minutes on a 2-core machine.
const n = (count) => Math.max(1, Math.round(count * SCALE));

// The row families, in the table's order, which is also the order each repetition runs them in.
const FAMILIES = await Promise.all(
  ["overhead", "hot", "storage", "many-customers", "delay", "leases", "streams", "stripe-calls", "sweep", "charges"].map((name) => import(`./bench/${name}.mjs`)),
);

/** Every row's counts per request (the counted pass), by id. */
const counts = new Map();
/** The idle cron's counts (the counted pass), or null. */
let cronCounts = null;
/** The paired CPU count of floor and gateway (counts.mjs pairedCpu), or null when either row did not run. */
let pairedCpuResult = null;
/** Chunks a side of the paired CPU count. */
const CPU_CHUNKS = 8;
/** Every run of every row, by id, in the order the rows are printed. */
const runs = new Map();
const record = (id, result) => {
  const { latencies, ...kept } = result;
  if (!runs.has(id)) runs.set(id, []);
  runs.get(id).push(kept);
};
/** The median run by throughput (the lower middle one for an even count). */
function median(id) {
  const list = runs.get(id);
  if (!list?.length) return null;
  const sorted = [...list].sort((a, b) => a.rps - b.rps);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/**
 * What the rows are given: the scale (`n`, `scale`, `maxSeconds`), helpers on the shared workerd
 * (`load`, `warm`, `admin`, `customers`), and, once it has started, `scriptPath` (the gateway's
 * bundle), `originUrl`, `StripeDouble` and `serveHandler` (the tests' Stripe double) and `base`.
 */
function context() {
  const admins = new Map();
  const customers = new Map();
  const created = new Map();
  const ctx = {
    scale: SCALE,
    maxSeconds: MAX_SECONDS_PER_ROW,
    n,
    /** Load on the shared workerd (or `base`), bounded by BENCH_MAX_SECONDS. */
    load: (options) => load({ base: ctx.base, maxSeconds: MAX_SECONDS_PER_ROW, ...options }),
    warm: (host, request) => ctx.load({ host, concurrency: 16, total: Math.min(200, n(2_000)), request }),
    /** One admin client (one connection pool) per host of the shared workerd. */
    admin: (host) => {
      if (!admins.has(host)) admins.set(host, adminClient(ctx.base, host));
      return admins.get(host);
    },
    /** How many customers were created on `host` (by `customers`, and as rows say with `noteCustomers`). */
    customersCreated: (host) => created.get(host) ?? 0,
    noteCustomers: (host, count) => created.set(host, (created.get(host) ?? 0) + count),
    /** `<prefix>_0` … with `cents` each and a key each, created once however many rows ask; their keys. */
    customers: (host, prefix, count, cents) => {
      if (!customers.has(prefix)) created.set(host, (created.get(host) ?? 0) + count);
      if (!customers.has(prefix))
        customers.set(
          prefix,
          createCustomers(
            ctx.admin(host),
            Array.from({ length: count }, (_, i) => `${prefix}_${i}`),
            cents,
          ),
        );
      return customers.get(prefix);
    },
  };
  return ctx;
}

async function startLocal(ctx, origin) {
  ctx.scriptPath ??= bundleGateway();
  ctx.originUrl = origin.url;
  Object.assign(ctx, await loadStripeDouble());
  const workers = [];
  for (const family of FAMILIES) workers.push(...((await family.workers?.(ctx)) ?? []));
  // Local mode (no Stripe): every worker in one workerd process, so they share the same machine.
  const pidsBefore = new Set(workerdPids());
  const mf = miniflare(workers);
  ctx.base = String(await mf.ready);
  // The workerd this instance started: its CPU time is every row's CPU (worker and objects).
  ctx.workerdPid = workerdPids().find((pid) => !pidsBefore.has(pid));
  ctx.gatewayHosts = workers.filter((w) => w.scriptPath).map((w) => `${w.name}.bench`);
  return mf;
}

/**
 * The counted pass: the counted rows again, once each, on a workerd of their own whose gateway
 * workers run the counted entry (scripts/bench/counted.mjs), with customers of their own.
 */
async function countedPass(gatewayPath, origin, ids) {
  const cctx = context();
  cctx.scriptPath = await buildCountedGateway(gatewayPath);
  const mf = await startLocal(cctx, origin);
  const rows = FAMILIES.flatMap((family) => family.rows(cctx)).filter((row) => ids.has(row.id));
  for (const row of rows) {
    const started = Date.now();
    counts.set(row.id, await countRow(cctx.base, cctx.gatewayHosts, row));
    console.error(`bench: counted ${row.id} in ${fmt((Date.now() - started) / 1000, 1)} s`);
  }
  // The cron's visit to the `gateway` worker's customers, idle once their rows have run.
  if (ids.has("gateway")) cronCounts = await countCron(cctx.base, cctx.gatewayHosts, await mf.getWorker("gateway"), cctx.customersCreated("gateway.bench"));
  await mf.dispose();
}

async function main() {
  const startedAt = Date.now();
  const ctx = context();
  const all = FAMILIES.flatMap((family) => family.rows(ctx));
  const rows = ONLY ? all.filter((row) => ONLY.has(row.id)) : all;
  if (ONLY && rows.length !== ONLY.size)
    throw new Error(`--only: no row ${[...ONLY].filter((id) => !all.some((row) => row.id === id)).join(", ")} (rows: ${all.map((row) => row.id).join(", ")})`);
  const origin = await startDemoOrigin({ port: 0 });
  const mf = await startLocal(ctx, origin);
  for (const row of rows) await row.setup?.();
  // Warm-up (not recorded): every worker compiles and every object opens before the first run.
  for (const row of rows) await row.warm?.();
  for (let rep = 0; rep < REPEAT; rep++) {
    const repStarted = Date.now();
    for (const row of rows) if (row.run) record(row.id, await withCpu(ctx.workerdPid, () => row.run(rep)));
    console.error(`bench: repetition ${rep + 1}/${REPEAT} took ${fmt((Date.now() - repStarted) / 1000)} s`);
  }
  // The CPU ratio, paired (floor and gateway interleaved in short chunks): see counts.mjs pairedCpu.
  if (rows.some((row) => row.id === "gateway") && rows.some((row) => row.id === "floor")) {
    const pairStarted = Date.now();
    pairedCpuResult = await pairedCpu(ctx.workerdPid, cpuSides(ctx, n(3_000)), CPU_CHUNKS);
    console.error(`bench: paired CPU (${CPU_CHUNKS} chunks a side) took ${fmt((Date.now() - pairStarted) / 1000)} s`);
  }
  await mf.dispose();
  for (const row of rows) if (row.runOnce) record(row.id, await row.runOnce());
  const counted = new Set(rows.filter((row) => row.counted).map((row) => row.id));
  if (counted.size) await countedPass(ctx.scriptPath, origin, counted);
  await origin.close();

  const stats = results();
  const machine = machineInfo(startedAt);
  const table = rows.map((row) => [row.id, row.name, ...row.cells(stats), countsCell(stats, row.id)]);
  const summary = [...(ONLY ? [] : FAMILIES.flatMap((family) => family.summary?.(stats) ?? [])), ...countsSummary(stats)];
  if (cronCounts)
    summary.push(
      `  cron (idle)     $${fmt(cronCounts.cost_per_million_customer_days_usd, 3)} per 1M customer-days: ${fmt(cronCounts.rows_written_per_run, 2)} rows written, ${fmt(cronCounts.rpcs_per_run, 2)} DO requests a run over ${cronCounts.customers} idle customers`,
    );
  printResults(summary, table, machine);
  if (JSON_PATH) writeJson(rows, stats, machine);
}

/**
 * What the cells, ratios and summaries are written with: `m(id)` (the median run), `runs(id)`,
 * `ratio(a, b)`, `perf(id)`, `okCheck(id)`, `fmt`, `x` (the repetitions) and `ratios`.
 */
function results() {
  const m = median;
  const runsOf = (id) => runs.get(id) ?? [];
  const spreadOf = (id) => {
    const list = runsOf(id).map((r) => r.rps);
    return list.length > 1 ? ` (runs ${fmt(Math.min(...list))}–${fmt(Math.max(...list))})` : "";
  };
  const all200 = (id) => runsOf(id).every((r) => (r.statuses[200] ?? 0) === r.requests);
  const stats = {
    m,
    counts: (id) => counts.get(id) ?? null,
    runs: runsOf,
    fmt,
    x: `×${REPEAT}`,
    /** Ratios are between medians. */
    ratio: (a, b) => (m(a) && m(b) ? m(a).rps / m(b).rps : NaN),
    perf: (id) => `${fmt(m(id).rps)} req/s${spreadOf(id)}, p50 ${fmt(m(id).p50, 2)} ms, p99 ${fmt(m(id).p99, 2)} ms`,
    okCheck: (id) => `${m(id).statuses[200] ?? 0} × 200${all200(id) ? "" : " (NOT all 200 in every run)"}`,
  };
  stats.ratios = ONLY ? {} : Object.assign({}, ...FAMILIES.map((family) => family.ratios?.(stats) ?? {}));
  // CPU per request of the gateway over the floor's, measured in the same workerd and run.
  if (m("gateway") && m("floor")) stats.ratios.cpu_gateway_vs_floor_timed_runs = m("gateway").cpu_us_per_request / m("floor").cpu_us_per_request;
  if (pairedCpuResult) stats.ratios.cpu_gateway_vs_floor = pairedCpuResult.ratio;
  stats.pairedCpu = pairedCpuResult;
  stats.costs = costRows(stats);
  return stats;
}

function machineInfo(startedAt) {
  const fromMiniflare = createRequire(fileURLToPath(import.meta.resolve("miniflare")));
  const workerd = JSON.parse(readFileSync(fromMiniflare.resolve("workerd/package.json"), "utf8")).version;
  return {
    cores: os.cpus().length,
    cpu_model: os.cpus()[0]?.model ?? "?",
    memory_gib: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    node: process.version,
    workerd,
    platform: `${os.platform()} ${os.release()}`,
    date: new Date(startedAt).toISOString(),
    scale: Number(process.env.BENCH_SCALE ?? 1),
    repeat: REPEAT,
    counts_mode: COUNTS,
    max_seconds_per_row: MAX_SECONDS_PER_ROW,
    duration_s: Math.round((Date.now() - startedAt) / 1000),
  };
}

function printResults(summary, table, machine) {
  console.log(
    `\nMachine: ${machine.cores} cores (${machine.cpu_model}), ${fmt(machine.memory_gib, 1)} GiB, Node.js ${machine.node}, workerd ${machine.workerd}; ` +
      `BENCH_SCALE=${machine.scale}${COUNTS ? " (--counts: a tenth of the requests)" : ""}, BENCH_REPEAT=${REPEAT}; ${machine.date}; took ${machine.duration_s} s`,
  );
  console.log("Measured: workerd through Miniflare's own entry socket (no wrangler dev proxy or request logging); load generator and origin in one Node.js process on loopback.");
  console.log(`Each row: the median of ${REPEAT} interleaved runs by req/s, with that run's p50 and p99; ratios are between medians.\n`);
  for (const line of summary) console.log(line);
  console.log("");
  console.log("| id | row | measured | result | check | counted per request |\n|---|---|---|---|---|---|");
  for (const [id, name, measured, result, check, counted] of table) console.log(`| \`${id}\` | ${name} | ${measured} | ${result} | ${check} | ${counted} |`);
}

function writeJson(rows, stats, machine) {
  const round = (v, digits) => (Number.isFinite(v) ? Number(v.toFixed(digits)) : null);
  const pick = ({ requests, seconds, rps, p50, p99, statuses, ...extra }) => ({
    requests,
    seconds: round(seconds, 3),
    rps: round(rps, 1),
    p50_ms: round(p50, 3),
    p99_ms: round(p99, 3),
    statuses,
    ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [k, typeof v === "number" && !Number.isInteger(v) ? round(v, 3) : v])),
  });
  const out = rows.map(({ id, name, json }) => ({
    ...(json ? { id, name, ...json(stats) } : { id, name, ...pick(median(id)), runs: runs.get(id).map(pick) }),
    ...countsJson(stats, id),
  }));
  const ratios = Object.fromEntries(Object.entries(stats.ratios).map(([k, v]) => [k, Number.isFinite(v) ? Number(v.toFixed(3)) : null]));
  const cron = cronCounts && Object.fromEntries(Object.entries(cronCounts).map(([k, v]) => [k, typeof v === "number" ? round(v, 4) : v]));
  writeFileSync(
    JSON_PATH,
    `${JSON.stringify({ machine, median_of: "rps", ratios, paired_cpu: stats.pairedCpu, prices: stats.costs.prices, cost_per_million_usd: stats.costs.table, cron_idle: cron, rows: out }, null, 2)}\n`,
  );
  console.log(`\nWrote ${out.length} rows to ${JSON_PATH}`);
}

await main();
