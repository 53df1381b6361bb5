import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { customerStub, settle, uniqueId } from "../helpers";

const UNIT = 100_000; // json_tokens: 0.1 cent a unit
const CENT = 1_000_000;

/** A customer with `cents` of credit and a key capped at `capCents` a day, its cohorts placed by a first charge. */
async function customer(cents: number, capCents: number | null = null) {
  const id = uniqueId("cus_jhold");
  const stub = customerStub(id);
  await stub.upsertProfile(id, { name: "Journaled holds" });
  const created = (await stub.createKey(null, { spendCapCents: capCents, capPeriod: capCents === null ? null : "day" }))!;
  await stub.credit({ customerId: id, amountCents: cents, reason: "journaled holds test" });
  await settle(id);
  const keyHash = await sha256Hex(created.key);
  // The first charge after a start places the cohorts (and learns their slack): written with its effects.
  expect((await stub.authorize({ keyHash, meter: "api_requests", priceMicros: CENT, requestId: "first" })).outcome).toBe("ok");
  const hold = (requestId: string, units: number) => stub.authorize({ keyHash, meter: "json_tokens", priceMicros: UNIT, requestId, hold: { units, onMissing: "hold" } });
  const charge = (requestId: string) => stub.authorize({ keyHash, meter: "api_requests", priceMicros: CENT, requestId });
  return { id, stub, hold, charge };
}

/** What SQLite itself holds, read without going through the object's methods (which fold first). */
function stored(stub: ReturnType<typeof customerStub>) {
  return runInDurableObject(stub, (_instance, state) => {
    const sql = state.storage.sql;
    const one = (query: string) => sql.exec(query).one();
    return {
      balance: one("SELECT balance FROM account").balance as number,
      foldedSeq: one("SELECT folded_seq FROM account").folded_seq as number,
      remaining: one("SELECT SUM(remaining) AS r FROM grants").r as number,
      usage: one("SELECT COALESCE(SUM(amount), 0) AS a, COALESCE(SUM(count), 0) AS c FROM ledger WHERE kind IN ('usage', 'refund')") as { a: number; c: number },
      keySpend: one("SELECT COALESCE(SUM(period_spend), 0) AS s FROM api_keys").s as number,
      holds: sql.exec("SELECT request_id, status, taken_seq, extended_seq, settled_seq FROM holds ORDER BY request_id").toArray(),
    };
  });
}

async function restart(stub: ReturnType<typeof customerStub>) {
  try {
    await evictDurableObject(stub);
  } catch (error) {
    if (!/not currently running/.test(String(error))) throw error;
  }
}

describe("journaled holds (happy)", () => {
  it("a hold taken within the cohort slack and its settlement write only the hold's row; a read folds what they moved in", async () => {
    const { stub, hold } = await customer(100);
    const before = await stored(stub);
    expect(await hold("h1", 50)).toMatchObject({ outcome: "ok", chargedMicros: 50 * UNIT, heldUnits: 50, balanceMicros: 99 * CENT - 50 * UNIT });
    const taken = await stored(stub);
    expect(taken).toEqual({ ...before, holds: [{ request_id: "h1", status: "open", taken_seq: 1, extended_seq: null, settled_seq: null }] });
    expect(await stub.settleHold({ requestId: "h1", units: 20, reason: "completed" })).toMatchObject({
      settled: true,
      chargedMicros: 20 * UNIT,
      balanceMicros: 99 * CENT - 20 * UNIT,
    });
    expect(await stored(stub)).toEqual({ ...before, holds: [{ request_id: "h1", status: "settled", taken_seq: 1, extended_seq: null, settled_seq: 2 }] });
    // Any other call folds them in: the one request counted once, 20 units charged, 30 given back.
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 99 * CENT - 20 * UNIT, ledgerSumMicros: 99 * CENT - 20 * UNIT });
    expect(await stored(stub)).toMatchObject({ balance: 99 * CENT - 20 * UNIT, foldedSeq: 2, remaining: 99 * CENT - 20 * UNIT, usage: { a: -CENT - 20 * UNIT, c: 2 } });
  });
});

