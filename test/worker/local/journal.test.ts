import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { CustomerAccount } from "../../../durable-objects/customer-account";
import type { AccountContext } from "../../../durable-objects/customer-account/core/context";
import { FOLD_EVERY } from "../../../durable-objects/customer-account/core/journal";
import type { Directory } from "../../../durable-objects/directory/index";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { customerStub, settle, uniqueId } from "../helpers";

const PRICE = 1_000_000;

async function customer(cents: number) {
  const id = uniqueId("cus_journal");
  const stub = customerStub(id);
  await stub.upsertProfile(id, { name: "Journal" });
  const key = (await stub.createKey(null))!.key;
  if (cents) await stub.credit({ customerId: id, amountCents: cents, reason: "journal test" });
  // The timers creating the customer armed run now, so no alarm (which folds) fires mid-test.
  await settle(id);
  return { id, stub, keyHash: await sha256Hex(key) };
}

/** The request path's context, as a timer handler that captured it before an await sees it: no fold on access. */
const hotContext = (instance: CustomerAccount) => (instance as unknown as { hot: AccountContext }).hot;

/** A storage failure at the fold (as a full database would cause): a grant's remaining cannot be updated. */
function failFolds(stub: ReturnType<typeof customerStub>, on: boolean) {
  return runInDurableObject(stub, (_instance, state) => {
    const sql = state.storage.sql;
    if (!on) return void sql.exec("DROP TRIGGER IF EXISTS fold_fault");
    sql.exec("CREATE TABLE IF NOT EXISTS fold_fault (x INTEGER NOT NULL)");
    sql.exec("CREATE TRIGGER fold_fault BEFORE UPDATE OF remaining ON grants BEGIN INSERT INTO fold_fault (x) VALUES (NULL); END");
  });
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
    // The first charge after a start places the cohorts (and learns their slack): written with its effects.
    expect((await stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId: "first" })).outcome).toBe("ok");
    expect(await stored(stub)).toEqual({ balance: 99 * PRICE, foldedSeq: 0, remaining: 99 * PRICE, usageCount: 1, chargeRows: 0 });
    for (let i = 0; i < 5; i++) {
      expect((await stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId: `r${i}` })).outcome).toBe("ok");
    }
    expect(await stored(stub)).toEqual({ balance: 99 * PRICE, foldedSeq: 0, remaining: 99 * PRICE, usageCount: 1, chargeRows: 5 });

    const check = (await stub.balanceCheck())!;
    expect(check).toMatchObject({ balanceMicros: 94 * PRICE, ledgerSumMicros: 94 * PRICE, grantsRemainingMicros: 94 * PRICE });
    expect(await stored(stub)).toEqual({ balance: 94 * PRICE, foldedSeq: 5, remaining: 94 * PRICE, usageCount: 6, chargeRows: 5 });
  });

  it(`folds on its own every ${FOLD_EVERY} charges`, async () => {
    const { stub, keyHash } = await customer(1000);
    for (let i = 0; i < FOLD_EVERY + 3; i++) await stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId: `r${i}` });
    // FOLD_EVERY journaled charges were folded in by the one after them (a charge that placed the
    // cohorts, written with its effects, may come before them).
    const after = await stored(stub);
    expect(after.foldedSeq).toBe(FOLD_EVERY);
    expect(after.usageCount).toBeGreaterThanOrEqual(FOLD_EVERY);
    expect(after.balance).toBe((1000 - after.usageCount) * PRICE);
    expect(after.chargeRows).toBe(FOLD_EVERY + 3 - (after.usageCount - FOLD_EVERY));
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
    expect(await stored(stub)).toMatchObject({ balance: 0, usageCount: 10 });
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

