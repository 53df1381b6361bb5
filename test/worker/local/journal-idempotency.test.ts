import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { CustomerAccount } from "../../../durable-objects/customer-account";
import type { AccountContext } from "../../../durable-objects/customer-account/core/context";
import { IdempotencyStore } from "../../../durable-objects/customer-account/request/idempotency";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { getConfig } from "../../../src/lib/config";
import { customerStub, settle, uniqueId } from "../helpers";

const PRICE = 1_000_000;
const FINGERPRINT = "f".repeat(64);
const RESPONSE = { status: 200, headers: [["content-type", "application/json"]], body: new TextEncoder().encode('{"answer":42}').buffer as ArrayBuffer };

async function customer(cap: { spendCapCents: number; capPeriod: "day" } | null = null) {
  const id = uniqueId("cus_idem");
  const stub = customerStub(id);
  await stub.upsertProfile(id, { name: "Idempotency" });
  const created = (await stub.createKey(null, cap ?? undefined))!;
  await stub.credit({ customerId: id, amountCents: 100, reason: "idempotency test" });
  await settle(id);
  const keyHash = await sha256Hex(created.key);
  // The first charge after a start places the cohorts (written with its effects): done here.
  expect((await stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId: "warm" })).outcome).toBe("ok");
  const charge = (key: string, requestId: string, extra: { fingerprint?: string; now?: number } = {}) =>
    stub.authorize({
      keyHash,
      meter: "api_requests",
      priceMicros: PRICE,
      requestId,
      idempotency: { key, fingerprint: extra.fingerprint ?? FINGERPRINT },
      ...(extra.now !== undefined ? { now: extra.now } : {}),
    });
  const finish = (key: string, requestId: string, outcome: Parameters<typeof stub.finishIdempotent>[0]["outcome"]) => stub.finishIdempotent({ key, keyHash, requestId, outcome });
  return { id, stub, keyId: created.id, charge, finish };
}

/** Every row of every table, as text: what an RPC wrote is the difference between two of these. */
function snapshot(stub: ReturnType<typeof customerStub>) {
  return runInDurableObject(stub, (_instance, state) => {
    const sql = state.storage.sql;
    const tables = sql
      .exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite%'")
      .toArray()
      .map((r) => r.name as string);
    return Object.fromEntries(
      tables.map((t) => [
        t,
        sql
          .exec(`SELECT * FROM "${t}"`)
          .toArray()
          .map((row) => JSON.stringify(row, (_k, v) => (v instanceof ArrayBuffer ? [...new Uint8Array(v)] : v))),
      ]),
    );
  });
}

/** Rows added, changed or removed per table between two snapshots (tables with none left out). */
function written(before: Record<string, string[]>, after: Record<string, string[]>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const table of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const old = new Set(before[table] ?? []);
    const now = new Set(after[table] ?? []);
    const added = [...now].filter((r) => !old.has(r)).length;
    const removed = [...old].filter((r) => !now.has(r)).length;
    if (added || removed) out[table] = Math.max(added, removed);
  }
  return out;
}

/** What SQLite holds of the key and the balance, read without the object's methods (which fold first). */
function stored(stub: ReturnType<typeof customerStub>) {
  return runInDurableObject(stub, (_instance, state) => {
    const sql = state.storage.sql;
    return {
      balance: sql.exec("SELECT balance FROM account").one().balance as number,
      idempotency: sql.exec("SELECT key, request_id, status, size FROM idempotency ORDER BY key").toArray(),
      charges: sql.exec("SELECT request_id, idem_key, idem_fingerprint FROM charges WHERE idem_key IS NOT NULL ORDER BY request_id").toArray(),
    };
  });
}

const balanceOf = async (stub: ReturnType<typeof customerStub>) => (await stub.balanceCheck())!;