describe("journaled holds (errors)", () => {
  it("evicted after the take, after the settlement, or between them once folded: balance, grants, usage and the key's spend exact, nothing applied twice", async () => {
    const { stub, hold } = await customer(100, 50);
    // Evicted after the take: the replay takes it again, once.
    expect((await hold("a", 40)).outcome).toBe("ok");
    await restart(stub);
    expect(await stub.settleHold({ requestId: "a", units: 10, reason: "completed" })).toMatchObject({ settled: true, chargedMicros: 10 * UNIT });
    // Taken and settled, both unfolded, then evicted.
    expect((await hold("b", 40)).outcome).toBe("ok");
    expect((await hold("c", 30)).outcome).toBe("ok");
    expect((await stub.settleHold({ requestId: "b", units: 25, reason: "completed" })).settled).toBe(true);
    await restart(stub);
    // The take folded, then the settlement journaled alone, then evicted. The first hold after the
    // restart places the cohorts (written with its effects, and so is its settlement).
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 99 * CENT - 65 * UNIT });
    expect((await hold("d", 20)).outcome).toBe("ok");
    expect((await stub.settleHold({ requestId: "c", units: 5, reason: "completed" })).settled).toBe(true);
    expect((await stub.settleHold({ requestId: "d", units: 15, reason: "completed" })).settled).toBe(true);
    expect((await hold("e", 20)).outcome).toBe("ok");
    await stub.balanceCheck();
    expect((await stub.settleHold({ requestId: "e", units: null, reason: "units_missing" })).settled).toBe(true);
    const unfolded = await stored(stub);
    const e = unfolded.holds.find((h) => h.request_id === "e")!;
    expect((e.taken_seq as number) <= unfolded.foldedSeq && (e.settled_seq as number) > unfolded.foldedSeq).toBe(true);
    await restart(stub);
    // 1 cent of plain charge, then a 10 + b 25 + c 5 + d 15 + e 20 (held, no units read) = 75 units.
    const spent = CENT + 75 * UNIT;
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 100 * CENT - spent, ledgerSumMicros: 100 * CENT - spent, grantsRemainingMicros: 100 * CENT - spent });
    await restart(stub);
    expect(await stored(stub)).toMatchObject({ balance: 100 * CENT - spent, remaining: 100 * CENT - spent, usage: { a: -spent, c: 6 }, keySpend: spent });
    for (const [requestId, units] of [
      ["a", 10],
      ["b", 25],
      ["c", 5],
      ["d", 15],
      ["e", 20],
    ] as const) {
      expect(await stub.requestCharge(requestId)).toMatchObject({ status: "settled", charged_exact_cents: String((units * UNIT) / CENT) });
    }
  });

  it("a stream's extensions write only the hold's row; evicted after them (its take unfolded or folded): exact, nothing applied twice", async () => {
    const { stub, hold, charge } = await customer(100);
    const before = await stored(stub);
    expect((await hold("s", 16)).outcome).toBe("ok");
    for (let i = 0; i < 2; i++) expect(await stub.extendHold({ requestId: "s", units: 16 })).toMatchObject({ grantedUnits: 16 });
    expect(await stored(stub)).toEqual({ ...before, holds: [{ request_id: "s", status: "open", taken_seq: 1, extended_seq: 3, settled_seq: null }] });
    // Take and both extensions replayed: 48 units held, the request counted once.
    await restart(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 99 * CENT - 48 * UNIT, ledgerSumMicros: 99 * CENT - 48 * UNIT });
    expect(await stored(stub)).toMatchObject({ usage: { a: -CENT - 48 * UNIT, c: 2 } });
    // A second stream, after a charge that places the cohorts again: its take folded, its extensions not.
    expect((await charge("second")).outcome).toBe("ok");
    expect((await hold("t", 16)).outcome).toBe("ok");
    await stub.balanceCheck();
    for (let i = 0; i < 3; i++) expect((await stub.extendHold({ requestId: "t", units: 16 })).grantedUnits).toBe(16);
    const mid = await stored(stub);
    const t = mid.holds.find((h) => h.request_id === "t")!;
    expect((t.taken_seq as number) <= mid.foldedSeq && (t.extended_seq as number) > mid.foldedSeq).toBe(true);
    expect((await stub.settleHold({ requestId: "t", units: 50, reason: "completed" })).chargedMicros).toBe(50 * UNIT);
    await restart(stub);
    const spent = 2 * CENT + 48 * UNIT + 50 * UNIT;
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 100 * CENT - spent, ledgerSumMicros: 100 * CENT - spent, grantsRemainingMicros: 100 * CENT - spent });
    await restart(stub);
    expect(await stored(stub)).toMatchObject({ balance: 100 * CENT - spent, remaining: 100 * CENT - spent, usage: { a: -spent, c: 4 } });
    expect(await stub.settleHold({ requestId: "s", units: 40, reason: "completed" })).toMatchObject({ chargedMicros: 40 * UNIT, balanceMicros: 100 * CENT - spent + 8 * UNIT });
  });

  it("the alarm still releases an abandoned journaled hold after a restart, charged as held, once", async () => {
    const { id, stub, hold } = await customer(100);
    expect((await hold("lost", 30)).outcome).toBe("ok");
    await restart(stub);
    // As if the origin timeout had passed with no word from the worker.
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec("UPDATE holds SET expires_at = ? WHERE request_id = 'lost'", Date.now() - 1);
      state.storage.sql.exec("UPDATE timers SET due_at = ? WHERE name = 'holds'", Date.now() - 1);
    });
    await restart(stub);
    await runDurableObjectAlarm(stub);
    await settle(id);
    expect(await stub.requestCharge("lost")).toMatchObject({ status: "settled", reason: "expired", charged_exact_cents: "3" });
    await restart(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 96 * CENT, ledgerSumMicros: 96 * CENT, grantsRemainingMicros: 96 * CENT });
  });

  it("a hold taken again with the same request id is refused by its row before anything moves in memory", async () => {
    const { stub, hold } = await customer(100);
    expect(await hold("same", 10)).toMatchObject({ outcome: "ok", balanceMicros: 98 * CENT });
    expect(await hold("same", 10)).toMatchObject({ outcome: "ok", replayed: true, chargedMicros: 10 * UNIT });
    await restart(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 98 * CENT, ledgerSumMicros: 98 * CENT });
  });
});
