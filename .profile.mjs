import http from "node:http";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { startDemoOrigin } from "./scripts/demo-origin.mjs";
const ADMIN = "bench-admin-token-0123456789abcdef";
const origin = await startDemoOrigin({ port: 0 });
const floorScript = `import { DurableObject } from "cloudflare:workers";
    export class FloorAccount extends DurableObject {
      constructor(ctx, env) {
        super(ctx, env);
        ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS balance (id INTEGER PRIMARY KEY, micros INTEGER NOT NULL, count INTEGER NOT NULL)");
        ctx.storage.sql.exec("INSERT OR IGNORE INTO balance (id, micros, count) VALUES (1, 0, 0)");
      }
      debit(priceMicros) {
        return this.ctx.storage.sql.exec("UPDATE balance SET micros = micros - ?, count = count + 1 WHERE id = 1 RETURNING micros", priceMicros).one().micros;
      }
    }
    export default { async fetch(request, env) {
      const url = new URL(request.url);
      if (url.pathname.startsWith("/admin")) return Response.json({ key: "k" + Math.random(), id: 1 }, { status: 201 });
      const stub = env.ACCOUNTS.get(env.ACCOUNTS.idFromName(request.headers.get("authorization") ?? "anonymous"));
      const balance = await stub.debit(1000000);
      const response = await fetch(new URL(url.pathname + url.search, env.ORIGIN_URL), { method: request.method, headers: request.headers, body: request.body });
      const out = new Response(response.body, response);
      out.headers.set("x-floor-balance", String(balance));
      return out;
    } };`;
