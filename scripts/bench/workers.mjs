// The workers the bench runs and their bundles: the gateway as deployed (wrangler's own build of
// src/index.ts), the baselines it is compared with, and bench-only entries around its bundle.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";

export const root = join(fileURLToPath(import.meta.url), "..", "..", "..");
export const ADMIN_TOKEN = "bench-admin-token-0123456789abcdef";
/** gateway_stream: the price of one event (0.01 cents = 10,000 micro-cents). */
export const STREAM_EVENT_PRICE_CENTS = "0.01";
/** The `hold` row's path: the demo origin answers with `x-usage-tokens`, the units a hold settles at. */
export const HOLD_PATH = "/v1/tokens";

const wranglerToml = readFileSync(join(root, "wrangler.toml"), "utf8");
export const compatibilityDate = /compatibility_date\s*=\s*"([^"]+)"/.exec(wranglerToml)[1];
/** The gateway's flags, as deployed (wrangler.toml). */
export const compatibilityFlags = JSON.parse(/compatibility_flags\s*=\s*(\[[^\]]*\])/.exec(wranglerToml)[1]);

/** The gateway's Durable Object bindings (wrangler.toml), for a bench worker running its bundle. */
export const GATEWAY_DURABLE_OBJECTS = {
  CUSTOMERS: { className: "CustomerAccount", useSQLite: true },
  DIRECTORY: { className: "Directory", useSQLite: true },
  WEBHOOK_DISPATCHER: { className: "WebhookDispatcher", useSQLite: true },
};

export const miniflare = (workers) => new Miniflare(convertV4MiniflareOptions({ workers }));

/** The gateway's bundle, built by wrangler as `wrangler deploy` would build it. Returns its path. */
export function bundleGateway() {
  const outdir = join(root, ".wrangler", "bench");
  execFileSync(process.execPath, [join(root, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", outdir], {
    cwd: root,
    stdio: "ignore",
  });
  return join(outdir, "index.js");
}

/**
 * Builds a bench-only entry around the gateway bundle (`contents` imports it): the gateway's own
 * source is never changed for the bench. Returns the file's path.
 */
export async function buildBenchEntry(fileName, contents) {
  const outfile = join(root, ".wrangler", "bench", fileName);
  await build({
    stdin: { contents, resolveDir: root, loader: "js" },
    bundle: true,
    platform: "neutral",
    format: "esm",
    external: ["cloudflare:*", "node:*"],
    outfile,
    logLevel: "silent",
  });
  return outfile;
}

/** The tests' Stripe double and its HTTP server, bundled for Node.js. */
export async function loadStripeDouble() {
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

export function gatewayWorker(name, scriptPath, bindings) {
  return {
    name,
    modules: true,
    scriptPath,
    compatibilityDate,
    compatibilityFlags,
    durableObjects: GATEWAY_DURABLE_OBJECTS,
    bindings: {
      ADMIN_TOKEN,
      PRICING: {
        currency: "usd",
        default_price_cents: "1",
        default_meter: "api_requests",
        usage_bucket_seconds: 3600,
        // gateway_stream: every server-sent event is billed as it passes, held 17 at a time so that a
        // 50-event stream needs two extensions (17 + 17 + 17), each one object call and one row written.
        meters: [
          { name: "events", path: "/v1/stream", price_cents: STREAM_EVENT_PRICE_CENTS, units: "sse:events", hold_units: 17, stripe_event_name: "stream_events" },
          { name: "tokens", path: HOLD_PATH, price_cents: "0.01", units: "header:x-usage-tokens", hold_units: 100, stripe_event_name: "bench_tokens" },
        ],
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
export function plainWorker(originUrl) {
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
export function jsStreamWorker(originUrl) {
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
export function floorWorker(name, originUrl, mode) {
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