describe("an idempotent charge in two rows (happy)", () => {
  it("writes its charge row at authorize and one idempotency row at finish, then replays with nothing written", async () => {
    const { stub, keyId, charge, finish } = await customer();
    // A first idempotent request arms the idempotency timer; the one measured below finds it armed.
    expect((await charge("first", "req_first")).outcome).toBe("ok");
    await finish("first", "req_first", RESPONSE);

    const before = await snapshot(stub);
    expect((await charge("k1", "req_1")).outcome).toBe("ok");
    const afterAuthorize = await snapshot(stub);
    expect(written(before, afterAuthorize)).toEqual({ charges: 1 });
    expect((await stored(stub)).charges).toContainEqual({ request_id: "req_1", idem_key: `${keyId} k1`, idem_fingerprint: FINGERPRINT });
    // While in flight, the same key is refused and a second body is a mismatch.
    expect((await charge("k1", "req_1b")).outcome).toBe("idempotency_in_progress");
    expect((await charge("k1", "req_1c", { fingerprint: "0".repeat(64) })).outcome).toBe("idempotency_mismatch");

    await finish("k1", "req_1", RESPONSE);
    const afterFinish = await snapshot(stub);
    expect(written(afterAuthorize, afterFinish)).toEqual({ idempotency: 1 });
    expect((await stored(stub)).idempotency).toContainEqual({ key: `${keyId} k1`, request_id: "req_1", status: "complete", size: RESPONSE.body.byteLength });

    const replay = await charge("k1", "req_1d");
    expect(replay.outcome).toBe("replay");
    expect(new Uint8Array((replay as { response: { body: ArrayBuffer } }).response.body)).toEqual(new Uint8Array(RESPONSE.body));
    expect(written(afterFinish, await snapshot(stub))).toEqual({});
    expect((await charge("k1", "req_1e", { fingerprint: "0".repeat(64) })).outcome).toBe("idempotency_mismatch");
    // warm, first, k1: three charges, however many retries.
    expect((await balanceOf(stub)).balanceMicros).toBe(97 * PRICE);
  });
});

