import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { customerStub, settle, uniqueId } from "../helpers";

const PRICE = 1_000_000;
const CAP_CENTS = 10;

async function cappedCustomer() {
  const id = uniqueId("cus_capjournal");
  const stub = customerStub(id);
  await stub.upsertProfile(id, { name: "Capped" });
  const created = (await stub.createKey(null, { spendCapCents: CAP_CENTS, capPeriod: "day" }))!;
  await stub.credit({ customerId: id, amountCents: 100, reason: "journal caps test" });
  await settle(id);
  return { id, stub, keyId: created.id, keyHash: await sha256Hex(created.key) };
}

/** What SQLite holds, read without the object's methods (which fold first). */
function stored(stub: ReturnType<typeof customerStub>) {
  return runInDurableObject(stub, (_instance, state) => {
    const sql = state.storage.sql;
    return {
      periodSpend: sql.exec("SELECT period_spend FROM api_keys").one().period_spend as number,
      unfolded: sql.exec("SELECT COUNT(*) AS n FROM charges WHERE seq > (SELECT folded_seq FROM account)").one().n as number,
    };
  });
}

describe("the charge journal on a capped key", () => {
  it("journals a capped key's charges (one row each) while the cap has room; evicted before a fold, the cap stays exact", async () => {
    const { stub, keyId, keyHash } = await cappedCustomer();
    const charge = (requestId: string) => stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId });
    // The first charge after a start places the cohorts: written with its effects, the key's spend too.
    expect((await charge("first")).outcome).toBe("ok");
    for (let i = 0; i < 5; i++) expect((await charge(`r${i}`)).outcome).toBe("ok");
    // The five are journal rows only: the key's row still holds the first charge's spend.
    expect(await stored(stub)).toEqual({ periodSpend: PRICE, unfolded: 5 });

    // A restart before any fold: the key's spend comes back from the charge rows.
    await evictDurableObject(stub);
    const outcomes: string[] = [];
    for (let i = 0; i < 8; i++) outcomes.push((await charge(`s${i}`)).outcome);
    // 6 charged before, 4 more fit the 10-cent cap, then the key is refused.
    expect(outcomes).toEqual(["ok", "ok", "ok", "ok", "key_cap_reached", "key_cap_reached", "key_cap_reached", "key_cap_reached"]);
    const key = (await stub.listKeys()).find((k) => k.id === keyId)!;
    expect(key.period_spend_exact_cents).toBe(String(CAP_CENTS));
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 90 * PRICE, ledgerSumMicros: 90 * PRICE, grantsRemainingMicros: 90 * PRICE });
    // Folded (the reads above fold first), SQLite holds the cap's exact spend.
    expect(await stored(stub)).toEqual({ periodSpend: CAP_CENTS * PRICE, unfolded: 0 });
  });
});

describe("the charge journal for a post-paid customer (Stripe off)", () => {
  it("journals post-paid charges: one row each, folded in exactly", async () => {
    const id = uniqueId("cus_postjournal");
    const stub = customerStub(id);
    await stub.upsertProfile(id, { name: "Post", plan: "postpaid" });
    const keyHash = await sha256Hex((await stub.createKey(null))!.key);
    await settle(id);
    for (let i = 0; i < 6; i++) expect((await stub.authorize({ keyHash, meter: "api_requests", priceMicros: PRICE, requestId: `p${i}` })).outcome).toBe("ok");
    const unfolded = await runInDurableObject(
      stub,
      (_instance, state) => state.storage.sql.exec("SELECT COUNT(*) AS n FROM charges WHERE seq > (SELECT folded_seq FROM account)").one().n as number,
    );
    // Every one after the cohorts were placed (the profile placed them here).
    expect(unfolded).toBeGreaterThanOrEqual(5);
    await evictDurableObject(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: -6 * PRICE, ledgerSumMicros: -6 * PRICE });
  });
});
