import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FOLD_EVERY } from "../../../durable-objects/customer-account/journal";
import { sha256Hex } from "../../../src/keys";
import { customerStub, uniqueId } from "../helpers";

const PRICE = 1_000_000;

async function customer(cents: number) {
  const id = uniqueId("cus_journal");
  const stub = customerStub(id);
  await stub.upsertProfile(id, { name: "Journal" });
  const key = (await stub.createKey(null))!.key;
  if (cents) await stub.credit({ customerId: id, amountCents: cents, reason: "journal test" });
  return { id, stub, keyHash: await sha256Hex(key) };
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
      usageCount: (one("SELECT COALESCE(SUM(count), 0) AS c FROM ledger WHERE kind = 'usage'").c as number) ?? 0,
      chargeRows: one("SELECT COUNT(*) AS n FROM charges WHERE seq IS NOT NULL").n as number,
    };
  });
}

describe("the charge journal (happy)", () => {
  it("a plain charge writes its charge row only; any other call folds the grants, the usage row and the balance in", async () => {
    const { stub, keyHash } = await customer(100);
    for (let i = 0; i < 5; i++) {
      expect((await stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId: `r${i}` })).outcome).toBe("ok");
    }
    expect(await stored(stub)).toEqual({ balance: 100 * PRICE, foldedSeq: 0, remaining: 100 * PRICE, usageCount: 0, chargeRows: 5 });

    const check = (await stub.balanceCheck())!;
    expect(check).toMatchObject({ balanceMicros: 95 * PRICE, ledgerSumMicros: 95 * PRICE, grantsRemainingMicros: 95 * PRICE });
    expect(await stored(stub)).toEqual({ balance: 95 * PRICE, foldedSeq: 5, remaining: 95 * PRICE, usageCount: 5, chargeRows: 5 });
  });

  it(`folds on its own every ${FOLD_EVERY} charges`, async () => {
    const { stub, keyHash } = await customer(1000);
    for (let i = 0; i < FOLD_EVERY + 3; i++) await stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId: `r${i}` });
    expect(await stored(stub)).toMatchObject({ foldedSeq: FOLD_EVERY, balance: (1000 - FOLD_EVERY) * PRICE, usageCount: FOLD_EVERY });
  });
});

describe("the charge journal (errors)", () => {
  it("an object that restarts before a fold replays its charges: none lost, none applied twice", async () => {
    const { stub, keyHash } = await customer(10);
    for (let i = 0; i < 4; i++) await stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId: `a${i}` });
    await evictDurableObject(stub);
    // The new instance spends what the replayed charges left: 6 more pass, the 7th is refused.
    const outcomes: string[] = [];
    for (let i = 0; i < 7; i++) outcomes.push((await stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId: `b${i}` })).outcome);
    expect(outcomes).toEqual([...Array(6).fill("ok"), "insufficient_credit"]);
    await evictDurableObject(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 0, ledgerSumMicros: 0, grantsRemainingMicros: 0 });
    await evictDurableObject(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 0, ledgerSumMicros: 0 });
    expect(await stored(stub)).toMatchObject({ balance: 0, foldedSeq: 10, usageCount: 10 });
  });

  it("a repeated request id is refused by its charge row before anything moves in memory", async () => {
    const { stub, keyHash } = await customer(10);
    const first = await stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId: "same" });
    const again = await stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId: "same" });
    expect(first).toMatchObject({ outcome: "ok", balanceMicros: 9 * PRICE });
    expect(again).toMatchObject({ outcome: "ok", replayed: true, chargedMicros: PRICE });
    await evictDurableObject(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 9 * PRICE, ledgerSumMicros: 9 * PRICE });
  });
});

/** A new instance on the next call (an object that is not running has nothing in memory to lose). */
async function restart(stub: ReturnType<typeof customerStub>) {
  try {
    await evictDurableObject(stub);
  } catch (error) {
    if (!/not currently running/.test(String(error))) throw error;
  }
}

type Op = { kind: "charge"; priceMicros: number } | { kind: "restart" } | { kind: "read" } | { kind: "refund" } | { kind: "grant"; cents: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("charge" as const), priceMicros: fc.constantFrom(PRICE, 250_000, 7, 3 * PRICE) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("restart" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("read" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("refund" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("grant" as const), cents: fc.integer({ min: -5, max: 20 }).filter((n) => n !== 0) }) },
);

describe("the charge journal (property)", () => {
  it("across restarts, folds, refunds and grants in any order, the balance is exact and equals the ledger's sum", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), async (ops) => {
        const { id, stub, keyHash } = await customer(20);
        let model = 20 * PRICE;
        let requests = 0;
        let passed = 0;
        const charged: { requestId: string; priceMicros: number }[] = [];
        for (const step of ops) {
          if (step.kind === "charge") {
            const requestId = `r${requests++}`;
            const result = await stub.authorize({ keyHash, meter: "api_requests", priceMicros: step.priceMicros, requestId });
            expect(result.outcome).toBe(model - step.priceMicros >= 0 ? "ok" : "insufficient_credit");
            if (result.outcome === "ok") {
              model -= step.priceMicros;
              passed++;
              charged.push({ requestId, priceMicros: step.priceMicros });
              expect(result.balanceMicros).toBe(model);
            }
          } else if (step.kind === "restart") {
            await restart(stub);
          } else if (step.kind === "read") {
            expect((await stub.balanceCheck())!.balanceMicros).toBe(model);
          } else if (step.kind === "refund" && charged.length) {
            const last = charged.pop()!;
            expect((await stub.refund({ requestId: last.requestId })).refunded).toBe(true);
            model += last.priceMicros;
          } else if (step.kind === "grant") {
            await stub.credit({ customerId: id, amountCents: step.cents, reason: "property" });
            model += step.cents * PRICE;
          }
        }
        await restart(stub);
        const check = (await stub.balanceCheck())!;
        expect(check.balanceMicros).toBe(model);
        expect(check.ledgerSumMicros).toBe(model);
        expect(check.grantsRemainingMicros - check.debtMicros).toBe(model);
        // Every charge that passed is counted once in the usage rows, refunded or not.
        expect((await stored(stub)).usageCount).toBe(passed);
      }),
      { numRuns: 25 },
    );
  });
});
