import { describe, expect, it } from "vitest";
import { admin, customerStub, gateway, withKey } from "../helpers";
import { connect, cron, deliver, deliverAll, settle } from "./doubles";

async function stripeCustomer(stripe: ReturnType<typeof connect>["stripe"], input: Parameters<typeof stripe.createCustomer>[0] = {}) {
  const customer = stripe.createCustomer({ email: "ada@example.com", name: "Ada Lovelace", ...input });
  await deliverAll(stripe);
  const key = await admin("POST", `/customers/${customer.id}/keys`, {});
  expect(key.status).toBe(201);
  return { id: customer.id, key: key.body.key as string };
}

describe("Stripe → edge (happy)", () => {
  it("runs the tutorial walk-through: credit in Stripe → 200; taken away to 0 → 402", async () => {
    const { stripe } = connect();
    const { id, key } = await stripeCustomer(stripe);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(402);

    stripe.adjustBalance(id, -500, "Prepaid credit");
    await deliverAll(stripe);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);

    stripe.adjustBalance(id, 500, "Credit removed");
    expect(stripe.balanceOf(id)).toBe(0);
    await deliverAll(stripe);
    const refused = await gateway("/v1/x", withKey(key));
    expect(refused.status).toBe(402);
    expect(((await refused.json()) as any).customer_id).toBe(id);

    // The one cent used in between is reported once and leaves Stripe at exactly one cent owed.
    await settle(id);
    await cron();
    await deliverAll(stripe);
    expect(stripe.balanceOf(id)).toBe(1);
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: -1_000_000, pendingUsageMicros: 0 });
  });

  it("takes name, email, plan and minimum balance from the Stripe customer", async () => {
    const { stripe } = connect();
    const { id } = await stripeCustomer(stripe, { metadata: { payg_minimum_balance_cents: "-200" }, balance: -100 });
    const summary = await admin("GET", `/customers/${id}`);
    expect(summary.body.customer).toMatchObject({ name: "Ada Lovelace", email: "ada@example.com", minimum_balance_cents: -200 });
    expect(summary.body.balance).toMatchObject({ available_cents: 100, minimum_cents: -200 });
    expect(summary.body.stripe.last_known_stripe_balance).toBe(-100);
  });

  it("tops up through Checkout: one credit, one Stripe balance transaction, whatever the redeliveries", async () => {
    const { stripe } = connect();
    const { id, key } = await stripeCustomer(stripe);
    const checkout = await gateway("/billing/checkout", withKey(key, { method: "POST", body: JSON.stringify({ amount_cents: 1000 }) }));
    expect(checkout.status).toBe(201);
    const session = (await checkout.json()) as any;
    expect(session.url).toMatch(/^https:\/\/checkout\.stripe\.test\//);

    stripe.completeCheckout(session.id);
    const [completed] = stripe.takeEvents();
    expect((await deliver(stripe, completed!)).body.status).toBe("applied");
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    expect((await deliver(stripe, completed!)).body.status).toBe("duplicate");
    expect(stripe.balanceTransactions(id).map((t) => t.amount)).toEqual([-1000]);
    expect(stripe.balanceTransactions(id)[0]!.metadata).toMatchObject({ payg_report: `payg_topup_${id}_checkout_${session.id}` });

    // Stripe's customer.updated for our own credit changes nothing at the edge.
    await deliverAll(stripe);
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: 999_000_000 });
  });

  it("grants async Checkout payments only once they succeed", async () => {
    const { stripe } = connect();
    const { id, key } = await stripeCustomer(stripe);
    const session = (await (await gateway("/billing/checkout", withKey(key, { method: "POST", body: '{"amount_cents":700}' }))).json()) as any;
    stripe.completeCheckout(session.id, { async: true });
    await deliverAll(stripe);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(0);
    stripe.succeedAsyncPayment(session.id);
    await deliverAll(stripe);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(700_000_000);
    expect(stripe.balanceOf(id)).toBe(-700);
  });
});

