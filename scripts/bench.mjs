// `npm run bench`: the gateway in the local Workers runtime (workerd through Miniflare, no dev
// server proxy in between) against a local origin on loopback. Bounded in requests and time;
// stops by itself. BENCH_SCALE=0.01 makes a seconds-long smoke run.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { startDemoOrigin } from "./demo-origin.mjs";

const root = join(fileURLToPath(import.meta.url), "..", "..");
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const MAX_SECONDS_PER_ROW = Number(process.env.BENCH_MAX_SECONDS ?? 300);
const n = (count) => Math.max(1, Math.round(count * SCALE));
const ADMIN = "bench-admin-token-0123456789abcdef";
const WEBHOOK_SECRET = "whsec_bench";

function bundle() {
  const outdir = join(root, ".wrangler", "bench");
  execFileSync(process.execPath, [join(root, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", outdir], {
    cwd: root,
    stdio: "ignore",
  });
  return join(outdir, "index.js");
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

function runtime(scriptPath, bindings) {
  return new Miniflare(
    convertV4MiniflareOptions({
      workers: [
        {
          name: "gateway",
          modules: true,
          scriptPath,
          compatibilityDate,
          compatibilityFlags: ["nodejs_compat"],
          durableObjects: {
            CUSTOMERS: { className: "CustomerAccount", useSQLite: true },
            DIRECTORY: { className: "Directory", useSQLite: true },
          },
          bindings: {
            ADMIN_TOKEN: ADMIN,
            PRICING: { currency: "usd", default_price_cents: "1", default_meter: "api_requests", usage_bucket_seconds: 3600 },
            ...bindings,
          },
          routes: ["gateway.bench/*"],
        },
        {
          // The baseline: a plain pass-through proxy to the same origin, nothing else.
          name: "plain",
          modules: true,
          compatibilityDate,
          bindings: { ORIGIN_URL: bindings.ORIGIN_URL },
          script: `export default { async fetch(request, env) {
            const url = new URL(request.url);
            return fetch(new URL(url.pathname + url.search, env.ORIGIN_URL), { method: request.method, headers: request.headers, body: request.body });
          } };`,
          routes: ["plain.bench/*"],
        },
      ],
    }),
  );
}

/** Bounded closed-loop load: `concurrency` connections, `total` requests, at most MAX_SECONDS_PER_ROW. */
async function load({ base, host, concurrency, total, request }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const url = new URL(base);
  const latencies = [];
  const statuses = {};
  let issued = 0;
  const deadline = Date.now() + MAX_SECONDS_PER_ROW * 1000;
  const one = (i) =>
    new Promise((resolve) => {
      const { path, headers = {} } = request(i);
      const start = process.hrtime.bigint();
      const req = http.request(
        { agent, hostname: url.hostname, port: url.port, path, method: "GET", headers: { host, ...headers } },
        (res) => {
          res.resume();
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
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
  return { requests: latencies.length, seconds, rps: latencies.length / seconds, p50: pct(50), p99: pct(99), statuses };
}

function adminClient(base) {
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
          headers: { host: "gateway.bench", authorization: `Bearer ${ADMIN}`, "content-type": "application/json", ...extraHeaders },
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

const fmt = (x, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : "-");
const rows = [];
const row = (name, measured, result, check) => rows.push({ name, measured, result, check });

async function main() {
  const scriptPath = bundle();
  const origin = await startDemoOrigin({ port: 0 });
  const { StripeDouble, serveHandler } = await loadStripeDouble();

  // ---- 1-3: local mode (no Stripe): overhead, one hot customer, many customers.
  {
    const mf = runtime(scriptPath, { ORIGIN_URL: origin.url });
    const base = String(await mf.ready);
    const adminCall = adminClient(base);

    const spread = await createCustomers(adminCall, Array.from({ length: 100 }, (_, i) => `cus_overhead_${i}`), 1_000_000);
    const total = n(20_000);
    const plain = await load({ base, host: "plain.bench", concurrency: 32, total, request: () => ({ path: "/v1/data" }) });
    const gated = await load({
      base,
      host: "gateway.bench",
      concurrency: 32,
      total,
      request: (i) => ({ path: "/v1/data", headers: { authorization: `Bearer ${spread[i % spread.length]}` } }),
    });
    row(
      "1. Enforcement overhead: plain proxy",
      `${plain.requests} req, 32 conns`,
      `${fmt(plain.rps)} req/s, p50 ${fmt(plain.p50, 2)} ms, p99 ${fmt(plain.p99, 2)} ms`,
      "baseline",
    );
    row(
      "1. Enforcement overhead: gateway (100 customers)",
      `${gated.requests} req, 32 conns`,
      `${fmt(gated.rps)} req/s, p50 ${fmt(gated.p50, 2)} ms, p99 ${fmt(gated.p99, 2)} ms`,
      `throughput ×${fmt(gated.rps / plain.rps, 2)}, p50 +${fmt(gated.p50 - plain.p50, 2)} ms; ${gated.statuses[200] ?? 0} × 200`,
    );

    // At one connection there is no queueing: the difference is the enforcement itself.
    const single = n(3_000);
    const plain1 = await load({ base, host: "plain.bench", concurrency: 1, total: single, request: () => ({ path: "/v1/data" }) });
    const gated1 = await load({
      base,
      host: "gateway.bench",
      concurrency: 1,
      total: single,
      request: (i) => ({ path: "/v1/data", headers: { authorization: `Bearer ${spread[i % spread.length]}` } }),
    });
    row(
      "1. Enforcement overhead at 1 connection",
      `${plain1.requests} + ${gated1.requests} req`,
      `plain p50 ${fmt(plain1.p50, 2)} ms / p99 ${fmt(plain1.p99, 2)} ms; gateway p50 ${fmt(gated1.p50, 2)} ms / p99 ${fmt(gated1.p99, 2)} ms`,
      `+${fmt(gated1.p50 - plain1.p50, 2)} ms p50 per request`,
    );

    const credit = n(90_000);
    const [hotKey] = await createCustomers(adminCall, ["cus_hot"], credit);
    const hot = await load({
      base,
      host: "gateway.bench",
      concurrency: 64,
      total: n(100_000),
      request: () => ({ path: "/v1/data", headers: { authorization: `Bearer ${hotKey}` } }),
    });
    const hotSummary = (await adminCall("GET", "/admin/customers/cus_hot")).body;
    const exact = hot.statuses[200] === credit && hotSummary.balance.available_exact_cents === "0";
    row(
      "2. One hot customer",
      `${hot.requests} req, 64 conns, ${credit} cents at 1 cent`,
      `${fmt(hot.rps)} req/s, p50 ${fmt(hot.p50, 2)} ms, p99 ${fmt(hot.p99, 2)} ms`,
      `${hot.statuses[200] ?? 0} × 200 (= credit ÷ price: ${exact ? "yes" : "NO"}), ${hot.statuses[402] ?? 0} × 402, balance ${hotSummary.balance.available_exact_cents}`,
    );
    const ledgerRows = hotSummary.ledger_summary.reduce((sum, r) => sum + r.entries, 0);
    row(
      "5. Storage",
      `after ${hot.statuses[200]} charged requests on one customer`,
      `${ledgerRows} ledger rows`,
      `${hotSummary.ledger_summary.map((r) => `${r.kind}: ${r.entries}`).join(", ")} (1 meter × 1-hour buckets + grants)`,
    );

    const manyCount = n(2_000);
    const manyKeys = await createCustomers(
      adminCall,
      Array.from({ length: manyCount }, (_, i) => `cus_many_${i}`),
      1_000,
    );
    const many = await load({
      base,
      host: "gateway.bench",
      concurrency: 64,
      total: n(20_000),
      request: () => ({ path: "/v1/data", headers: { authorization: `Bearer ${manyKeys[Math.floor(Math.random() * manyKeys.length)]}` } }),
    });
    row(
      "3. Many customers",
      `${many.requests} req over ${manyCount} customers, 64 conns`,
      `${fmt(many.rps)} req/s, p50 ${fmt(many.p50, 2)} ms, p99 ${fmt(many.p99, 2)} ms`,
      `${many.statuses[200] ?? 0} × 200, ${many.statuses[402] ?? 0} × 402`,
    );
    await mf.dispose();
  }

  // ---- 4: Stripe API calls per proxied request, against the Stripe test double.
  for (const [customers, requests] of [
    [10, n(25_000)],
    [100, n(25_000)],
    [100, n(100_000)],
  ]) {
    const stripe = new StripeDouble({ webhookSecret: WEBHOOK_SECRET });
    const stripeServer = await serveHandler((r) => stripe.handle(r));
    const mf = runtime(scriptPath, {
      ORIGIN_URL: origin.url,
      STRIPE_API_BASE: stripeServer.url,
      STRIPE_SECRET_KEY: "sk_test_bench",
      STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
    });
    const base = String(await mf.ready);
    const adminCall = adminClient(base);
    const gateway = await mf.getWorker("gateway");
    const keys = await inBatches(Array.from({ length: customers }), 16, async () => {
      const customer = stripe.createCustomer({ name: "Bench", email: "b@example.com", balance: -10_000_000 });
      for (const event of stripe.takeEvents()) {
        const { body, signature } = await stripe.sign(event);
        await adminCall("POST", "/webhooks/stripe", body, { "stripe-signature": signature });
      }
      return (await adminCall("POST", `/admin/customers/${customer.id}/keys`, {})).body.key;
    });
    await new Promise((r) => setTimeout(r, 200));
    const callsBefore = stripe.requests.length;
    const runs = 3;
    let served = 0;
    for (let run = 0; run < runs; run++) {
      const part = await load({
        base,
        host: "gateway.bench",
        concurrency: 64,
        total: Math.round(requests / runs),
        request: (i) => ({ path: "/v1/data", headers: { authorization: `Bearer ${keys[i % keys.length]}` } }),
      });
      served += part.statuses[200] ?? 0;
      await new Promise((r) => setTimeout(r, 200)); // the objects' directory updates (alarms)
      await gateway.scheduled({ scheduledTime: new Date(), cron: "* * * * *" });
    }
    const calls = stripe.requests.length - callsBefore;
    const debited = stripe.requests.filter((r) => r.path.endsWith("/balance_transactions")).length;
    row(
      `4. Stripe traffic: ${customers} customers`,
      `${served} proxied req, ${runs} cron runs`,
      `${calls} Stripe API calls (${fmt((calls / served) * 100_000)} per 100,000 req)`,
      `${debited} balance transactions (at most customers × runs = ${customers * runs})`,
    );
    await mf.dispose();
    await stripeServer.close();
  }

  await origin.close();
  const fromMiniflare = createRequire(fileURLToPath(import.meta.resolve("miniflare")));
  const workerd = JSON.parse(readFileSync(fromMiniflare.resolve("workerd/package.json"), "utf8")).version;
  console.log(
    `\nMachine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"}), ${fmt(os.totalmem() / 2 ** 30, 1)} GiB, Node.js ${process.version}, workerd ${workerd}; BENCH_SCALE=${SCALE}`,
  );
  console.log("Measured: workerd through Miniflare's own entry socket (no wrangler dev proxy or request logging); load generator and origin in one Node.js process on loopback.\n");
  console.log("| row | measured | result | check |\n|---|---|---|---|");
  for (const r of rows) console.log(`| ${r.name} | ${r.measured} | ${r.result} | ${r.check} |`);
}

await main();
