import { describe, expect, it } from "vitest";
import { admin, customerStub, customerWithCredit, gateway, uniqueId, withKey } from "../helpers";
import { connect, cron, deliver, deliverAll, settle } from "./doubles";

async function stripeCustomer(stripe: ReturnType<typeof connect>["stripe"], input: Parameters<typeof stripe.createCustomer>[0] = {}) {
  const customer = stripe.createCustomer({ name: "Rev Iew", email: `rev-${uniqueId()}@example.com`, ...input });
  await deliverAll(stripe);
  const key = (await admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
  return { id: customer.id, key, email: customer.email! };
}

describe("Stripe edge cases", () => {
  it("credits only Checkout sessions the gateway created, in its currency", async () => {
    const { stripe } = connect();
    const { id } = await stripeCustomer(stripe);
    const base = { id: `evt_${uniqueId()}`, object: "event", created: Math.floor(Date.now() / 1000), type: "checkout.session.completed" };
    const session = { object: "checkout.session", customer: id, mode: "payment", payment_status: "paid", amount_total: 50_000, currency: "usd" };
    const foreign = await deliver(stripe, { ...base, data: { object: { ...session, id: "cs_foreign", metadata: {} } } } as never);
    expect(foreign.body.status).toBe("ignored");
    const euro = await deliver(stripe, {
      ...base,
      id: `evt_${uniqueId()}`,
      data: { object: { ...session, id: "cs_eur", currency: "eur", metadata: { payg_credit_cents: "500" } } },
    } as never);
    expect(euro.body.status).toBe("ignored");
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(0);
    expect(stripe.balanceTransactions(id)).toHaveLength(0);
  });

  it("refuses top-ups for post-paid customers and never meters their free routes", async () => {
    const { stripe } = connect();
    const { id, key } = await stripeCustomer(stripe, { metadata: { payg_plan: "postpaid" } });
    const checkout = await gateway("/billing/checkout", withKey(key, { method: "POST", body: '{"amount_cents":1000}' }));
    expect(checkout.status).toBe(409);
    expect((await gateway("/health", withKey(key))).status).toBe(200);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    await settle(id);
    await cron();
    expect(stripe.meterUsage(id, "api_requests")).toBe(1);
    expect(stripe.meterEvents.filter((e) => e.payload.stripe_customer_id === id)).toHaveLength(1);
  });

  it("still reports usage from before a switch from prepaid to post-paid, and reconciles a switch back", async () => {
    const { stripe } = connect();
    const { id, key } = await stripeCustomer(stripe, { balance: -50 });
    for (let i = 0; i < 3; i++) expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    expect((await admin("PUT", `/customers/${id}`, { plan: "postpaid" })).status).toBe(200);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    await settle(id);
    await cron();
    await deliverAll(stripe);
    expect(stripe.balanceOf(id)).toBe(-47);
    expect(stripe.meterUsage(id, "api_requests")).toBe(1);

    expect((await admin("PUT", `/customers/${id}`, { plan: "prepaid" })).status).toBe(200);
    await settle(id);
    await cron(Date.now() + 60_000);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(47_000_000);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
  });

  it("a voided or uncollectible invoice no longer blocks a post-paid customer", async () => {
    const { stripe } = connect();
    const { id, key } = await stripeCustomer(stripe, { metadata: { payg_plan: "postpaid" } });
    stripe.invoiceEvent(id, "invoice.payment_failed", "in_void_1");
    await deliverAll(stripe);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(402);
    const failed = stripe.events.at(-1)!;
    await deliver(stripe, { ...failed, id: `evt_${uniqueId()}`, type: "invoice.voided" } as never);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
  });
});

describe("emails when a customer flaps in and out of a cohort", () => {
  it("waits out the re-enrollment window across enrollments", async () => {
    const { mail } = connect();
    const { id, key } = await customerWithCredit(1, { name: "Flap Per", email: `flap-${uniqueId()}@example.com` });
    const email = (await admin("GET", `/customers/${id}`)).body.customer.email as string;
    const drain = async () => {
      expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
      expect((await gateway("/v1/x", withKey(key))).status).toBe(402);
      await settle(id);
    };
    await drain();
    const t = Date.now();
    await cron(t);
    await admin("POST", `/customers/${id}/credits`, { amount: 1, reason: "flap" });
    await drain();
    await cron(t + 5 * 60_000);
    const outOfCredit = () => mail.sentTo(email).filter((m) => m.subject === "You're out of API credit");
    expect(outOfCredit()).toHaveLength(1);
    await cron(t + 61 * 60_000);
    expect(outOfCredit()).toHaveLength(2);
  });
});
