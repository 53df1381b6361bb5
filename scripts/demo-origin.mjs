// A small demo origin API for local runs and end-to-end tests: it echoes what the gateway
// forwarded, and has a few routes that misbehave on purpose.
import { createServer } from "node:http";
import { pathToFileURL } from "node:url";

export function startDemoOrigin({ port = 8788, host = "127.0.0.1" } = {}) {
  const received = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", `http://${host}`);
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("error", () => {});
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      received.push({ method: req.method, path: url.pathname, headers: req.headers, body });
      if (url.pathname === "/fault/500") return json(res, 500, { error: "origin exploded" });
      if (url.pathname === "/fault/reset") return req.socket.destroy();
      if (url.pathname === "/fault/slow") {
        const ms = Math.min(Number(url.searchParams.get("ms") ?? 5000), 60_000);
        const timer = setTimeout(() => json(res, 200, { slow: true, ms }), ms);
        res.on("close", () => clearTimeout(timer));
        return;
      }
      if (url.pathname === "/health") return json(res, 200, { status: "ok" });
      if (url.pathname === "/v1/stream") return stream(res, url);
      json(res, 200, {
        message: "Hello from the demo origin",
        method: req.method,
        path: url.pathname,
        query: url.search,
        customer: req.headers["x-payg-customer-id"] ?? null,
        bytes: Buffer.byteLength(body),
      });
    });
  });
  /** Server-sent events: `events` data events (1-10,000, default 50), one write per event. */
  function stream(res, url) {
    const events = Math.min(Math.max(Math.floor(Number(url.searchParams.get("events") ?? 50)) || 1, 1), 10_000);
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    let i = 0;
    const next = () => {
      if (res.destroyed) return;
      if (i === events) return res.end();
      res.write(`id: ${i}\ndata: {"index":${i}}\n\n`);
      i++;
      setImmediate(next);
    };
    next();
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
        close: () => new Promise((done) => { server.closeAllConnections?.(); server.close(() => done()); }),
      });
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const origin = await startDemoOrigin({ port: Number(process.env.PORT ?? 8788) });
  console.log(`demo origin listening on ${origin.url}`);
}