describe("the charge journal (faults)", () => {
  it("a request whose fold fails is refused with nothing charged, and so is every request while the fault lasts", async () => {
    const { stub, keyHash } = await customer(1000);
    const charge = (requestId: string) => stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId });
    for (let i = 0; i < FOLD_EVERY; i++) expect((await charge(`r${i}`)).outcome).toBe("ok");
    await failFolds(stub, true);
    // The journal is full: each next charge folds first, the fold fails, the request fails.
    // Inside the object, so the expected failure is caught here instead of being logged by the
    // runtime as an RPC method's uncaught exception.
    for (const requestId of ["refused_0", "refused_1", "refused_2"]) {
      const failed = await runInDurableObject(stub, async (instance: CustomerAccount) => {
        try {
          await instance.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId });
          return null;
        } catch (error) {
          return String(error);
        }
      });
      expect(failed).toMatch(/SQLITE_CONSTRAINT/);
    }
    await failFolds(stub, false);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: (1000 - FOLD_EVERY) * PRICE, ledgerSumMicros: (1000 - FOLD_EVERY) * PRICE });
    for (const requestId of ["refused_0", "refused_1", "refused_2"]) expect(await stub.requestCharge(requestId)).toBeNull();
    await restart(stub);
    expect((await stub.balanceCheck())!.balanceMicros).toBe((1000 - FOLD_EVERY) * PRICE);
  });

  it("usage charged while an alarm run awaits reaches the directory's hourly usage: the rollup folds before it reads", async () => {
    const { id, stub, keyHash } = await customer(1000);
    // The alarm has started (and folded) and awaits an earlier handler; three requests are charged meanwhile.
    for (let i = 0; i < 3; i++) expect((await stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId: `u${i}` })).outcome).toBe("ok");
    // The rollup handler runs with the context the alarm captured, which has not folded them.
    await runInDurableObject(stub, (instance: CustomerAccount) => hotContext(instance).rollup.push());
    const ns = env.DIRECTORY as DurableObjectNamespace<Directory>;
    const requests = await runInDurableObject(
      ns.get(ns.idFromName("global")),
      (_instance, state) => state.storage.sql.exec("SELECT COALESCE(SUM(requests), 0) AS n FROM usage_hourly WHERE customer_id = ?", id).one().n,
    );
    expect(requests).toBe(3);
  });

  it("a grant voided while charges on it are unfolded, then a restart: the void folds them in first, the replay starts past them", async () => {
    const { id, stub, keyHash } = await customer(0);
    await stub.grant({ customerId: id, amountCents: 10, reason: "a" });
    await stub.grant({ customerId: id, amountCents: 10, reason: "b" });
    const charge = (requestId: string) => stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId });
    const first = await charge("v0");
    const drained = (first as { grantId: string }).grantId;
    for (let i = 1; i < 3; i++) expect((await charge(`v${i}`)).outcome).toBe("ok");
    // The 7 cents left in the drained grant are voided; its 3 cents of charges were folded in first.
    expect(await stub.voidGrant(drained)).toMatchObject({ id: drained, status: "voided" });
    for (let i = 3; i < 5; i++) expect((await charge(`v${i}`)).outcome).toBe("ok");
    await restart(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 8 * PRICE, ledgerSumMicros: 8 * PRICE, grantsRemainingMicros: 8 * PRICE });
  });

  it("the charges timer never prunes an unfolded charge row: the alarm folds before its handlers", async () => {
    const { stub, keyHash } = await customer(10);
    for (let i = 0; i < 3; i++) expect((await stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId: `p${i}` })).outcome).toBe("ok");
    // As if the refund window had passed: the rows are old and the charges timer is due.
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec("UPDATE charges SET created_at = created_at - 3600000 WHERE seq IS NOT NULL");
      state.storage.sql.exec("UPDATE timers SET due_at = ? WHERE name = 'charges'", Date.now() - 1);
    });
    await runDurableObjectAlarm(stub);
    expect(await runInDurableObject(stub, (_instance, state) => state.storage.sql.exec("SELECT COUNT(*) AS n FROM charges").one().n)).toBe(0);
    await restart(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 7 * PRICE, ledgerSumMicros: 7 * PRICE });
  });

  it("charge rows written before the journal (no seq) are never replayed", async () => {
    const { stub, keyHash } = await customer(10);
    expect((await stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId: "j0" })).outcome).toBe("ok");
    await stub.balanceCheck();
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec(
        `INSERT INTO charges (request_id, meter, bucket, plan, amount, receipt, key_id, status, created_at) VALUES ('legacy', 'api_requests', 0, 'prepaid', ?, '{"parts":[],"debt":0}', NULL, 'charged', ?)`,
        PRICE,
        Date.now(),
      );
    });
    await restart(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 9 * PRICE, ledgerSumMicros: 9 * PRICE });
  });
});

type Op =
  | { kind: "charge"; priceMicros: number }
  | { kind: "batch"; priceMicros: number; size: number }
  | { kind: "restart" }
  | { kind: "read" }
  | { kind: "refund" }
  | { kind: "grant"; cents: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("charge" as const), priceMicros: fc.constantFrom(PRICE, 250_000, 7, 3 * PRICE) }) },
  // Concurrent charges: under group commit they share batches, and their charges a row (one-row-per-batch.md).
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("batch" as const), priceMicros: fc.constantFrom(PRICE, 250_000, 7), size: fc.integer({ min: 2, max: 12 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("restart" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("read" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("refund" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("grant" as const), cents: fc.integer({ min: -5, max: 20 }).filter((n) => n !== 0) }) },
);

describe("the charge journal (property)", () => {
  it("across batches, restarts, folds, refunds and grants in any order, the balance is exact and equals the ledger's sum", async () => {
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
          } else if (step.kind === "batch") {
            const requestIds = Array.from({ length: step.size }, () => `r${requests++}`);
            const results = await Promise.all(requestIds.map((requestId) => stub.authorize({ keyHash, meter: "api_requests", priceMicros: step.priceMicros, requestId })));
            const ok = requestIds.filter((_, i) => results[i]!.outcome === "ok");
            // Same price each: exactly as many pass as the balance pays for, whatever the order.
            expect(ok).toHaveLength(Math.min(step.size, Math.floor(model / step.priceMicros)));
            model -= ok.length * step.priceMicros;
            passed += ok.length;
            for (const requestId of ok) charged.push({ requestId, priceMicros: step.priceMicros });
          } else if (step.kind === "restart") {
            await restart(stub);
          } else if (step.kind === "read") {
            expect((await stub.balanceCheck())!.balanceMicros).toBe(model);
          } else if (step.kind === "refund" && charged.length) {
            const last = charged.pop()!;
            expect((await stub.refund({ requestId: last.requestId })).refunded).toBe(true);
            expect(await stub.refund({ requestId: last.requestId })).toMatchObject({ refunded: false, reason: "already_refunded" });
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
