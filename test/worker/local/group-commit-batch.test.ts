import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { CustomerAccount } from "../../../durable-objects/customer-account";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { customerStub, settle, uniqueId } from "../helpers";

const CENT = 1_000_000;

/** A customer with `cents`, its first charge made (it places the cohorts, so the next ones are journaled). */
async function customer(cents: number) {
  const id = uniqueId("cus_batch");
  const stub = customerStub(id);
  await stub.upsertProfile(id, { name: "Batch" });
  const keyHash = await sha256Hex((await stub.createKey(null))!.key);
  await stub.credit({ customerId: id, amountCents: cents, reason: "start" });
  await settle(id);
  expect((await stub.authorize({ keyHash, meter: "api_requests", priceMicros: CENT, requestId: "warm" })).outcome).toBe("ok");
  const charge = (requestId: string, extra: { retry?: boolean } = {}) => stub.authorize({ keyHash, meter: "api_requests", priceMicros: CENT, requestId, ...extra });
  return { id, stub, keyHash, charge };
}

/** The charges table as SQLite holds it: rows, charges in them (batch members too), and batch rows. */
function table(stub: ReturnType<typeof customerStub>) {
  return runInDurableObject(stub, (_instance, state) => {
    const sql = state.storage.sql;
    return sql
      .exec<{ rows: number; charges: number; batches: number }>(
        "SELECT COUNT(*) AS rows, COUNT(*) + COALESCE(SUM(json_array_length(batch)), 0) AS charges, COUNT(batch) AS batches FROM charges",
      )
      .one();
  });
}

/** Batch members' request ids (not the first of their row, which is the row's key). */
function members(stub: ReturnType<typeof customerStub>) {
  return runInDurableObject(stub, (_instance, state) =>
    state.storage.sql
      .exec<{ id: string }>("SELECT json_extract(m.value, '$.request_id') AS id FROM charges c, json_each(c.batch) m")
      .toArray()
      .map((r) => r.id),
  );
}

const ids = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

