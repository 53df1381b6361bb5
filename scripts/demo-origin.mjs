// A small demo origin API for local runs and end-to-end tests: it echoes what the gateway
// forwarded, has a few routes that misbehave on purpose, answers as three LLM APIs
// (demo-llm.mjs) and serves an MCP server (demo-mcp.mjs). With a signing secret it accepts
// only requests the gateway signed, checked with the same helper origins copy
// (src/verify/payg-signature.ts, loaded as TypeScript: Node 22 strips the types).
import { createServer } from "node:http";
import { pathToFileURL } from "node:url";
import { log } from "../src/lib/log.ts";
import { verifyOriginRequest } from "../src/verify/payg-signature.ts";
import { demoLlm } from "./demo-llm.mjs";
import { demoMcp } from "./demo-mcp.mjs";

export function startDemoOrigin({ port = 8788, host = "127.0.0.1", signingSecret = undefined } = {}) {
  if (!signingSecret) log.warn("demo origin: no ORIGIN_SIGNING_SECRET, so it cannot tell gateway traffic from anyone else's");
  const received = [];
  const mcp = demoMcp();
  const llm = demoLlm();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", `http://${host}`);
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("error", () => {});
    req.on("end", async () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const verdict = signingSecret ? await verifyOriginRequest(asRequest(req, url), signingSecret) : null;
      const entry = { method: req.method, path: url.pathname, headers: req.headers, body, signature: verdict === null ? "unchecked" : verdict.ok ? "valid" : "invalid" };
      received.push(entry);
      if (verdict && !verdict.ok) return json(res, 401, { error: "not signed by the gateway", reason: verdict.reason });
      if (url.pathname === "/fault/500") return json(res, 500, { error: "origin exploded" });
      if (url.pathname === "/fault/503") return json(res, 503, { error: "origin overloaded" });
      if (url.pathname === "/fault/reset") return req.socket.destroy();
      if (url.pathname === "/fault/slow") {
        const ms = Math.min(Number(url.searchParams.get("ms") ?? 5000), 60_000);
        const timer = setTimeout(() => json(res, 200, { slow: true, ms }), ms);
        res.on("close", () => clearTimeout(timer));
        return;
      }
      if (url.pathname === "/health") return json(res, 200, { status: "ok" });
      if (url.pathname === "/mcp") return mcp(req, res, url, body);
      if (url.pathname === "/v1/stream") return stream(res, url, entry);
      if (url.pathname === "/v1/tokens") return tokens(res, url);
      if (llm(req, res, url.pathname, body)) return;
      json(res, 200, {
        message: "Hello from the demo origin",
        method: req.method,
        path: url.pathname,
        query: url.search,
        customer: req.headers["x-payg-customer-id"] ?? null,
        client_ip: req.headers["x-payg-client-ip"] ?? null,
        signature: verdict === null ? "unchecked" : "valid",
        bytes: Buffer.byteLength(body),
      });
    });
  });
  /** Server-sent events: `events` data events (1-10,000, default 50), one write per event, `interval_ms` apart (0-1,000); counted in `received`. */
  function stream(res, url, entry) {
    const events = bounded(url.searchParams.get("events"), 50, 1, 10_000);
    const interval = bounded(url.searchParams.get("interval_ms"), 0, 0, 1_000);
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    let i = 0;
    const next = () => {
      if (res.destroyed) return;
      if (i === events) return res.end();
      res.write(`id: ${i}\ndata: {"index":${i}}\n\n`);
      entry.events = ++i;
      if (interval) setTimeout(next, interval);
      else setImmediate(next);
    };
    next();
  }
  /**
   * A response that reports its own usage in a header (a meter with units = "header:x-usage-tokens"),
   * after `delay_ms` (0-60,000), so a test can act while the request is in flight.
   */
  function tokens(res, url) {
    const used = bounded(url.searchParams.get("tokens"), 1, 0, 1_000_000);
    const timer = setTimeout(
      () => {
        res.writeHead(200, { "content-type": "application/json", "x-usage-tokens": String(used) });
        res.end(JSON.stringify({ tokens: used }));
      },
      bounded(url.searchParams.get("delay_ms"), 0, 0, 60_000),
    );
    res.on("close", () => clearTimeout(timer));
  }
  function bounded(raw, fallback, min, max) {
    const n = Math.floor(Number(raw ?? fallback));
    return Number.isFinite(n) ? Math.min(Math.max(n, min), max) : fallback;
  }
  /** The web Request the helper reads: method, URL as received, headers (the body is not signed). */
  function asRequest(req, url) {
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value);
    }
    return new Request(url, { method: req.method, headers });
  }
  function json(res, status, value) {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(value));
  }
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const address = server.address();
      resolve({
        url: `http://${host}:${address.port}`,
        received,
        close: () =>
          new Promise((done) => {
            server.closeAllConnections?.();
            server.close(() => done());
          }),
      });
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const origin = await startDemoOrigin({ port: Number(process.env.PORT ?? 8788), signingSecret: process.env.ORIGIN_SIGNING_SECRET || undefined });
  console.log(`demo origin listening on ${origin.url}`);
}
