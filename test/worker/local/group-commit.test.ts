import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { GroupCommit } from "../../../durable-objects/customer-account/core/group-commit";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { customerStub, uniqueId } from "../helpers";

const CENT = 1_000_000;

async function customer(cents: number) {
  const id = uniqueId("cus_gc");
  const stub = customerStub(id);
  await stub.upsertProfile(id, { name: "Group Commit" });
  const keyHash = await sha256Hex((await stub.createKey(null))!.key);
  if (cents) await stub.credit({ customerId: id, amountCents: cents, reason: "start" });
  return { id, stub, keyHash };
}

describe("group commit (GROUP_COMMIT on, the default)", () => {
  it("200 concurrent requests against 150 cents share commits: exactly 150 pass and the balance ends at 0", async () => {
    const { stub, keyHash } = await customer(150);
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => stub.authorize({ keyHash, meter: "api_requests", priceMicros: CENT, requestId: `req_${i}` })));
    expect(results.filter((r) => r.outcome === "ok")).toHaveLength(150);
    expect(results.filter((r) => r.outcome === "insufficient_credit")).toHaveLength(50);
    // Every passing reply carries a distinct balance: each step saw every step before it.
    const balances = results.flatMap((r) => (r.outcome === "ok" ? [r.balanceMicros] : []));
    expect(new Set(balances).size).toBe(150);
    expect(Math.min(...balances)).toBe(0);
    const stats = await stub.groupCommitStats();
    expect(stats.steps).toBe(200);
    // Requests that arrived during a commit shared the next one.
    expect(stats.commits).toBeLessThan(200);
    expect(stats.largest).toBeGreaterThan(1);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 0, ledgerSumMicros: 0 });
  });

  it("what a grouped reply reports is what storage holds: the debits survive the object being reloaded", async () => {
    const { stub, keyHash } = await customer(30);
    await Promise.all(Array.from({ length: 20 }, (_, i) => stub.authorize({ keyHash, meter: "api_requests", priceMicros: CENT, requestId: `req_${i}` })));
    // Twenty charges, in fewer rows: a batch's charges share one (docs/design/one-row-per-batch.md).
    const charges = await runInDurableObject(stub, (_instance, state) =>
      state.storage.sql.exec("SELECT COUNT(*) AS rows, COUNT(*) + COALESCE(SUM(json_array_length(batch)), 0) AS charges FROM charges").one(),
    );
    expect(charges.charges).toBe(20);
    expect(charges.rows).toBeLessThan(20);
    // A new instance has only what was committed: the charge rows, replayed (journal.ts).
    await evictDurableObject(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 10 * CENT, ledgerSumMicros: 10 * CENT, grantsRemainingMicros: 10 * CENT });
    const stored = await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      return { usage: sql.exec("SELECT count, amount FROM ledger WHERE kind = 'usage'").one(), balance: sql.exec("SELECT balance FROM account").one().balance };
    });
    expect(stored).toEqual({ usage: { count: 20, amount: -20 * CENT }, balance: 10 * CENT });
  });

  it("runs steps in arrival order, one commit for those that arrive during a commit, and a step that throws fails only its own caller", async () => {
    const { stub } = await customer(0);
    await runInDurableObject(stub, async (_instance, state) => {
      state.storage.sql.exec("CREATE TABLE gc_probe (n INTEGER NOT NULL)");
      const commits = new GroupCommit(state.storage);
      const order: number[] = [];
      const step = (n: number) => () => {
        order.push(n);
        if (n === 3) throw new Error("step 3 failed");
        state.storage.sql.exec("INSERT INTO gc_probe (n) VALUES (?)", n);
        return n * 10;
      };
      const settled = await Promise.allSettled([1, 2, 3, 4, 5].map((n) => commits.run(step(n))));
      expect(order).toEqual([1, 2, 3, 4, 5]);
      expect(settled.map((s) => (s.status === "fulfilled" ? s.value : (s.reason as Error).message))).toEqual([10, 20, "step 3 failed", 40, 50]);
      expect(
        state.storage.sql
          .exec("SELECT n FROM gc_probe ORDER BY n")
          .toArray()
          .map((r) => r.n),
      ).toEqual([1, 2, 4, 5]);
      // The first step ran at once; the four that arrived during its commit shared the next one.
      expect(commits.stats).toEqual({ commits: 2, steps: 5, largest: 4 });
    });
  });

  it("while requests come concurrently, one that finds no commit pending waits a turn for the ones delivered with it", async () => {
    const { stub } = await customer(0);
    await runInDurableObject(stub, async (_instance, state) => {
      const commits = new GroupCommit(state.storage);
      const burst = (from: number) => Promise.all([0, 1, 2, 3, 4].map((i) => commits.run(() => from + i)));
      expect(await burst(0)).toEqual([0, 1, 2, 3, 4]);
      // An idle object: the first ran alone, the four delivered with it shared the next commit.
      expect(commits.stats).toEqual({ commits: 2, steps: 5, largest: 4 });
      // That batch had company: the next burst's first step waits a turn and all five share one commit.
      expect(await burst(10)).toEqual([10, 11, 12, 13, 14]);
      expect(commits.stats).toEqual({ commits: 3, steps: 10, largest: 5 });
      // A lone step again (a batch of one): the one after it runs at once.
      await commits.run(() => 20);
      await commits.run(() => 21);
      expect(commits.stats).toEqual({ commits: 5, steps: 12, largest: 5 });
    });
  });

  it("a batch writes one charge row; folded in, the usage rows, the grant and the account end exactly as 40 single charges would leave them", async () => {
    const { stub, keyHash } = await customer(100);
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => stub.authorize({ keyHash, meter: i % 2 ? "search" : "api_requests", priceMicros: i % 2 ? 50_000 : CENT, requestId: `req_${i}` })),
    );
    expect(results.every((r) => r.outcome === "ok")).toBe(true);
    expect((await stub.groupCommitStats()).largest).toBeGreaterThan(1);
    const spent = 20 * CENT + 20 * 50_000;
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 100 * CENT - spent, ledgerSumMicros: 100 * CENT - spent });
    const rows = await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      return {
        usage: sql.exec("SELECT meter, count, amount FROM ledger WHERE kind = 'usage' ORDER BY meter").toArray(),
        remaining: sql.exec("SELECT SUM(remaining) AS r FROM grants").one().r,
        balance: sql.exec("SELECT balance FROM account").one().balance,
      };
    });
    expect(rows).toEqual({
      usage: [
        { meter: "api_requests", count: 20, amount: -20 * CENT },
        { meter: "search", count: 20, amount: -20 * 50_000 },
      ],
      remaining: 100 * CENT - spent,
      balance: 100 * CENT - spent,
    });
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 100 * CENT - spent, ledgerSumMicros: 100 * CENT - spent });
  });
});