describe("one row per group-commit batch", () => {
  it("40 concurrent requests on one customer write fewer than 40 charge rows; the balance and every charge are exact, through an eviction before a fold", async () => {
    const { stub, charge } = await customer(100);
    const results = await Promise.all(ids(40, "c").map((requestId) => charge(requestId)));
    expect(results.every((r) => r.outcome === "ok")).toBe(true);
    const t = await table(stub);
    // The warm-up charge is written with its effects (no seq); the 40 are in batch rows.
    expect(t.charges).toBe(41);
    expect(t.batches).toBeGreaterThan(0);
    expect(t.rows).toBeLessThan(20);
    // Evicted before any fold: the new instance replays every batched charge exactly once.
    await evictDurableObject(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 59 * CENT, ledgerSumMicros: 59 * CENT, grantsRemainingMicros: 59 * CENT });
    const usage = await runInDurableObject(stub, (_instance, state) => state.storage.sql.exec("SELECT SUM(count) AS n FROM ledger WHERE kind = 'usage'").one().n);
    expect(usage).toBe(41);
    for (const requestId of ids(40, "c")) expect(await stub.requestCharge(requestId)).toMatchObject({ status: "charged", charged_exact_cents: "1" });
  });

  it("a charge inside a batch row is refunded once (the second is already_refunded), the first of the row too, through an eviction", async () => {
    const { stub, charge } = await customer(100);
    await Promise.all(ids(20, "r").map((requestId) => charge(requestId)));
    const [member] = await members(stub);
    expect(member).toBeDefined();
    const key = await runInDurableObject(
      stub,
      (_instance, state) => state.storage.sql.exec("SELECT request_id FROM charges WHERE batch IS NOT NULL LIMIT 1").one().request_id as string,
    );
    for (const requestId of [member!, key]) {
      expect(await stub.refund({ requestId })).toMatchObject({ refunded: true, restoredMicros: CENT });
      expect(await stub.refund({ requestId })).toMatchObject({ refunded: false, reason: "already_refunded" });
      expect(await stub.requestCharge(requestId)).toMatchObject({ status: "refunded", charged_exact_cents: "0" });
    }
    await evictDurableObject(stub);
    expect(await stub.refund({ requestId: member! })).toMatchObject({ refunded: false, reason: "already_refunded" });
    // 21 charged, 2 given back; every other member still charged.
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 81 * CENT, ledgerSumMicros: 81 * CENT });
    expect((await table(stub)).charges).toBe(21);
    for (const requestId of ids(20, "r").filter((r) => r !== member && r !== key)) expect(await stub.requestCharge(requestId)).toMatchObject({ status: "charged" });
  });

  it("a retry of a batched request id replays its first result, with the retry flag or without, and in the same batch", async () => {
    const { stub, charge } = await customer(100);
    await Promise.all(ids(20, "t").map((requestId) => charge(requestId)));
    const [member] = await members(stub);
    for (const extra of [{ retry: true }, {}]) {
      expect(await charge(member!, extra)).toMatchObject({ outcome: "ok", replayed: true, chargedMicros: CENT, balanceMicros: 79 * CENT });
    }
    // The same id twice among concurrent requests: one charge, the other its replay.
    const again = await Promise.all([...ids(10, "u"), "u3", "u7"].map((requestId) => charge(requestId)));
    expect(again.filter((r) => r.outcome === "ok" && r.replayed)).toHaveLength(2);
    await evictDurableObject(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 69 * CENT, ledgerSumMicros: 69 * CENT });
    expect((await table(stub)).charges).toBe(31);
  });

  it("a batch row that cannot be written rejects the callers it held and charges none of them; the batch before it stands", async () => {
    const { stub, keyHash } = await customer(100);
    const outcome = await runInDurableObject(stub, async (instance: CustomerAccount, state) => {
      const sql = state.storage.sql;
      // A storage failure for a batch row only (as a full database would cause): a plain row still goes in.
      sql.exec("CREATE TABLE batch_fault (x INTEGER NOT NULL)");
      sql.exec("CREATE TRIGGER batch_fault BEFORE INSERT ON charges WHEN NEW.batch IS NOT NULL BEGIN INSERT INTO batch_fault (x) VALUES (NULL); END");
      const settled = await Promise.allSettled(ids(10, "f").map((requestId) => instance.authorize({ keyHash, meter: "api_requests", priceMicros: CENT, requestId })));
      sql.exec("DROP TRIGGER batch_fault");
      return settled.map((s) => (s.status === "fulfilled" ? s.value.outcome : String(s.reason)));
    });
    // The first ran alone (a plain row); the nine queued behind its commit shared the failed row.
    expect(outcome[0]).toBe("ok");
    expect(outcome.slice(1)).toEqual(Array(9).fill(expect.stringMatching(/SQLITE_CONSTRAINT/)));
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 98 * CENT, ledgerSumMicros: 98 * CENT });
    for (const requestId of ids(9, "f").map((_, i) => `f${i + 1}`)) expect(await stub.requestCharge(requestId)).toBeNull();
    await evictDurableObject(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 98 * CENT, ledgerSumMicros: 98 * CENT });
    expect((await table(stub)).charges).toBe(2);
  });

  it("a step written with its effects writes the held charges' row first: when a later batch row fails, only the callers it held are rejected", async () => {
    const { stub, keyHash } = await customer(100);
    // A key capped at one cent: its charge fills the cap, so it is not journaled (written with its key.cap_reached event).
    const capped = await sha256Hex((await stub.createKey("one cent", { spendCapCents: 1, capPeriod: "month" }))!.key);
    const outcome = await runInDurableObject(stub, async (instance: CustomerAccount, state) => {
      const sql = state.storage.sql;
      sql.exec("CREATE TABLE batch_fault (x INTEGER NOT NULL)");
      sql.exec(`CREATE TRIGGER batch_fault BEFORE INSERT ON charges WHEN NEW.batch LIKE '%"m9"%' BEGIN INSERT INTO batch_fault (x) VALUES (NULL); END`);
      // m5 fills its key's cap: not journaled, it runs in its own transaction, after m1..m4's row.
      const settled = await Promise.allSettled(
        ids(10, "m").map((requestId) => instance.authorize({ keyHash: requestId === "m5" ? capped : keyHash, meter: "api_requests", priceMicros: CENT, requestId })),
      );
      sql.exec("DROP TRIGGER batch_fault");
      return settled.map((s) => (s.status === "fulfilled" ? s.value.outcome : "rejected"));
    });
    expect(outcome).toEqual([...Array(6).fill("ok"), ...Array(4).fill("rejected")]);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 93 * CENT, ledgerSumMicros: 93 * CENT });
    await evictDurableObject(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 93 * CENT, ledgerSumMicros: 93 * CENT, grantsRemainingMicros: 93 * CENT });
    for (const requestId of ["m6", "m7", "m8", "m9"]) expect(await stub.requestCharge(requestId)).toBeNull();
    for (const requestId of ["m1", "m4", "m5"]) expect(await stub.requestCharge(requestId)).toMatchObject({ status: "charged" });
  });

  it("the charges timer deletes a batch row once its last charge is past the refund window, and its members are then unknown", async () => {
    const { stub, charge } = await customer(100);
    await Promise.all(ids(20, "p").map((requestId) => charge(requestId)));
    const [member] = await members(stub);
    await stub.balanceCheck();
    await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      // As if the refund window had passed for the rows' first charges, but not for the members.
      sql.exec("UPDATE charges SET created_at = created_at - 3600000");
      sql.exec("UPDATE timers SET due_at = ? WHERE name = 'charges'", Date.now() - 1);
    });
    await runDurableObjectAlarm(stub);
    expect((await table(stub)).batches).toBeGreaterThan(0);
    expect(await stub.requestCharge(member!)).toMatchObject({ status: "charged" });
    await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      sql.exec("UPDATE charges SET batch = (SELECT json_group_array(json_set(m.value, '$.created_at', 0)) FROM json_each(charges.batch) m) WHERE batch IS NOT NULL");
      sql.exec("UPDATE timers SET due_at = ? WHERE name = 'charges'", Date.now() - 1);
    });
    await runDurableObjectAlarm(stub);
    expect((await table(stub)).batches).toBe(0);
    expect(await stub.requestCharge(member!)).toBeNull();
    expect(await stub.refund({ requestId: member! })).toMatchObject({ refunded: false, reason: "unknown_request" });
  });
});
