// The counted gateway: a bench-only entry around the gateway's bundle (no hook in the gateway's
// source) that counts what Cloudflare bills a Durable Object for, by the same rules:
// - SQLite rows written and read, summed from each cursor's `rowsWritten` and `rowsRead` (index
//   entries included, as they are billed), split by table; every `setAlarm()` is one row written;
// - Durable Object requests: every call on a stub of any namespace (RPC or fetch) and every alarm
//   invocation is one;
// - duration: per object, the time it has at least one call in flight (not the sum of the calls,
//   which would overcount under concurrency), in ms; × 128 MB is what is billed.
// `GET /__bench/counts` on any host of the entry returns the totals (they live in the isolate, which
// a worker shares locally with its objects). `POST /__bench/advance?ms=` moves the isolate's clock
// (`Date.now`) forward and fires the alarms that became due, so a row can be counted over the
// life of its rows (the prune) without waiting for it in real time.
import { buildBenchEntry } from "./workers.mjs";

export function buildCountedGateway(gatewayPath) {
  return buildBenchEntry(
    "gateway-counted.js",
    `
import gateway, { CustomerAccount as A, Directory as D, WebhookDispatcher as W } from ${JSON.stringify(gatewayPath)};
const realNow = Date.now.bind(Date);
let offset = 0;
Date.now = () => realNow() + offset;
const totals = { rpcs: {}, alarms: 0, written: {}, read: {}, duration_ms: 0 };
const add = (map, key, n) => { if (n) map[key] = (map[key] ?? 0) + n; };
const inflight = new Map();
function enter(id) {
  let s = inflight.get(id);
  if (!s) inflight.set(id, (s = { n: 0, since: 0 }));
  if (s.n++ === 0) s.since = realNow();
}
function leave(id) {
  const s = inflight.get(id);
  if (--s.n === 0) totals.duration_ms += realNow() - s.since;
}
/** The table a statement is billed to: the one it writes, else the first it reads. */
function tableOf(query) {
  const q = query.replace(/\\s+/g, " ");
  const m = /^\\s*(?:WITH .*?\\) )?(?:INSERT(?: OR \\w+)? INTO|REPLACE INTO|UPDATE(?: OR \\w+)?|DELETE FROM|CREATE (?:UNIQUE )?(?:TABLE|INDEX)(?: IF NOT EXISTS)? (?:\\w+ ON)?|DROP TABLE(?: IF EXISTS)?|ALTER TABLE) "?(\\w+)/i.exec(q) ?? / FROM "?(\\w+)/i.exec(q);
  return m ? m[1] : "(other)";
}
class Replay {
  constructor(columnNames, raws, rowsRead, rowsWritten) {
    Object.assign(this, { columnNames, raws, rowsRead, rowsWritten, i: 0 });
  }
  object(raw) {
    const o = {};
    this.columnNames.forEach((c, j) => { o[c] = raw[j]; });
    return o;
  }
  next() {
    return this.i < this.raws.length ? { done: false, value: this.object(this.raws[this.i++]) } : { done: true, value: undefined };
  }
  [Symbol.iterator]() { return this; }
  toArray() { return [...this]; }
  one() {
    const left = this.raws.length - this.i;
    if (left !== 1) throw new Error(left === 0 ? "Expected exactly one result from SQL query, but got no results." : "Expected exactly one result from SQL query, but got multiple results.");
    return this.next().value;
  }
  raw() {
    const self = this;
    const it = { next: () => (self.i < self.raws.length ? { done: false, value: self.raws[self.i++] } : { done: true, value: undefined }), [Symbol.iterator]() { return it; }, toArray: () => [...it] };
    return it;
  }
}
let uncounted = 0;
function counted(ctx) {
  const storage = ctx.storage;
  const sql = storage.sql;
  const exec = sql.exec.bind(sql);
  sql.exec = (query, ...bindings) => {
    const cursor = exec(query, ...bindings);
    // rowsWritten and rowsRead are final once the cursor is consumed.
    const raws = [...cursor.raw()];
    const table = tableOf(query);
    if (!uncounted) {
      add(totals.written, table, cursor.rowsWritten);
      add(totals.read, table, cursor.rowsRead);
    }
    return new Replay(cursor.columnNames, raws, cursor.rowsRead, cursor.rowsWritten);
  };
  Object.defineProperty(storage, "sql", { value: sql });
  // Alarms: each setAlarm is a row written. The clock may be ahead of real time (advance), so an
  // alarm for simulated time t is set at t - offset, and the time asked for is kept to set it
  // again when the clock jumps.
  const set = storage.setAlarm.bind(storage);
  const get = storage.getAlarm.bind(storage);
  const remove = storage.deleteAlarm.bind(storage);
  storage.setAlarm = (at, options) => {
    if (!uncounted) add(totals.written, "(setAlarm)", 1);
    storage.simulatedAlarmAt = Number(at);
    due.set(ctx.id.toString(), Number(at));
    return set(Math.max(1, Number(at) - offset), options);
  };
  storage.getAlarm = async (options) => ((await get(options)) === null ? null : storage.simulatedAlarmAt);
  storage.deleteAlarm = (options) => {
    storage.simulatedAlarmAt = null;
    due.delete(ctx.id.toString());
    return remove(options);
  };
  return ctx;
}
/** Objects with an alarm set, by id: the simulated time it is due. */
const due = new Map();
const homes = new Map();
const PASS = new Set(["id", "name", "then"]);
function countedStub(binding, stub) {
  return new Proxy(stub, {
    get(target, prop) {
      if (typeof prop !== "string" || PASS.has(prop)) return target[prop];
      return async (...args) => {
        add(totals.rpcs, binding + "." + prop, 1);
        const id = target.id.toString();
        enter(id);
        try { return await target[prop](...args); } finally { leave(id); }
      };
    },
  });
}
function countedNamespace(binding, ns) {
  return new Proxy(ns, {
    get(target, prop) {
      if (prop === "get" || prop === "getByName") return (...args) => countedStub(binding, target[prop](...args));
      const value = target[prop];
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
const wrapped = new WeakMap();
function wrap(env) {
  let out = wrapped.get(env);
  if (!out) {
    out = { ...env };
    for (const binding of ["CUSTOMERS", "DIRECTORY", "WEBHOOK_DISPATCHER"]) if (env[binding]) out[binding] = countedNamespace(binding, env[binding]);
    wrapped.set(env, out);
  }
  return out;
}
const countedClass = (Base, binding) =>
  class extends Base {
    constructor(ctx, env) {
      super(counted(ctx), wrap(env));
      homes.set(ctx.id.toString(), binding);
    }
    async alarm(info) {
      this.ctx.storage.simulatedAlarmAt = null;
      due.delete(this.ctx.id.toString());
      totals.alarms++;
      const id = this.ctx.id.toString();
      enter(id);
      try { return await super.alarm(info); } finally { leave(id); }
    }
    /** Sets the alarm again at its simulated time, after the clock moved; not counted. */
    async benchKick() {
      const at = this.ctx.storage.simulatedAlarmAt;
      if (at === null || at === undefined) return;
      uncounted++;
      try { await this.ctx.storage.setAlarm(at); } finally { uncounted--; }
    }
  };
export const CustomerAccount = countedClass(A, "CUSTOMERS");
export const Directory = countedClass(D, "DIRECTORY");
export const WebhookDispatcher = countedClass(W, "WEBHOOK_DISPATCHER");
const json = (body) => new Response(JSON.stringify(body), { headers: { "content-type": "application/json" } });
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/__bench/counts") return json({ ...totals, in_flight: [...inflight.values()].reduce((n, s) => n + s.n, 0), alarms_pending: [...due.values()].filter((at) => at <= Date.now()).length });
    if (url.pathname === "/__bench/advance") {
      offset += Number(url.searchParams.get("ms"));
      const kicks = [];
      for (const [id, at] of due) {
        const ns = env[homes.get(id)];
        if (ns && at <= Date.now()) kicks.push(ns.get(ns.idFromString(id)).benchKick());
      }
      await Promise.all(kicks);
      return json({ kicked: kicks.length, now: Date.now() });
    }
    return gateway.fetch(request, wrap(env), ctx);
  },
  scheduled: (controller, env, ctx) => gateway.scheduled(controller, wrap(env), ctx),
};
`,
  );
}
