import http from "node:http";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { startDemoOrigin } from "./scripts/demo-origin.mjs";

const origin = await startDemoOrigin({ port: 0 });
const script = `import { DurableObject } from "cloudflare:workers";
export class Acc extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS balance (id INTEGER PRIMARY KEY, micros INTEGER NOT NULL, count INTEGER NOT NULL)");
    ctx.storage.sql.exec("INSERT OR IGNORE INTO balance (id, micros, count) VALUES (1, 0, 0)");
    for (const t of ["a","b","c","d","e"]) ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS " + t + " (id INTEGER PRIMARY KEY, v INTEGER NOT NULL, w TEXT)");
    ctx.storage.sql.exec("INSERT OR IGNORE INTO b (id, v) VALUES (1, 0)");
    this.queue = []; this.committing = false; this.batches = 0; this.n = 0;
  }
  one(p) { return this.ctx.storage.sql.exec("UPDATE balance SET micros = micros - ?, count = count + 1 WHERE id = 1 RETURNING micros", p).one().micros; }
  six(p, id) {
    const s = this.ctx.storage.sql;
    this.ctx.storage.transactionSync(() => {
      s.exec("UPDATE balance SET micros = micros - ?, count = count + 1 WHERE id = 1", p);
      s.exec("INSERT INTO a (id, v) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET v = v + excluded.v", p);
      s.exec("INSERT INTO b (id, v) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET v = v + excluded.v", p);
      s.exec("INSERT INTO c (id, v) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET v = v + excluded.v", p);
      s.exec("INSERT INTO d (v, w) VALUES (?, ?)", p, id);
    });
    return 1;
  }
  multi(p, id, n, sp) {
    const s = this.ctx.storage.sql;
    const body = () => {
      s.exec("UPDATE balance SET micros = micros - ?, count = count + 1 WHERE id = 1", p);
      if (n >= 2) s.exec("INSERT INTO d (v, w) VALUES (?, ?)", p, id);
      if (n >= 3) s.exec("INSERT INTO a (id, v) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET v = v + excluded.v", p);
      if (n >= 4) s.exec("UPDATE b SET v = v + ? WHERE id = 1", p);
    };
    if (sp) this.ctx.storage.transactionSync(body); else body();
    return 1;
  }
  debit(p, mode, id) {
    const m = /^(?:gc-)?m(\d)(sp)?/.exec(mode);
    if (m) return this.multi(p, id, Number(m[1]), !!m[2]);
    return mode.includes("six") ? this.six(p, id) : this.one(p);
  }
  grouped(p, mode, id) {
    return new Promise((resolve, reject) => {
      this.queue.push({ p, id, resolve, reject });
      if (!this.committing) this.run(mode);
    });
  }
  async run(mode) {
    this.committing = true;
    try {
      while (this.queue.length) {
        const batch = this.queue.splice(0);
        this.batches++; this.n += batch.length;
        const results = batch.map((e) => this.debit(e.p, mode, e.id));
        if (mode.endsWith("sync")) await this.ctx.storage.sync();
        else await new Promise((r) => setTimeout(r, 0));
        batch.forEach((e, i) => e.resolve(results[i]));
      }
    } finally { this.committing = false; }
  }
  stats() { return [this.batches, this.n]; }
}
export default { async fetch(request, env) {
  const url = new URL(request.url);
  const mode = url.searchParams.get("mode");
  const stub = env.ACC.get(env.ACC.idFromName(mode + (url.searchParams.get("o") ?? "hot")));
  if (url.pathname === "/stats") return Response.json(await stub.stats());
  const id = crypto.randomUUID();
  const r = mode.startsWith("gc") ? await stub.grouped(1, mode, id) : await stub.debit(1, mode, id);
  const resp = await fetch(new URL("/v1/data", env.ORIGIN_URL));
  const out = new Response(resp.body, resp); out.headers.set("x-b", String(r)); return out;
} };`;
const mf = new Miniflare(convertV4MiniflareOptions({ workers: [{ name: "x", modules: true, script, compatibilityDate: "2026-11-01", durableObjects: { ACC: { className: "Acc", useSQLite: true } }, bindings: { ORIGIN_URL: origin.url } }] }));
const base = String(await mf.ready);
async function load(mode, concurrency, total) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const u = new URL(base); let issued = 0; const t0 = process.hrtime.bigint(); let ok = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (issued < total) { issued++; await new Promise((res) => { const req = http.request({ agent, hostname: u.hostname, port: u.port, path: "/x?mode=" + mode + "&o=" + (issued % Number(process.env.OBJECTS ?? 1)) }, (r) => { r.resume(); r.on("end", () => { if (r.statusCode === 200) ok++; res(); }); }); req.on("error", res); req.end(); }); }
  }));
  agent.destroy();
  return { mode, rps: Math.round(total / (Number(process.hrtime.bigint() - t0) / 1e9)), ok };
}
const modes = process.argv.slice(2);
for (const m of modes) await load(m, 16, 300);
const res = {};
for (let rep = 0; rep < 3; rep++) for (const m of modes) { const r = await load(m, 32, 4000); (res[m] ??= []).push(r.rps); }
for (const m of modes) console.log(m.padEnd(12), res[m].sort((a, b) => a - b)[1], res[m].join(","));
for (const m of modes) if (m.startsWith("gc")) console.log(m, await (await fetch(base + "stats?mode=" + m)).text());
await mf.dispose(); await origin.close();
