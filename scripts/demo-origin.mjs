// A small demo origin API for local runs and end-to-end tests: it echoes what the gateway
// forwarded, and has a few routes that misbehave on purpose. With a signing secret it accepts
// only requests the gateway signed, checked with the same helper origins copy
// (src/verify/payg-signature.ts, loaded as TypeScript: Node 22 strips the types).
import { createServer } from "node:http";
import { pathToFileURL } from "node:url";
import { log } from "../src/lib/log.ts";
import { verifyOriginRequest } from "../src/verify/payg-signature.ts";

const WORDS = "the quick brown fox jumps over the lazy dog while the gateway counts every token".split(" ");

export function startDemoOrigin({ port = 8788, host = "127.0.0.1", signingSecret = undefined } = {}) {
  if (!signingSecret) log.warn("demo origin: no ORIGIN_SIGNING_SECRET, so it cannot tell gateway traffic from anyone else's");
  const received = [];
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
      if (url.pathname === "/v1/stream") return stream(res, url, entry);
      if (url.pathname === "/v1/tokens") return tokens(res, url);
      if (url.pathname === "/v1/chat/completions" && req.method === "POST") return chat(res, body);
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
  /**
   * An OpenAI-compatible chat completion: `n` choices (1-8, default 1), each of
   * `max_completion_tokens` words, or `max_tokens` when that is absent (default 16, at most 4,096),
   * as OpenAI reads them. `usage` reports them all: in the JSON body, or with `"stream": true` as
   * server-sent events, one chunk per token, then, only when the request sets
   * `stream_options.include_usage` (as OpenAI does), a final chunk with empty `choices` and the
   * `usage`, then `[DONE]`.
   */
  function chat(res, body) {
    let request;
    try {
      request = JSON.parse(body);
    } catch {
      return json(res, 400, { error: { message: "The body is not JSON.", type: "invalid_request_error", code: null } });
    }
    if (request === null || typeof request !== "object" || !Array.isArray(request.messages)) {
      return json(res, 400, { error: { message: "messages must be an array.", type: "invalid_request_error", param: "messages", code: null } });
    }
    const perChoice = bounded(request.max_completion_tokens ?? request.max_tokens, 16, 1, 4_096);
    const choices = bounded(request.n, 1, 1, 8);
    const completionTokens = perChoice * choices;
    const promptTokens = request.messages.reduce(
      (n, m) =>
        n +
        String(m?.content ?? "")
          .split(/\s+/)
          .filter(Boolean).length,
      0,
    );
    const usage = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
    const words = Array.from({ length: perChoice }, (_, i) => WORDS[i % WORDS.length]);
    const id = `chatcmpl-demo${Date.now().toString(36)}`;
    const created = Math.floor(Date.now() / 1000);
    const model = typeof request.model === "string" ? request.model : "demo-1";
    if (request.stream !== true) {
      return json(res, 200, {
        id,
        object: "chat.completion",
        created,
        model,
        choices: Array.from({ length: choices }, (_, index) => ({ index, message: { role: "assistant", content: words.join(" ") }, finish_reason: "length" })),
        usage,
      });
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const chunk = (choices, extra = {}) => `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices, ...extra })}\n\n`;
    const includeUsage = request.stream_options?.include_usage === true;
    let i = 0;
    const next = () => {
      if (res.destroyed) return;
      if (i < words.length * choices) {
        const [index, w] = [Math.floor(i / words.length), i % words.length];
        res.write(chunk([{ index, delta: w === 0 ? { role: "assistant", content: words[w] } : { content: ` ${words[w]}` }, finish_reason: null }]));
        i++;
        return setImmediate(next);
      }
      for (let index = 0; index < choices; index++) res.write(chunk([{ index, delta: {}, finish_reason: "length" }]));
      if (includeUsage) res.write(chunk([], { usage }));
      res.end("data: [DONE]\n\n");
    };
    next();
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
