import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { AccountContext } from "../../../durable-objects/customer-account/core/context";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { admin, customerStub, uniqueId } from "../helpers";
import { connect, cron, deliverAll, settle } from "./doubles";

/** What SQLite holds, read without the object's methods (which fold first). */
function stored(id: string) {
  return runInDurableObject(customerStub(id), (_instance, state) => {
    const sql = state.storage.sql;
    return {
      quantity: (sql.exec("SELECT COALESCE(SUM(quantity), 0) AS q FROM meter_pending").one().q as number) ?? 0,
      unfolded: sql.exec("SELECT COUNT(*) AS n FROM charges WHERE seq > (SELECT folded_seq FROM account)").one().n as number,
    };
  });
}

/** A post-paid Stripe customer, synced to the gateway, with one API key. */
async function postpaidCustomer() {
  const { stripe } = connect();
  const customer = stripe.createCustomer({ name: "Post Paid", email: `post-${uniqueId()}@example.com`, metadata: { payg_plan: "postpaid" } });
  await deliverAll(stripe);
  const key = (await admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
  return { stripe, id: customer.id, key };
}

describe("the charge journal for a post-paid customer", () => {
  it("journals post-paid charges (one row each); evicted before a fold, Stripe's meter gets every request exactly once", async () => {
    const { stripe, id, key } = await postpaidCustomer();
    const keyHash = await sha256Hex(key);
    let n = 0;
    const charge = async () => (await customerStub(id).authorize({ keyHash, meter: "api_requests", priceMicros: 1_000_000, requestId: `pp_${n++}` })).outcome;
    await settle(id);
    // The first charge after a start places the cohorts and tells the directory there is usage to
    // report: written with its effects, its quantity too. Charges are journaled once the directory
    // lists the customer as due (withinSlack), which the cron's schedule decides: here, now.
    expect(await charge()).toBe("ok");
    await settle(id);
    await runInDurableObject(customerStub(id), (instance) => (instance as unknown as { hot: AccountContext }).hot.account.set({ directory_due_at: Date.now() - 1 }));
    const before = (await stored(id)).quantity;
    for (let i = 0; i < 5; i++) expect(await charge()).toBe("ok");
    // The five are charge rows only: the meter's quantity in SQLite did not move with them.
    expect(await stored(id)).toEqual({ quantity: before, unfolded: 5 });

    // A restart before any fold: the quantities come back from the charge rows, once.
    await evictDurableObject(customerStub(id));
    for (let i = 0; i < 3; i++) expect(await charge()).toBe("ok");
    await settle(id);
    await cron();
    expect(stripe.meterUsage(id, "api_requests")).toBe(9);
    expect(await stored(id)).toEqual({ quantity: 0, unfolded: 0 });
  });
});

describe("a post-paid charge replayed from its row", () => {
  it("owes Stripe what it owed when it was made: a row charged while Stripe was off adds no meter quantity after a restart", async () => {
    const { id } = await postpaidCustomer();
    await settle(id);
    const before = (await stored(id)).quantity;
    // Two unfolded journal rows as a gateway wrote them: one while Stripe was off (owes nothing), one while on (owes 1).
    await runInDurableObject(customerStub(id), (_instance, state) => {
      const sql = state.storage.sql;
      const folded = sql.exec("SELECT folded_seq FROM account").one().folded_seq as number;
      const receipt = JSON.stringify({ parts: [], debt: 1_000_000 });
      const insert =
        "INSERT INTO charges (request_id, meter, bucket, plan, amount, receipt, key_id, status, created_at, seq, pending_usage) VALUES (?, 'api_requests', 0, 'postpaid', 1000000, ?, NULL, 'charged', ?, ?, ?)";
      sql.exec(insert, "pp_off", receipt, Date.now(), folded + 1, 0);
      sql.exec(insert, "pp_on", receipt, Date.now(), folded + 2, 1);
    });
    await evictDurableObject(customerStub(id));
    await customerStub(id).balanceCheck();
    expect((await stored(id)).quantity).toBe(before + 1);
  });
});

describe("journaled holds for a post-paid customer", () => {
  it("held requests settled from their response write hold rows only; evicted before a fold, the units owed to Stripe's meter are exact", async () => {
    const { id, key } = await postpaidCustomer();
    const keyHash = await sha256Hex(key);
    const stub = customerStub(id);
    await settle(id);
    expect((await stub.authorize({ keyHash, meter: "api_requests", priceMicros: 1_000_000, requestId: "first" })).outcome).toBe("ok");
    await settle(id);
    await runInDurableObject(stub, (instance) => (instance as unknown as { hot: AccountContext }).hot.account.set({ directory_due_at: Date.now() - 1 }));
    const before = (await stored(id)).quantity;
    for (const [requestId, units] of [
      ["h0", 7],
      ["h1", 12],
    ] as const) {
      expect((await stub.authorize({ keyHash, meter: "json_tokens", priceMicros: 100_000, requestId, hold: { units: 20, onMissing: "hold" } })).outcome).toBe("ok");
      expect(await stub.settleHold({ requestId, units, reason: "completed" })).toMatchObject({ settled: true, chargedMicros: units * 100_000 });
    }
    // Both settled in their rows only: the meter's quantity in SQLite did not move with them.
    const unfolded = await runInDurableObject(
      stub,
      (_instance, state) => state.storage.sql.exec("SELECT COUNT(*) AS n FROM holds WHERE settled_seq > (SELECT folded_seq FROM account)").one().n,
    );
    expect({ quantity: (await stored(id)).quantity, unfolded }).toEqual({ quantity: before, unfolded: 2 });
    // A restart before any fold: the units come back from the hold rows, once (another restart after the fold adds nothing).
    await evictDurableObject(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: -1_000_000 - 19 * 100_000, ledgerSumMicros: -1_000_000 - 19 * 100_000 });
    expect((await stored(id)).quantity).toBe(before + 19);
    await evictDurableObject(stub);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: -1_000_000 - 19 * 100_000 });
    expect((await stored(id)).quantity).toBe(before + 19);
  });
});
