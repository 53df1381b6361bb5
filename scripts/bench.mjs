// `npm run bench`: the gateway in the local Workers runtime (workerd through Miniflare, no dev
// server proxy in between) against a local origin on loopback, next to the baselines that explain
// its cost: a plain pass-through worker, and the design's floor (a worker that makes one Durable
// Object RPC with one SQLite write per request, then proxies like the plain worker).
//
// Every row is measured BENCH_REPEAT times (default 3), interleaved: each repetition runs every
// row once, in a fixed order. Each row reports its median run by throughput (that run's p50 and
// p99). Bounded in requests and time (BENCH_MAX_SECONDS per row and run); stops by itself.
// BENCH_SCALE=0.01 makes a short smoke run; BENCH_JSON=<file> also writes every row as JSON.
// `storage_month` (bench-storage-month.mjs) runs once, on a simulated clock: rows per table of
// one customer after 30 days of a request and a cron run every minute (coarser below scale 1).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { startDemoOrigin } from "./demo-origin.mjs";
import { buildBenchEntry, GATEWAY_DURABLE_OBJECTS } from "./bench-entry.mjs";
import { storageMonth } from "./bench-storage-month.mjs";

const root = join(fileURLToPath(import.meta.url), "..", "..");
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const REPEAT = Math.max(1, Math.floor(Number(process.env.BENCH_REPEAT ?? 3)));
const MAX_SECONDS_PER_ROW = Number(process.env.BENCH_MAX_SECONDS ?? 300);
const JSON_PATH = process.env.BENCH_JSON;
const n = (count) => Math.max(1, Math.round(count * SCALE));
const ADMIN = "bench-admin-token-0123456789abcdef";
const WEBHOOK_SECRET = "whsec_bench";
/** Artificial delay on each object RPC of the `gateway_rpc_delay_40ms` row, each way. */
const RPC_DELAY_MS = 40;
const STREAM_EVENTS = 50;
/** gateway_stream: the price of one event (0.01 cents = 10,000 micro-cents). */
const STREAM_EVENT_PRICE_CENTS = "0.01";

// Requests per row and repetition at BENCH_SCALE=1 (each row runs BENCH_REPEAT times): sized so
// that the full run (3 repetitions) takes about 15 minutes on a 2-core machine.
const COUNTS = {
  overhead: n(15_000), // plain, rpc_only, floor, gateway: 32 connections, 100 customers/objects
  single: n(2_000), // *_1conn
  floorHot: n(15_000),
  hot: n(20_000), // hot, hot_no_group_commit: 64 connections, credit for 90% of them
  hotCredit: n(18_000),
  manyCustomers: n(2_000),
  many: n(15_000),
  delay: n(3_000),
  streams: n(2_000),
  stripe: [
    ["stripe_calls_10c", 10, n(5_000)],
    ["stripe_calls_100c", 100, n(5_000)],
    ["stripe_calls_100c_4x", 100, n(20_000)],
  ],
};

function bundle() {
  const outdir = join(root, ".wrangler", "bench");
  execFileSync(process.execPath, [join(root, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", outdir], {
    cwd: root,
    stdio: "ignore",
  });
  return join(outdir, "index.js");
}

/**
 * The gateway as it is (the same bundle as the `gateway` row: src/index.ts built by wrangler),
 * with `env.CUSTOMERS` wrapped so that every call on a customer stub waits `RPC_DELAY_MS` before
 * and after: what an object on another continent costs today. No hook in the gateway's source.
 */
async function buildDelayedGateway(gatewayPath) {
  return buildBenchEntry(root, "gateway-rpc-delay.js", `
        import gateway, { CustomerAccount, Directory, WebhookDispatcher } from ${JSON.stringify(gatewayPath)};
        export { CustomerAccount, Directory, WebhookDispatcher };
        const DELAY_MS = ${RPC_DELAY_MS};
        const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
        const PASS = new Set(["id", "name", "then"]);
        function delayedStub(stub) {
          return new Proxy(stub, {
            get(target, prop) {
              if (typeof prop !== "string" || PASS.has(prop)) return target[prop];
              return async (...args) => {
                await sleep(DELAY_MS);
                try { return await target[prop](...args); } finally { await sleep(DELAY_MS); }
              };
            },
          });
        }
        function delayedNamespace(ns) {
          return new Proxy(ns, {
            get(target, prop) {
              if (prop === "get" || prop === "getByName") return (...args) => delayedStub(target[prop](...args));
              const value = target[prop];
              return typeof value === "function" ? value.bind(target) : value;
            },
          });
        }
        const wrapped = new WeakMap();
        function wrap(env) {
          let out = wrapped.get(env);
          if (!out) wrapped.set(env, (out = { ...env, CUSTOMERS: delayedNamespace(env.CUSTOMERS) }));
          return out;
        }
        export default {
          fetch: (request, env, ctx) => gateway.fetch(request, wrap(env), ctx),
          scheduled: (controller, env, ctx) => gateway.scheduled(controller, wrap(env), ctx),
        };`);
}

async function loadStripeDouble() {
  const outfile = join(mkdtempSync(join(os.tmpdir(), "payg-bench-")), "doubles.mjs");
  await build({
    stdin: {
      contents: `export { StripeDouble } from "./test/doubles/stripe-double.ts"; export { serveHandler } from "./test/e2e/harness.ts";`,
      resolveDir: root,
      loader: "ts",
    },
    bundle: true,
    platform: "node",
    format: "esm",
    outfile,
    logLevel: "silent",
  });
  return import(pathToFileURL(outfile).href);
}

const wranglerToml = readFileSync(join(root, "wrangler.toml"), "utf8");
const compatibilityDate = /compatibility_date\s*=\s*"([^"]+)"/.exec(wranglerToml)[1];
/** The gateway's flags, as deployed (wrangler.toml). */
const compatibilityFlags = JSON.parse(/compatibility_flags\s*=\s*(\[[^\]]*\])/.exec(wranglerToml)[1]);

