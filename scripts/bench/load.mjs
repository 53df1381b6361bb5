// The load generator (bounded closed-loop HTTP load on keep-alive connections) and the latency
// statistics of one run.
import http from "node:http";

/** Bounded closed-loop load: `concurrency` connections, `total` requests, at most `maxSeconds`. */
export async function load({ base, host, concurrency, total, request, maxSeconds, countEvents = false }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const url = new URL(base);
  const latencies = [];
  const statuses = {};
  let events = 0;
  let issued = 0;
  const deadline = Date.now() + maxSeconds * 1000;
  const one = (i) =>
    new Promise((resolve) => {
      const { path, headers = {} } = request(i);
      const start = process.hrtime.bigint();
      const req = http.request({ agent, hostname: url.hostname, port: url.port, path, method: "GET", headers: { host, ...headers } }, (res) => {
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
      });
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

export function summarize(latencies, seconds, statuses, extra = {}) {
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
  return { requests: latencies.length, seconds, rps: latencies.length / seconds, p50: pct(50), p99: pct(99), statuses, latencies, ...extra };
}

/** Requests to the origin's `/v1/data`, with `auth(i)` as the Authorization header (none for null). */
export const data = (auth) => (i) => ({ path: "/v1/data", headers: auth ? { authorization: auth(i) } : {} });
/** Request i uses key i mod the number of keys. */
export const spreadKey = (keys) => (i) => `Bearer ${keys[i % keys.length]}`;

export const fmt = (x, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : "-");
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