describe("an idempotent charge in two rows (restarts)", () => {
  it("evicted between authorize and finish: the retry is in progress, then replays once finished; charged once", async () => {
    const { stub, charge, finish } = await customer();
    expect((await charge("k1", "req_1")).outcome).toBe("ok");
    await evictDurableObject(stub);
    expect((await charge("k1", "req_1b")).outcome).toBe("idempotency_in_progress");
    await finish("k1", "req_1", RESPONSE);
    expect((await charge("k1", "req_1c")).outcome).toBe("replay");
    await evictDurableObject(stub);
    expect((await charge("k1", "req_1d")).outcome).toBe("replay");
    expect(await balanceOf(stub)).toMatchObject({ balanceMicros: 98 * PRICE, ledgerSumMicros: 98 * PRICE, grantsRemainingMicros: 98 * PRICE });
  });

  it("evicted after authorize, a first request that never finished is not replayable once its window has passed", async () => {
    const { stub, charge } = await customer();
    const now = Date.now();
    expect((await charge("k1", "req_1", { now })).outcome).toBe("ok");
    await evictDurableObject(stub);
    // Past the origin timeout and its margin: it cannot still be running.
    expect((await charge("k1", "req_1b", { now: now + 10 * 60_000 })).outcome).toBe("idempotency_not_replayable");
    expect(await balanceOf(stub)).toMatchObject({ balanceMicros: 98 * PRICE, ledgerSumMicros: 98 * PRICE });
  });

  it("evicted between finish and a fold: the retry replays, or is not replayable, and the charge is applied once", async () => {
    const { stub, charge, finish } = await customer();
    expect((await charge("k1", "req_1")).outcome).toBe("ok");
    expect((await charge("k2", "req_2")).outcome).toBe("ok");
    await finish("k1", "req_1", RESPONSE);
    await finish("k2", "req_2", "not_replayable");
    // Nothing folded: SQLite's balance still stands where the warm-up left it.
    expect((await stored(stub)).balance).toBe(99 * PRICE);
    await evictDurableObject(stub);
    expect((await charge("k1", "req_1b")).outcome).toBe("replay");
    expect((await charge("k2", "req_2b")).outcome).toBe("idempotency_not_replayable");
    expect(await balanceOf(stub)).toMatchObject({ balanceMicros: 97 * PRICE, ledgerSumMicros: 97 * PRICE, grantsRemainingMicros: 97 * PRICE });
    await evictDurableObject(stub);
    expect(await balanceOf(stub)).toMatchObject({ balanceMicros: 97 * PRICE, ledgerSumMicros: 97 * PRICE });
  });

  it("the charge that fills a key's cap (written with its effects) holds its key in its charge row too, through a restart", async () => {
    const { stub, charge, finish } = await customer({ spendCapCents: 2, capPeriod: "day" });
    const before = await snapshot(stub);
    // The warm-up spent 1 of the 2 cents: this charge fills the cap, so it is not journaled.
    expect((await charge("k1", "req_1")).outcome).toBe("ok");
    const changed = written(before, await snapshot(stub));
    expect(changed).toMatchObject({ charges: 1, grants: 1 });
    expect(changed.idempotency).toBeUndefined();
    await evictDurableObject(stub);
    expect((await charge("k1", "req_1b")).outcome).toBe("idempotency_in_progress");
    await finish("k1", "req_1", RESPONSE);
    await evictDurableObject(stub);
    expect((await charge("k1", "req_1c")).outcome).toBe("replay");
    expect(await balanceOf(stub)).toMatchObject({ balanceMicros: 98 * PRICE, ledgerSumMicros: 98 * PRICE });
  });

  it("a charge given back forgets its key, through a restart: the retry is a new request, charged once", async () => {
    const { stub, charge, finish } = await customer();
    expect((await charge("k1", "req_1")).outcome).toBe("ok");
    expect(await stub.refund({ requestId: "req_1" })).toMatchObject({ refunded: true });
    await finish("k1", "req_1", "forget");
    await evictDurableObject(stub);
    expect((await stored(stub)).charges).toEqual([]);
    expect((await charge("k1", "req_2")).outcome).toBe("ok");
    // A forget with no refund before it (as the worker sends for a charge it gave back another way) is durable too.
    await finish("k1", "req_2", "forget");
    await evictDurableObject(stub);
    expect((await charge("k1", "req_3")).outcome).toBe("ok");
    // warm, req_2 and req_3 charged; req_1 given back.
    expect(await balanceOf(stub)).toMatchObject({ balanceMicros: 97 * PRICE, ledgerSumMicros: 97 * PRICE });
  });

  it("the charges prune of a key that never finished leaves it refused, never charged twice, through a restart", async () => {
    const { stub, keyId, charge } = await customer();
    expect((await charge("k1", "req_1")).outcome).toBe("ok");
    // As if the refund window had passed with no finish: the row is old and the charges timer is due.
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec("UPDATE charges SET created_at = created_at - 3600000");
      state.storage.sql.exec("UPDATE timers SET due_at = ? WHERE name = 'charges'", Date.now() - 1);
    });
    await evictDurableObject(stub);
    await runDurableObjectAlarm(stub);
    const after = await stored(stub);
    expect(after.charges).toEqual([]);
    expect(after.idempotency).toEqual([{ key: `${keyId} k1`, request_id: "req_1", status: "not_replayable", size: 0 }]);
    expect((await charge("k1", "req_1b")).outcome).toBe("idempotency_not_replayable");
    await evictDurableObject(stub);
    expect((await charge("k1", "req_1c")).outcome).toBe("idempotency_not_replayable");
    expect(await balanceOf(stub)).toMatchObject({ balanceMicros: 98 * PRICE, ledgerSumMicros: 98 * PRICE });
  });
});