function gatewayWorker(name, scriptPath, bindings) {
  return {
    name,
    modules: true,
    scriptPath,
    compatibilityDate,
    compatibilityFlags,
    durableObjects: GATEWAY_DURABLE_OBJECTS,
    bindings: {
      ADMIN_TOKEN: ADMIN,
      PRICING: {
        currency: "usd",
        default_price_cents: "1",
        default_meter: "api_requests",
        usage_bucket_seconds: 3600,
        // gateway_stream: every server-sent event is billed as it passes (held 16 at a time).
        meters: [{ name: "events", path: "/v1/stream", price_cents: STREAM_EVENT_PRICE_CENTS, units: "sse:events", hold_units: 16, stripe_event_name: "stream_events" }],
      },
      GROUP_COMMIT: true,
      ...bindings,
    },
    routes: [`${name}.bench/*`],
  };
}

/** A worker with ORIGIN_URL and nothing else bound, served at `<name>.bench`. */
function originWorker(name, originUrl, script) {
  return { name, modules: true, compatibilityDate, bindings: { ORIGIN_URL: originUrl }, script, routes: [`${name}.bench/*`] };
}

/** The baseline: a plain pass-through proxy to the same origin, nothing else. */
function plainWorker(originUrl) {
  return originWorker(
    "plain",
    originUrl,
    `export default { async fetch(request, env) {
      const url = new URL(request.url);
      return fetch(new URL(url.pathname + url.search, env.ORIGIN_URL), { method: request.method, headers: request.headers, body: request.body });
    } };`,
  );
}

/**
 * The floor of any metered stream: the plain worker, but every chunk of the response is read in
 * JavaScript and handed on, one piece per read (a pull stream with no buffer, as the gateway's
 * `sse:events` meter hands events over). No parsing, no object, no hold.
 */
function jsStreamWorker(originUrl) {
  return originWorker(
    "js-stream",
    originUrl,
    `export default { async fetch(request, env) {
      const url = new URL(request.url);
      const response = await fetch(new URL(url.pathname + url.search, env.ORIGIN_URL), { method: request.method, headers: request.headers, body: request.body });
      const reader = response.body.getReader();
      const body = new ReadableStream({
        async pull(controller) {
          const { value, done } = await reader.read();
          if (done) controller.close();
          else controller.enqueue(value);
        },
        cancel(reason) { return reader.cancel(reason); },
      }, { highWaterMark: 0 });
      return new Response(body, response);
    } };`,
  );
}

/**
 * The floor: the plain worker plus the one thing the design cannot avoid, one RPC to the
 * caller's SQLite-backed object, which does one synchronous SQLite write (a debit of a balance
 * row, like the gateway's) and returns. MODE "none" is the same RPC with no write (`rpc_only`).
 * The object is chosen by the Authorization header, as the gateway chooses it by the key.
 */