const mf = new Miniflare(convertV4MiniflareOptions({
  inspectorPort: 9333,
  workers: process.env.FLOOR ? [{ name: "gateway", modules: true, script: floorScript, compatibilityDate: "2026-11-01", durableObjects: { ACCOUNTS: { className: "FloorAccount", useSQLite: true } }, bindings: { ORIGIN_URL: origin.url } }] : [{
    name: "gateway", modules: true, scriptPath: ".wrangler/bench/index.js", compatibilityDate: "2026-11-01", compatibilityFlags: ["nodejs_compat"],
    durableObjects: { CUSTOMERS: { className: "CustomerAccount", useSQLite: true }, DIRECTORY: { className: "Directory", useSQLite: true }, WEBHOOK_DISPATCHER: { className: "WebhookDispatcher", useSQLite: true } },
    bindings: { ADMIN_TOKEN: ADMIN, ORIGIN_URL: origin.url, GROUP_COMMIT: process.env.GC !== "0", LOG_LEVEL: "warn", PRICING: { currency: "usd", default_price_cents: "1", meters: [{ name: "events", path: "/v1/stream", price_cents: "0.01", units: "sse:events", hold_units: 16, stripe_event_name: "stream_events" }] } },
  }],
}));
const base = new URL(String(await mf.ready));
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const call = (method, path, body, auth = `Bearer ${ADMIN}`) => new Promise((resolve, reject) => {
  const req = http.request({ agent, hostname: base.hostname, port: base.port, path, method, headers: { authorization: auth, "content-type": "application/json" } }, (res) => { const c = []; res.on("data", (d) => c.push(d)); res.on("end", () => resolve({ status: res.statusCode, body: c.length ? JSON.parse(Buffer.concat(c)) : null })); });
  req.on("error", reject); req.end(body ? JSON.stringify(body) : undefined);
});
const customers = Number(process.env.CUSTOMERS ?? 100);
const keys = [];
for (let i = 0; i < customers; i++) {
  await call("PUT", `/admin/customers/cus_p${i}`, { name: "P", email: "p@example.com" });
  keys.push((await call("POST", `/admin/customers/cus_p${i}/keys`, {})).body.key);
  await call("POST", `/admin/customers/cus_p${i}/credits`, { amount: 1_000_000, reason: "p" });
}
async function load(total, conc) {
  let issued = 0;
  const t0 = Date.now();
  await Promise.all(Array.from({ length: conc }, async () => { while (issued < total) { const i = issued++; await new Promise((res) => { const req = http.request({ agent, hostname: base.hostname, port: base.port, path: process.env.STREAM ? "/v1/stream?events=50" : "/v1/data", headers: { authorization: `Bearer ${keys[i % keys.length]}` } }, (r) => { r.resume(); r.on("end", res); }); req.end(); }); } }));
  return Math.round(total / ((Date.now() - t0) / 1000));
}
await load(1000, 32);
// Inspector: find the targets.
const targets = await (await fetch("http://127.0.0.1:9333/json")).json();
console.error(targets.map((t) => t.title + " " + t.webSocketDebuggerUrl).join("\n"));
const sessions = [];
for (const t of targets.filter((t) => t.title.includes("gateway"))) {
  const ws = new WebSocket(t.webSocketDebuggerUrl);
  await new Promise((r) => ws.addEventListener("open", r));
  let id = 0; const pending = new Map();
  ws.addEventListener("message", (e) => { const m = JSON.parse(e.data); if (m.id && pending.has(m.id)) { pending.get(m.id)(m.result); pending.delete(m.id); } });
  const send = (method, params = {}) => new Promise((r) => { const i = ++id; pending.set(i, r); ws.send(JSON.stringify({ id: i, method, params })); });
  await send("Profiler.enable"); await send("Profiler.setSamplingInterval", { interval: 100 }); await send("Profiler.start");
  sessions.push({ t, send, ws });
}
const rps = await load(Number(process.env.N ?? 6000), Number(process.env.CONC ?? 32));
console.log("rps", rps);
for (const s of sessions) {
  const { profile } = await s.send("Profiler.stop");
  const self = new Map(); let total = 0;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const dt = new Map(); // sample time per node
  for (let i = 0; i < profile.samples.length; i++) dt.set(profile.samples[i], (dt.get(profile.samples[i]) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
  for (const n of profile.nodes) {
    const t = dt.get(n.id) ?? 0; total += t;
    const f = n.callFrame; const key = `${f.functionName || "(anon)"} ${f.url.split("/").pop()}:${f.lineNumber}`;
    self.set(key, (self.get(key) ?? 0) + t);
  }
  // inclusive: sum over subtree, counting each function key once per path
  const children = new Map(profile.nodes.map((n) => [n.id, n.children ?? []]));
  const incl = new Map();
  const keyOf = (n) => { const f = n.callFrame; return `${f.functionName || "(anon)"} ${f.url.split("/").pop()}:${f.lineNumber}`; };
  const walk = (id, stack) => {
    const n = byId.get(id); const k = keyOf(n);
    let sum = dt.get(id) ?? 0;
    const fresh = !stack.has(k); if (fresh) stack.add(k);
    for (const c of children.get(id)) sum += walk(c, stack);
    if (fresh) { stack.delete(k); incl.set(k, (incl.get(k) ?? 0) + sum); }
    return sum;
  };
  walk(profile.nodes[0].id, new Set());
  if (s.t.title.includes("gateway")) {
    console.log(`--- inclusive ${s.t.title}`);
    for (const [k, v] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.ITOP ?? 45))) console.log((v / 1000).toFixed(0).padStart(7), "ms", (100 * v / total).toFixed(1).padStart(5) + "%", k);
  }
  const idle = [...self].filter(([k]) => k.startsWith("(idle)")).reduce((a, [, v]) => a + v, 0);
  console.log(`--- ${s.t.title}: total ${(total / 1000).toFixed(0)} ms sampled, busy ${((total - idle) / 1000 / Number(process.env.N ?? 6000) * 1000).toFixed(0)} µs per request`);
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.TOP ?? 30))) console.log((v / 1000).toFixed(0).padStart(7), "ms", (100 * v / total).toFixed(1).padStart(5) + "%", k);
  s.ws.close();
}
await mf.dispose(); await origin.close(); process.exit(0);