describe("stored responses within their bounds (no index to find the oldest)", () => {
  it("past max_entries the oldest bodies go, down to 90%; the counts survive a reload and the expiry prune", async () => {
    const { stub } = await customer();
    const result = await runInDurableObject(stub, (instance: CustomerAccount, state) => {
      const hot = (instance as unknown as { hot: AccountContext }).hot;
      const config = getConfig(hot.env);
      const limited = () => ({ ...config, IDEMPOTENCY: { ...config.IDEMPOTENCY, max_entries: 10 } });
      const sql = state.storage.sql;
      let store = new IdempotencyStore(sql, limited, hot.timers, hot.charges);
      store.load();
      const t = 1_000_000;
      const answer = (i: number) => {
        store.charged(`key_b k${i}`, FINGERPRINT, `req_${i}`, t + i);
        store.finish(`key_b k${i}`, `req_${i}`, RESPONSE);
      };
      const complete = () =>
        sql
          .exec("SELECT key FROM idempotency WHERE status = 'complete' ORDER BY created_at")
          .toArray()
          .map((r) => r.key);
      for (let i = 0; i < 11; i++) answer(i);
      const evicted = complete();
      // Counted from SQLite again, as after a restart: one more fits, the next evicts again.
      store = new IdempotencyStore(sql, limited, hot.timers, hot.charges);
      store.load();
      answer(11);
      const afterReload = complete();
      answer(12);
      const again = complete();
      // Keys expired by the prune leave the count (k4 and k5 were stored): three more fit, none evicted.
      const next = store.prune(t + 86_400_000 + 5);
      for (let i = 13; i < 16; i++) answer(i);
      return { evicted, afterReload, again, next, afterPrune: complete() };
    });
    const keys = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `key_b k${from + i}`);
    expect(result.evicted).toEqual(keys(2, 11));
    expect(result.afterReload).toEqual(keys(2, 12));
    expect(result.again).toEqual(keys(4, 13));
    // Keys k0-k5 expired (created at t + 0..5); the next look is an hour away, not at k6's expiry.
    expect(result.next).toBe(1_000_000 + 86_400_000 + 5 + 3_600_000);
    expect(result.afterPrune).toEqual(keys(6, 16));
  });
});

describe("idempotent charges that share a group-commit batch row", () => {
  it("keys in flight inside a batch row survive a restart; one finished replays, one forgotten is a new request, the rest stay refused", async () => {
    const { stub, charge, finish } = await customer();
    const keys = Array.from({ length: 8 }, (_, i) => `batched_${i}`);
    // Concurrent: group commit holds them and writes them as batch rows (the first of each in the columns).
    const first = await Promise.all(keys.map((key, i) => charge(key, `b_${i}`)));
    expect(first.map((r) => r.outcome)).toEqual(keys.map(() => "ok"));
    const batched = await runInDurableObject(stub, (_instance, state) => state.storage.sql.exec("SELECT COUNT(*) AS n FROM charges WHERE batch IS NOT NULL").one().n as number);
    expect(batched).toBeGreaterThan(0);

    await evictDurableObject(stub);
    // Every key is in flight again after the restart, wherever its charge row is.
    for (const [i, key] of keys.entries()) expect((await charge(key, `retry_${i}`)).outcome).toBe("idempotency_in_progress");
    await finish(keys[0]!, "b_0", RESPONSE);
    await finish(keys[7]!, "b_7", RESPONSE);
    await finish(keys[6]!, "b_6", "forget");
    await evictDurableObject(stub);
    expect((await charge(keys[0]!, "again_0")).outcome).toBe("replay");
    expect((await charge(keys[7]!, "again_7")).outcome).toBe("replay");
    // Forgotten (its charge charged nothing in the end): a new request, charged once more.
    expect((await charge(keys[6]!, "again_6")).outcome).toBe("ok");
    for (const i of [1, 2, 3, 4, 5]) expect((await charge(keys[i]!, `again_${i}`)).outcome).toBe("idempotency_in_progress");
    // 1 warm-up charge, 8 batched, 1 again: 10 cents of 100.
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 90 * PRICE, ledgerSumMicros: 90 * PRICE });
  });
});