function floorWorker(name, originUrl, mode) {
  return {
    name,
    modules: true,
    compatibilityDate,
    durableObjects: { ACCOUNTS: { className: "FloorAccount", useSQLite: true } },
    bindings: { ORIGIN_URL: originUrl, MODE: mode },
    script: `import { DurableObject } from "cloudflare:workers";
    export class FloorAccount extends DurableObject {
      constructor(ctx, env) {
        super(ctx, env);
        ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS balance (id INTEGER PRIMARY KEY, micros INTEGER NOT NULL, count INTEGER NOT NULL)");
        ctx.storage.sql.exec("INSERT OR IGNORE INTO balance (id, micros, count) VALUES (1, 0, 0)");
      }
      debit(priceMicros) {
        return this.ctx.storage.sql.exec("UPDATE balance SET micros = micros - ?, count = count + 1 WHERE id = 1 RETURNING micros", priceMicros).one().micros;
      }
      ping() { return 0; }
    }
    export default { async fetch(request, env) {
      const url = new URL(request.url);
      const stub = env.ACCOUNTS.get(env.ACCOUNTS.idFromName(request.headers.get("authorization") ?? "anonymous"));
      const balance = env.MODE === "write" ? await stub.debit(1000000) : await stub.ping();
      const response = await fetch(new URL(url.pathname + url.search, env.ORIGIN_URL), { method: request.method, headers: request.headers, body: request.body });
      const out = new Response(response.body, response);
      out.headers.set("x-floor-balance", String(balance));
      return out;
    } };`,
    routes: [`${name}.bench/*`],
  };
}

const miniflare = (workers) => new Miniflare(convertV4MiniflareOptions({ workers }));

/** Bounded closed-loop load: `concurrency` connections, `total` requests, at most MAX_SECONDS_PER_ROW. */
async function load({ base, host, concurrency, total, request, countEvents = false }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const url = new URL(base);
  const latencies = [];
  const statuses = {};
  let events = 0;
  let issued = 0;
  const deadline = Date.now() + MAX_SECONDS_PER_ROW * 1000;
  const one = (i) =>
    new Promise((resolve) => {
      const { path, headers = {} } = request(i);
      const start = process.hrtime.bigint();
      const req = http.request(
        { agent, hostname: url.hostname, port: url.port, path, method: "GET", headers: { host, ...headers } },
        (res) => {
          let tail = "";
          if (countEvents) {
            res.setEncoding("utf8");
            res.on("data", (chunk) => {
              // Data events only: the gateway's closing charge comment (": x-payg-charge-cents…") is not one.
              const blocks = (tail + chunk).split("\n\n");
              tail = blocks.pop();
              for (const block of blocks) if (block.startsWith("id:") || block.startsWith("data:")) events++;
            });
          } else res.resume();
          res.on("end", () => {
            latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
            statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
            resolve();
          });
        },
      );
      req.on("error", () => {
        statuses.error = (statuses.error ?? 0) + 1;
        resolve();
      });
      req.end();
    });
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (issued < total && Date.now() < deadline) await one(issued++);
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  agent.destroy();
  return summarize(latencies, seconds, statuses, countEvents ? { events } : {});
}

function summarize(latencies, seconds, statuses, extra = {}) {
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
  return { requests: latencies.length, seconds, rps: latencies.length / seconds, p50: pct(50), p99: pct(99), statuses, latencies, ...extra };
}

function adminClient(base, host = "gateway.bench") {
  const url = new URL(base);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  return (method, path, body, extraHeaders = {}) =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
      const req = http.request(
        {
          agent,
          hostname: url.hostname,
          port: url.port,
          path,
          method,
          headers: { host, authorization: `Bearer ${ADMIN}`, "content-type": "application/json", ...extraHeaders },
        },
        (res) => {
          const chunks = [];
          res.on("data", (c) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString();
            resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null });
          });
        },
      );
      req.on("error", reject);
      req.end(payload);
    });
}