describe("Stripe → edge (late, duplicate and reordered events)", () => {
  it("never moves a balance backwards for a stale customer.updated", async () => {
    const { stripe } = connect();
    const { id, key } = await stripeCustomer(stripe);
    stripe.adjustBalance(id, -300);
    stripe.adjustBalance(id, -200);
    const [first, second] = stripe.takeEvents();
    expect((await deliver(stripe, second!)).status).toBe(200);
    expect((await deliver(stripe, first!)).status).toBe(200);
    expect((await deliver(stripe, second!)).body.status).toBe("duplicate");
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(500_000_000);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
  });

  it("blocks a deleted customer from then on and keeps its ledger", async () => {
    const { stripe } = connect();
    const { id, key } = await stripeCustomer(stripe, { balance: -100 });
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    await gateway(`/admin/customers/${id}`, {}); // no-op read
    stripe.createCustomer; // keep the double in scope for readability
    const deleted = await deliver(stripe, {
      ...stripe.events[0]!,
      id: `evt_deleted_${id}`,
      type: "customer.deleted",
      data: { object: { id, object: "customer", deleted: true } },
    } as never);
    expect(deleted.status).toBe(200);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(401);
    const ledger = await admin("GET", `/customers/${id}/ledger`);
    expect(ledger.body.entries.length).toBeGreaterThan(0);
  });
});

describe("Stripe → edge (errors and security)", () => {
  it("rejects bad and stale signatures with 400 and changes nothing", async () => {
    const { stripe } = connect();
    const { id } = await stripeCustomer(stripe);
    stripe.adjustBalance(id, -900);
    const [event] = stripe.takeEvents();
    expect((await deliver(stripe, event!, { secret: "whsec_wrong" })).status).toBe(400);
    const stale = await deliver(stripe, event!, { timestamp: Math.floor(Date.now() / 1000) - 600 });
    expect(stale.status).toBe(400);
    expect(stale.body.error.code).toBe("invalid_signature");
    const unsigned = await gateway("/webhooks/stripe", { method: "POST", body: JSON.stringify(event) });
    expect(unsigned.status).toBe(400);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(0);
    expect((await deliver(stripe, event!)).status).toBe(200);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(900_000_000);
  });

  it("acknowledges and ignores unknown event types", async () => {
    const { stripe } = connect();
    const { id } = await stripeCustomer(stripe);
    const result = await deliver(stripe, { ...stripe.events[0]!, id: `evt_unknown_${id}`, type: "payout.paid" } as never);
    expect(result).toMatchObject({ status: 200, body: { received: true } });
  });

  it("answers 2xx once the event is recorded, even when Stripe cannot be reached to reconcile; the object heals on its own", async () => {
    const { stripe } = connect();
    const { id } = await stripeCustomer(stripe);
    stripe.adjustBalance(id, -400);
    const [event] = stripe.takeEvents();
    // Every GET of the customer fails (the SDK retries GETs itself: 3 calls per attempt).
    stripe.inject({ match: { method: "GET", path: /^\/v1\/customers\/[^/]+$/ }, kind: "500", times: 1_000 });
    expect(await deliver(stripe, event!)).toMatchObject({ status: 200, body: { status: "applied" } });
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(0);
    expect((await admin("GET", `/customers/${id}`)).body.stripe.reconcile_needed).toBe(true);
    // A redelivery is a duplicate: the work is the object's now, not Stripe's.
    expect((await deliver(stripe, event!)).body.status).toBe("duplicate");
    stripe.clearFaults();
    await settle(id);
    await cron(Date.now() + 60_000);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(400_000_000);
    expect((await admin("GET", `/customers/${id}`)).body.stripe.reconcile_needed).toBe(false);
  });

  it("our own balance transaction coming back as customer.updated costs no Stripe call", async () => {
    const { stripe } = connect();
    const { id } = await stripeCustomer(stripe);
    expect((await admin("POST", `/customers/${id}/credits`, { amount: 250, reason: "goodwill" })).status).toBe(201);
    const echoes = stripe.takeEvents();
    expect(echoes.map((e) => e.type)).toEqual(["customer.updated"]);
    const before = stripe.requests.length;
    expect((await deliver(stripe, echoes[0]!)).status).toBe(200);
    expect(stripe.requests.length).toBe(before);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(250_000_000);
  });
});