async function inBatches(items, size, fn) {
  const out = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

async function createCustomers(adminCall, ids, cents) {
  return inBatches(ids, 32, async (id) => {
    await adminCall("PUT", `/admin/customers/${id}`, { name: "Bench Customer", email: `${id}@example.com` });
    const key = (await adminCall("POST", `/admin/customers/${id}/keys`, {})).body.key;
    if (cents) await adminCall("POST", `/admin/customers/${id}/credits`, { amount: cents, reason: "bench" });
    return key;
  });
}

const EVENT_MICROS = exactMicros(STREAM_EVENT_PRICE_CENTS);
/** "12.345678" cents as integer micro-cents (the gateway's exact strings have at most 6 decimals). */
function exactMicros(cents) {
  const [whole, fraction = ""] = cents.replace("-", "").split(".");
  const micros = Number(whole) * 1_000_000 + Number(fraction.padEnd(6, "0"));
  return cents.startsWith("-") ? -micros : micros;
}

const fmt = (x, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : "-");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

async function main() {
  const startedAt = Date.now();
  const scriptPath = bundle();
  const delayedPath = await buildDelayedGateway(scriptPath);
  const origin = await startDemoOrigin({ port: 0 });
  const { StripeDouble, serveHandler } = await loadStripeDouble();

  // Local mode (no Stripe): every worker in one workerd process, so they share the same machine.
  const mf = miniflare([
    plainWorker(origin.url),
    jsStreamWorker(origin.url),
    floorWorker("floor", origin.url, "write"),
    floorWorker("rpc-only", origin.url, "none"),
    gatewayWorker("gateway", scriptPath, { ORIGIN_URL: origin.url, GROUP_COMMIT: true }),
    gatewayWorker("gateway-ngc", scriptPath, { ORIGIN_URL: origin.url, GROUP_COMMIT: false }),
    gatewayWorker("gateway-delay", delayedPath, { ORIGIN_URL: origin.url, GROUP_COMMIT: true }),
  ]);
  const base = String(await mf.ready);
  const admin = adminClient(base, "gateway.bench");
  const adminNoGroupCommit = adminClient(base, "gateway-ngc.bench");
  const adminDelay = adminClient(base, "gateway-delay.bench");

  const spread = await createCustomers(admin, Array.from({ length: 100 }, (_, i) => `cus_overhead_${i}`), 1_000_000);
  const spreadDelay = await createCustomers(adminDelay, Array.from({ length: 100 }, (_, i) => `cus_delay_${i}`), 1_000_000);
  const manyKeys = await createCustomers(admin, Array.from({ length: COUNTS.manyCustomers }, (_, i) => `cus_many_${i}`), 1_000);
  const floorKey = (i) => `Bearer floor_${i % 100}`;
  const spreadKey = (keys) => (i) => `Bearer ${keys[i % keys.length]}`;
  const data = (auth) => (i) => ({ path: "/v1/data", headers: auth ? { authorization: auth(i) } : {} });
  const spreadStream = (keys) => (i) => ({ path: `/v1/stream?events=${STREAM_EVENTS}`, headers: { authorization: `Bearer ${keys[i % keys.length]}` } });

  // Warm-up (not recorded): every worker compiles and every object opens before the first run.
  const warm = Math.min(200, n(2_000));
  for (const [host, auth] of [
    ["plain.bench", null],
    ["rpc-only.bench", floorKey],
    ["floor.bench", floorKey],
    ["gateway.bench", spreadKey(spread)],
    ["gateway-delay.bench", spreadKey(spreadDelay)],
  ]) {
    await load({ base, host, concurrency: 16, total: warm, request: data(auth) });
  }

  const hotChecks = { hot: [], hot_no_group_commit: [] };
  const storageRuns = [];
  const stripeRuns = new Map();

  // The rows, in a fixed order; each repetition runs all of them once.
  const local = [
    ["plain", () => load({ base, host: "plain.bench", concurrency: 32, total: COUNTS.overhead, request: data(null) })],
    ["rpc_only", () => load({ base, host: "rpc-only.bench", concurrency: 32, total: COUNTS.overhead, request: data(floorKey) })],
    ["floor", () => load({ base, host: "floor.bench", concurrency: 32, total: COUNTS.overhead, request: data(floorKey) })],
    ["gateway", () => load({ base, host: "gateway.bench", concurrency: 32, total: COUNTS.overhead, request: data(spreadKey(spread)) })],
    ["plain_1conn", () => load({ base, host: "plain.bench", concurrency: 1, total: COUNTS.single, request: data(null) })],
    ["floor_1conn", () => load({ base, host: "floor.bench", concurrency: 1, total: COUNTS.single, request: data(floorKey) })],
    ["gateway_1conn", () => load({ base, host: "gateway.bench", concurrency: 1, total: COUNTS.single, request: data(spreadKey(spread)) })],
    ["floor_hot", () => load({ base, host: "floor.bench", concurrency: 64, total: COUNTS.floorHot, request: data(() => "Bearer floor_hot") })],
    ["hot", (rep) => hotRow("hot", "gateway.bench", admin, `cus_hot_${rep}`)],
    ["hot_no_group_commit", (rep) => hotRow("hot_no_group_commit", "gateway-ngc.bench", adminNoGroupCommit, `cus_hot_ngc_${rep}`)],
    [
      "many_customers",
      () =>
        load({
          base,
          host: "gateway.bench",
          concurrency: 64,
          total: COUNTS.many,
          request: () => ({ path: "/v1/data", headers: { authorization: `Bearer ${manyKeys[Math.floor(Math.random() * manyKeys.length)]}` } }),
        }),
    ],
    [
      `gateway_rpc_delay_${RPC_DELAY_MS}ms`,
      () => load({ base, host: "gateway-delay.bench", concurrency: 32, total: COUNTS.delay, request: data(spreadKey(spreadDelay)) }),
    ],
    ["plain_stream", () => streamRow("plain.bench")],
    ["js_stream", () => streamRow("js-stream.bench")],
    [
      "gateway_stream",
      async () => {
        const before = await spreadBalanceMicros(admin, "cus_overhead", 100);
        const result = await load({
          base,
          host: "gateway.bench",
          concurrency: 32,
          total: COUNTS.streams,
          request: spreadStream(spread),
          countEvents: true,
        });
        await sleep(200); // settlement runs under waitUntil as each stream closes
        const charged = before - (await spreadBalanceMicros(admin, "cus_overhead", 100));
        return {
          ...result,
          events_per_s: result.events / result.seconds,
          events_expected: result.requests * STREAM_EVENTS,
          charged_micros: charged,
          exact: charged === result.events * EVENT_MICROS,
        };
      },
    ],
  ];

  /** A stream row with no key: each of COUNTS.streams requests streams STREAM_EVENTS events, all counted. */
  async function streamRow(host) {
    const result = await load({
      base,
      host,
      concurrency: 32,
      total: COUNTS.streams,
      request: () => ({ path: `/v1/stream?events=${STREAM_EVENTS}` }),
      countEvents: true,
    });
    return { ...result, events_per_s: result.events / result.seconds, events_expected: result.requests * STREAM_EVENTS };
  }

  /** The spread customers' balances, summed, in micro-cents. */
  async function spreadBalanceMicros(adminCall, prefix, count) {
    const summaries = await inBatches(Array.from({ length: count }, (_, i) => `${prefix}_${i}`), 16, (id) => adminCall("GET", `/admin/customers/${id}`));
    return summaries.reduce((sum, r) => sum + exactMicros(r.body.balance.available_exact_cents), 0);
  }

  async function hotRow(id, host, adminCall, customerId) {
    const credit = COUNTS.hotCredit;
    const [key] = await createCustomers(adminCall, [customerId], credit);
    const result = await load({
      base,
      host,
      concurrency: 64,
      total: COUNTS.hot,
      request: () => ({ path: "/v1/data", headers: { authorization: `Bearer ${key}` } }),
    });
    const summary = (await adminCall("GET", `/admin/customers/${customerId}`)).body;
    const ok = result.statuses[200] ?? 0;
    const balance = summary.balance.available_exact_cents;
    const exact = ok === credit && balance === "0";
    hotChecks[id].push(exact);
    const ledgerRows = summary.ledger_summary.reduce((sum, r) => sum + r.entries, 0);
    if (id === "hot") {
      storageRuns.push({
        charged: ok,
        ledger_rows: ledgerRows,
        entries: Object.fromEntries(summary.ledger_summary.map((r) => [r.kind, r.entries])),
      });
    }
    return { ...result, credit_cents: credit, successes: ok, refused: result.statuses[402] ?? 0, balance_cents: balance, exact };
  }

  async function stripeRow(id, customers, requests) {
    const stripe = new StripeDouble({ webhookSecret: WEBHOOK_SECRET });
    const stripeServer = await serveHandler((r) => stripe.handle(r));
    const smf = miniflare([
      gatewayWorker("gateway", scriptPath, {
        ORIGIN_URL: origin.url,
        STRIPE_API_BASE: stripeServer.url,
        STRIPE_SECRET_KEY: "sk_test_bench",
        STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
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
    const cronRuns = 3;
    const latencies = [];
    const statuses = {};
    let seconds = 0;
    for (let run = 0; run < cronRuns; run++) {
      const part = await load({
        base: sbase,
        host: "gateway.bench",
        concurrency: 64,
        total: Math.round(requests / cronRuns),
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
      cron_runs: cronRuns,
      served,
      stripe_calls: calls,
      stripe_calls_per_100k: (calls / served) * 100_000,
      balance_transactions: debits,
      bound: customers * cronRuns,
    };
  }

  for (let rep = 0; rep < REPEAT; rep++) {
    const repStarted = Date.now();
    for (const [id, run] of local) record(id, await run(rep));
    for (const [id, customers, requests] of COUNTS.stripe) {
      const result = await stripeRow(id, customers, requests);
      record(id, result);
      if (!stripeRuns.has(id)) stripeRuns.set(id, []);
      stripeRuns.get(id).push(result.balance_transactions);
    }
    console.error(`bench: repetition ${rep + 1}/${REPEAT} took ${fmt((Date.now() - repStarted) / 1000)} s`);
  }
  await mf.dispose();
  // Storage, not speed: run once, in a workerd of its own (its clock is simulated).
  const month = await storageMonth({
    root,
    gatewayPath: scriptPath,
    originUrl: origin.url,
    scale: SCALE,
    maxSeconds: MAX_SECONDS_PER_ROW,
    compatibilityDate,
    compatibilityFlags,
    adminToken: ADMIN,
    adminClient,
    StripeDouble,
    serveHandler,
  });
  await origin.close();

  // ---- Results: the median run of each row, ratios between medians.
  const m = (id) => median(id);
  const ratio = (a, b) => (m(a) && m(b) ? m(a).rps / m(b).rps : NaN);
  const spreadOf = (id) => {
    const list = runs.get(id).map((r) => r.rps);
    return list.length > 1 ? ` (runs ${fmt(Math.min(...list))}–${fmt(Math.max(...list))})` : "";
  };
  const perf = (id) => `${fmt(m(id).rps)} req/s${spreadOf(id)}, p50 ${fmt(m(id).p50, 2)} ms, p99 ${fmt(m(id).p99, 2)} ms`;
  const all200 = (id) => runs.get(id).every((r) => (r.statuses[200] ?? 0) === r.requests);
  const okCheck = (id) => `${m(id).statuses[200] ?? 0} × 200${all200(id) ? "" : " (NOT all 200 in every run)"}`;
  const x = `×${REPEAT}`;
  const ratios = {
    floor_vs_plain: ratio("floor", "plain"),
    rpc_only_vs_plain: ratio("rpc_only", "plain"),
    gateway_vs_floor: ratio("gateway", "floor"),
    gateway_vs_plain: ratio("gateway", "plain"),
    hot_vs_floor_hot: ratio("hot", "floor_hot"),
    hot_vs_hot_no_group_commit: ratio("hot", "hot_no_group_commit"),
    floor_1conn_added_p50_ms: m("floor_1conn").p50 - m("plain_1conn").p50,
    gateway_1conn_added_p50_ms: m("gateway_1conn").p50 - m("plain_1conn").p50,
    gateway_1conn_added_p50_over_floor_ms: m("gateway_1conn").p50 - m("floor_1conn").p50,
    js_stream_vs_plain_stream: ratio("js_stream", "plain_stream"),
    gateway_stream_vs_plain_stream: ratio("gateway_stream", "plain_stream"),
    gateway_stream_vs_js_stream: ratio("gateway_stream", "js_stream"),
    rpc_delay_added_p50_ms: m(`gateway_rpc_delay_${RPC_DELAY_MS}ms`).p50 - m("gateway").p50,
  };
  const hotCheck = (id) => {
    const r = m(id);
    const every = hotChecks[id].every(Boolean);
    return `${r.successes} × 200 (= credit ÷ price in every run: ${every ? "yes" : "NO"}), ${r.refused} × 402, balance ${r.balance_cents}`;
  };
  const storage = storageRuns[runs.get("hot").indexOf(m("hot"))] ?? storageRuns[0];
  const storageBounded = storageRuns.every((s) => s.ledger_rows <= 3);

  const table = [
    ["plain", "1. Plain pass-through worker (baseline)", `${m("plain").requests} req, 32 conns, ${x}`, perf("plain"), `${okCheck("plain")}`],
    ["rpc_only", "1. One object RPC, no write", `${m("rpc_only").requests} req over 100 objects, 32 conns, ${x}`, perf("rpc_only"), `×${fmt(ratios.rpc_only_vs_plain, 2)} of plain; ${okCheck("rpc_only")}`],
    ["floor", "1. Floor: one object RPC + one SQLite write", `${m("floor").requests} req over 100 objects, 32 conns, ${x}`, perf("floor"), `×${fmt(ratios.floor_vs_plain, 2)} of plain; ${okCheck("floor")}`],
    ["gateway", "1. Gateway (100 customers)", `${m("gateway").requests} req, 32 conns, ${x}`, perf("gateway"), `×${fmt(ratios.gateway_vs_floor, 2)} of floor, ×${fmt(ratios.gateway_vs_plain, 2)} of plain, p50 +${fmt(m("gateway").p50 - m("plain").p50, 2)} ms; ${okCheck("gateway")}`],
    ["plain_1conn", "2. Plain at 1 connection", `${m("plain_1conn").requests} req, ${x}`, perf("plain_1conn"), "latency baseline"],
    ["floor_1conn", "2. Floor at 1 connection", `${m("floor_1conn").requests} req, ${x}`, perf("floor_1conn"), `+${fmt(ratios.floor_1conn_added_p50_ms, 2)} ms p50 over plain`],
    ["gateway_1conn", "2. Gateway at 1 connection", `${m("gateway_1conn").requests} req, ${x}`, perf("gateway_1conn"), `+${fmt(ratios.gateway_1conn_added_p50_ms, 2)} ms p50 over plain (+${fmt(ratios.gateway_1conn_added_p50_over_floor_ms, 2)} ms over floor)`],
    ["floor_hot", "3. Floor, one hot object", `${m("floor_hot").requests} req, 64 conns, ${x}`, perf("floor_hot"), `${okCheck("floor_hot")}`],
    ["hot", "3. One hot customer (GROUP_COMMIT=true)", `${m("hot").requests} req, 64 conns, ${COUNTS.hotCredit} cents at 1 cent, ${x} (new customer each)`, perf("hot"), `×${fmt(ratios.hot_vs_floor_hot, 2)} of floor_hot; ${hotCheck("hot")}`],
    ["hot_no_group_commit", "3. One hot customer (GROUP_COMMIT=false)", `${m("hot_no_group_commit").requests} req, 64 conns, ${COUNTS.hotCredit} cents at 1 cent, ${x} (new customer each)`, perf("hot_no_group_commit"), `hot ÷ this = ×${fmt(ratios.hot_vs_hot_no_group_commit, 2)}; ${hotCheck("hot_no_group_commit")}`],
    ["storage", "3. Storage", `after ${storage.charged} charged requests on one customer`, `${storage.ledger_rows} ledger rows`, `${Object.entries(storage.entries).map(([k, v]) => `${k}: ${v}`).join(", ")} (1 meter × 1-hour buckets + grants; bounded in every run: ${storageBounded ? "yes" : "NO"})`],
    [
      "storage_month",
      "3. Storage after a month",
      `${month.steps} steps of ${fmt(month.step_seconds / 60)} min over ${month.simulated_days} simulated days: a request and a cron run each (Stripe double); REPORT_RETENTION_DAYS=${month.retention.REPORT_RETENTION_DAYS}, usage_retention_days=${month.retention.usage_retention_days}`,
      `rows: ${Object.entries(month.tables).filter(([, rows]) => rows > 0).map(([t, rows]) => `${t} ${rows}`).join(", ")}; ${fmt(month.database_bytes / 1024)} KiB`,
      `reports ${month.reports_kept} kept (at most ${month.bound.reports}) + ${month.reports_archived} archived; usage rows ${month.usage_rows} (at most ${month.bound.usage_rows}) for ${month.usage_requests} requests; every cent reported or pending: ${month.usage_accounted ? "yes" : "NO"}; balance = ledger sum: ${month.balance_equals_ledger_sum ? "yes" : "NO"}; bounded: ${month.bounded ? "yes" : "NO"}`,
    ],
    ["many_customers", "4. Many customers", `${m("many_customers").requests} req over ${COUNTS.manyCustomers} customers, 64 conns, ${x}`, perf("many_customers"), `${okCheck("many_customers")}, ${m("many_customers").statuses[402] ?? 0} × 402`],
    [`gateway_rpc_delay_${RPC_DELAY_MS}ms`, `5. Gateway, object ${RPC_DELAY_MS} ms away (each way)`, `${m(`gateway_rpc_delay_${RPC_DELAY_MS}ms`).requests} req, 32 conns, ${x}`, perf(`gateway_rpc_delay_${RPC_DELAY_MS}ms`), `p50 +${fmt(ratios.rpc_delay_added_p50_ms, 2)} ms over gateway; ${okCheck(`gateway_rpc_delay_${RPC_DELAY_MS}ms`)}`],
    ["plain_stream", "6. Plain worker, streamed response (SSE)", `${m("plain_stream").requests} streams × ${STREAM_EVENTS} events, 32 conns, ${x}`, `${fmt(m("plain_stream").events_per_s)} events/s, ${fmt(m("plain_stream").rps)} streams/s, p50 ${fmt(m("plain_stream").p50, 2)} ms, p99 ${fmt(m("plain_stream").p99, 2)} ms`, `${m("plain_stream").events} of ${m("plain_stream").events_expected} events arrived`],
    [
      "js_stream",
      "6. Stream floor: each chunk read and handed on in JavaScript",
      `${m("js_stream").requests} streams × ${STREAM_EVENTS} events, 32 conns, ${x}`,
      `${fmt(m("js_stream").events_per_s)} events/s, ${fmt(m("js_stream").rps)} streams/s, p50 ${fmt(m("js_stream").p50, 2)} ms, p99 ${fmt(m("js_stream").p99, 2)} ms`,
      `×${fmt(ratios.js_stream_vs_plain_stream, 2)} of plain_stream; ${m("js_stream").events} of ${m("js_stream").events_expected} events arrived`,
    ],
    [
      "gateway_stream",
      `6. Gateway, metered stream (sse:events, ${STREAM_EVENT_PRICE_CENTS} cents an event, held 16 at a time)`,
      `${m("gateway_stream").requests} streams × ${STREAM_EVENTS} events over 100 customers, 32 conns, ${x}`,
      `${fmt(m("gateway_stream").events_per_s)} events/s, ${fmt(m("gateway_stream").rps)} streams/s, p50 ${fmt(m("gateway_stream").p50, 2)} ms, p99 ${fmt(m("gateway_stream").p99, 2)} ms`,
      `×${fmt(ratios.gateway_stream_vs_js_stream, 2)} of js_stream, ×${fmt(ratios.gateway_stream_vs_plain_stream, 2)} of plain_stream; ${m("gateway_stream").events} of ${m("gateway_stream").events_expected} events arrived; charged = events × price in every run: ${runs.get("gateway_stream").every((r) => r.exact) ? "yes" : "NO"}`,
    ],
    ...COUNTS.stripe.map(([id, customers]) => {
      const r = m(id);
      const worst = Math.max(...stripeRuns.get(id));
      return [
        id,
        `7. Stripe traffic: ${customers} customers`,
        `${r.served} proxied req, ${r.cron_runs} cron runs, ${x}`,
        `${r.stripe_calls} Stripe API calls (${fmt(r.stripe_calls_per_100k)} per 100,000 req)`,
        `${worst} balance transactions at most in a run (at most customers × runs = ${r.bound})`,
      ];
    }),
  ];

  const fromMiniflare = createRequire(fileURLToPath(import.meta.resolve("miniflare")));
  const workerd = JSON.parse(readFileSync(fromMiniflare.resolve("workerd/package.json"), "utf8")).version;
  const machine = {
    cores: os.cpus().length,
    cpu_model: os.cpus()[0]?.model ?? "?",
    memory_gib: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    node: process.version,
    workerd,
    platform: `${os.platform()} ${os.release()}`,
    date: new Date(startedAt).toISOString(),
    scale: SCALE,
    repeat: REPEAT,
    max_seconds_per_row: MAX_SECONDS_PER_ROW,
    duration_s: Math.round((Date.now() - startedAt) / 1000),
  };

  console.log(
    `\nMachine: ${machine.cores} cores (${machine.cpu_model}), ${fmt(machine.memory_gib, 1)} GiB, Node.js ${machine.node}, workerd ${workerd}; ` +
      `BENCH_SCALE=${SCALE}, BENCH_REPEAT=${REPEAT}; ${machine.date}; took ${machine.duration_s} s`,
  );
  console.log("Measured: workerd through Miniflare's own entry socket (no wrangler dev proxy or request logging); load generator and origin in one Node.js process on loopback.");
  console.log(`Each row: the median of ${REPEAT} interleaved runs by req/s, with that run's p50 and p99; ratios are between medians.\n`);
  console.log("The floor is one Durable Object RPC with one SQLite write per request, then the same proxy as plain:");
  console.log(`  floor   = ×${fmt(ratios.floor_vs_plain, 2)} of plain pass-through (one RPC, no write: ×${fmt(ratios.rpc_only_vs_plain, 2)})`);
  console.log(`  gateway = ×${fmt(ratios.gateway_vs_floor, 2)} of the floor (×${fmt(ratios.gateway_vs_plain, 2)} of plain)`);
  console.log(`  hot     = ×${fmt(ratios.hot_vs_floor_hot, 2)} of the floor on one hot object; GROUP_COMMIT on ÷ off = ×${fmt(ratios.hot_vs_hot_no_group_commit, 2)}\n`);
  console.log("| id | row | measured | result | check |\n|---|---|---|---|---|");
  for (const [id, name, measured, result, check] of table) console.log(`| \`${id}\` | ${name} | ${measured} | ${result} | ${check} |`);

  if (JSON_PATH) {
    const rows = table.map(([id, name]) => {
      if (id === "storage") {
        return { id, name, rps: null, p50_ms: null, p99_ms: null, ledger_rows: storage.ledger_rows, entries: storage.entries, charged: storage.charged, bounded_every_run: storageBounded, runs: storageRuns };
      }
      if (id === "storage_month") return { id, name, rps: null, p50_ms: null, p99_ms: null, ...month, seconds: Number(month.seconds.toFixed(3)) };
      const med = m(id);
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
      return { id, name, ...pick(med), runs: runs.get(id).map(pick) };
    });
    const roundedRatios = Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, Number.isFinite(v) ? Number(v.toFixed(3)) : null]));
    writeFileSync(JSON_PATH, JSON.stringify({ machine, median_of: "rps", ratios: roundedRatios, rows }, null, 2) + "\n");
    console.log(`\nWrote ${rows.length} rows to ${JSON_PATH}`);
  }
}

await main();
