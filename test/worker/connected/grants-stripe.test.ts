import { runInDurableObject } from "cloudflare:test";
import type Stripe from "stripe";
import { describe, expect, it } from "vitest";
import type { CustomerAccount } from "../../../durable-objects/customer-account";
import { expireGrants } from "../../../durable-objects/customer-account/credit/credits";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { admin, customerStub, gateway, uniqueId, withKey } from "../helpers";
import { connect, cron, deliver, deliverAll, settle } from "./doubles";

type Doubles = ReturnType<typeof connect>;

async function stripeCustomer({ stripe }: Doubles, input: Parameters<Doubles["stripe"]["createCustomer"]>[0] = {}) {
  const customer = stripe.createCustomer({ name: "Top Upper", email: `top-${uniqueId()}@example.com`, ...input });
  await deliverAll(stripe);
  const key = (await admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
  return { id: customer.id, key };
}

/** A Checkout top-up of `cents`, paid and delivered; returns its PaymentIntent. */
async function topUp({ stripe }: Doubles, key: string, cents: number): Promise<string> {
  const response = await gateway("/billing/checkout", withKey(key, { method: "POST", body: JSON.stringify({ amount_cents: cents }) }));
  expect(response.status).toBe(201);
  const session = stripe.completeCheckout(((await response.json()) as { id: string }).id);
  await deliverAll(stripe);
  return session.payment_intent as string;
}

async function spend(key: string, n: number) {
  for (let i = 0; i < n; i++) expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
}

/** Lets the object tell the directory, runs the cron (now, or at `at`), then delivers Stripe's events. */
async function settleWithStripe(doubles: Doubles, id: string, at?: number) {
  await settle(id);
  await cron(at ?? Date.now());
  await deliverAll(doubles.stripe);
}

const balance = async (id: string) => (await admin("GET", `/customers/${id}`)).body.balance;

describe("Checkout top-ups are paid grants that refunds and disputes take back", () => {
  it("a top-up becomes a paid grant that remembers its payment; a full refund after spending leaves the customer refused and in debt", async () => {
    const doubles = connect();
    const { id, key } = await stripeCustomer(doubles);
    const pi = await topUp(doubles, key, 500);
    expect((await admin("GET", `/customers/${id}/grants`)).body.grants[0]).toMatchObject({ source: "checkout", category: "paid", amount_cents: 500, payment_intent: pi });
    await spend(key, 3);
    doubles.stripe.refundCharge(pi);
    await deliverAll(doubles.stripe);
    expect(await balance(id)).toMatchObject({ available_exact_cents: "-3", debt_exact_cents: "3", ledger_sum_exact_cents: "-3" });
    expect((await gateway("/v1/x", withKey(key))).status).toBe(402);
    await settleWithStripe(doubles, id);
    // Stripe: +500 top-up credit, 3 cents of usage, 500 taken back: the customer owes 3.
    expect(doubles.stripe.balanceOf(id)).toBe(3);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(-3_000_000);
  });

  it("partial refunds take back exactly what is new, whatever the duplicates and the order", async () => {
    const doubles = connect();
    const { id, key } = await stripeCustomer(doubles);
    const pi = await topUp(doubles, key, 1000);
    doubles.stripe.refundCharge(pi, 100);
    doubles.stripe.refundCharge(pi, 150);
    const events = doubles.stripe.takeEvents().filter((e) => e.type === "charge.refunded");
    expect(events).toHaveLength(2);
    for (const event of [events[1]!, events[0]!, events[1]!, events[0]!]) expect((await deliver(doubles.stripe, event)).status).toBe(200);
    expect(await balance(id)).toMatchObject({ available_exact_cents: "750", debt_exact_cents: "0" });
    await settleWithStripe(doubles, id);
    expect(doubles.stripe.balanceOf(id)).toBe(-750);
  });

  it("a dispute freezes the disputed credit; won releases it, with nothing taken", async () => {
    const doubles = connect();
    const { id, key } = await stripeCustomer(doubles);
    const pi = await topUp(doubles, key, 500);
    const dispute = doubles.stripe.createDispute(pi, 498);
    await deliverAll(doubles.stripe);
    expect(await balance(id)).toMatchObject({ available_exact_cents: "2", frozen_cents: 498, total_exact_cents: "500" });
    await spend(key, 2);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(402);
    doubles.stripe.closeDispute(dispute.id, "won");
    await deliverAll(doubles.stripe);
    expect(await balance(id)).toMatchObject({ available_exact_cents: "498", frozen_cents: 0 });
    await settleWithStripe(doubles, id);
    expect(doubles.stripe.balanceOf(id)).toBe(-498);
  });

  it("a lost dispute takes the disputed amount back; a closed event before its created event still ends right", async () => {
    const doubles = connect();
    const { id, key } = await stripeCustomer(doubles);
    const pi = await topUp(doubles, key, 500);
    await spend(key, 100);
    const dispute = doubles.stripe.createDispute(pi);
    doubles.stripe.closeDispute(dispute.id, "lost");
    const events = doubles.stripe.takeEvents();
    const created = events.find((e) => e.type === "charge.dispute.created")!;
    const closed = events.find((e) => e.type === "charge.dispute.closed")!;
    for (const event of [closed, created, closed, created]) expect((await deliver(doubles.stripe, event)).status).toBe(200);
    for (const event of events.filter((e) => e !== created && e !== closed)) await deliver(doubles.stripe, event);
    expect(await balance(id)).toMatchObject({ available_exact_cents: "-100", debt_exact_cents: "100", frozen_cents: 0 });
    expect((await gateway("/v1/x", withKey(key))).status).toBe(402);
    await settleWithStripe(doubles, id);
    expect(doubles.stripe.balanceOf(id)).toBe(100);
  });
});

describe("a clawback never takes the same credit twice", () => {
  it("a voided top-up that is then refunded takes back only what was spent of it, here and on Stripe", async () => {
    const doubles = connect();
    const { id, key } = await stripeCustomer(doubles);
    const pi = await topUp(doubles, key, 500);
    await spend(key, 3);
    const grant = (await admin("GET", `/customers/${id}/grants`)).body.grants[0];
    expect((await admin("DELETE", `/customers/${id}/grants/${grant.id}`)).status).toBe(200);
    expect(await balance(id)).toMatchObject({ available_exact_cents: "0", debt_exact_cents: "0" });
    doubles.stripe.refundCharge(pi);
    await deliverAll(doubles.stripe);
    // The 497 unspent cents left with the void; the refund takes back the 3 that were spent.
    expect(await balance(id)).toMatchObject({ available_exact_cents: "-3", debt_exact_cents: "3", ledger_sum_exact_cents: "-3" });
    await settleWithStripe(doubles, id);
    // Stripe: +500 top-up, 3 of usage, 497 voided, 3 taken back: the customer owes the 3 cents used.
    expect(doubles.stripe.balanceOf(id)).toBe(3);
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: -3_000_000, ledgerSumMicros: -3_000_000 });
    const { entries } = (await admin("GET", `/customers/${id}/ledger`)).body as { entries: { kind: string; amount_cents?: number; reason: string | null }[] };
    expect(entries.filter((e) => e.kind === "clawback").map((e) => e.reason)).toEqual([expect.stringContaining("497 cents of it were already voided")]);
  });

  it("a hold given back after its top-up was voided is booked as the void, not as usage; a later refund takes back only the units used", async () => {
    const doubles = connect();
    const { id, key } = await stripeCustomer(doubles);
    const pi = await topUp(doubles, key, 1000);
    const stub = customerStub(id);
    // The whole top-up held by one request (10,000 units at 0.1 cent), then the top-up is voided.
    const held = await stub.authorize({
      keyHash: await sha256Hex(key),
      meter: "json_tokens",
      priceMicros: 100_000,
      requestId: "req_held",
      hold: { units: 10_000, onMissing: "hold" },
    });
    expect(held).toMatchObject({ outcome: "ok", heldUnits: 10_000 });
    const grant = (await admin("GET", `/customers/${id}/grants`)).body.grants[0];
    expect((await admin("DELETE", `/customers/${id}/grants/${grant.id}`)).status).toBe(200);
    // The response reports 100 units: 10 cents of usage; the 990 cents that cannot go back into the voided grant leave as its void.
    expect(await stub.settleHold({ requestId: "req_held", units: 100, reason: "completed" })).toMatchObject({ chargedMicros: 10_000_000 });
    expect(await stub.requestCharge("req_held")).toMatchObject({ units: 100, charged_exact_cents: "10" });
    const usage = (await admin("GET", `/customers/${id}/usage?hours=24`)).body;
    expect(usage.totals.last_24h.find((m: { meter: string }) => m.meter === "json_tokens")).toMatchObject({ charged_exact_cents: "10" });
    const { entries } = (await admin("GET", `/customers/${id}/ledger`)).body as { entries: { kind: string; amount_exact_cents: string; grant_id: string | null }[] };
    expect(entries.filter((e) => e.kind === "void").map((e) => [e.amount_exact_cents, e.grant_id])).toEqual([
      ["-990", grant.id],
      ["0", grant.id],
    ]);
    expect(await balance(id)).toMatchObject({ available_exact_cents: "0", ledger_sum_exact_cents: "0" });
    // The refund finds 990 of the top-up already voided: it takes back the 10 cents used, not 1,000.
    doubles.stripe.refundCharge(pi);
    await deliverAll(doubles.stripe);
    expect(await balance(id)).toMatchObject({ available_exact_cents: "-10", debt_exact_cents: "10", ledger_sum_exact_cents: "-10" });
    await settleWithStripe(doubles, id);
    expect(doubles.stripe.balanceOf(id)).toBe(10);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: -10_000_000, ledgerSumMicros: -10_000_000 });
  });

  it("a refunded request whose grant expired meanwhile books that part as the grant's expiry, and the balance stays exact", async () => {
    connect();
    const id = uniqueId("cus_exp");
    const stub = customerStub(id);
    await stub.upsertProfile(id, { name: "Expiring" });
    const key = (await stub.createKey(null))!.key;
    const soon = Math.floor(Date.now() / 1000) + 2;
    expect((await stub.grant({ customerId: id, amountCents: 5, reason: "short-lived", expiresAt: soon })).status).toBe("created");
    const charged = await stub.authorize({ keyHash: await sha256Hex(key), meter: "api_requests", priceMicros: 1_000_000, requestId: "req_exp" });
    expect(charged).toMatchObject({ outcome: "ok", chargedMicros: 1_000_000 });
    // The grant expires and is closed (4 cents out); then the request is refunded.
    await runInDurableObject(stub, (instance: CustomerAccount) =>
      expireGrants((instance as unknown as { context: Parameters<typeof expireGrants>[0] }).context, (soon + 1) * 1000),
    );
    const refund = await stub.refund({ requestId: "req_exp", now: (soon + 1) * 1000 });
    expect(refund).toMatchObject({ refunded: true, restoredMicros: 0 });
    const { entries } = (await admin("GET", `/customers/${id}/ledger`)).body as { entries: { kind: string; amount_exact_cents: string }[] };
    expect(
      entries
        .filter((e) => e.kind === "expiry")
        .map((e) => e.amount_exact_cents)
        .sort(),
    ).toEqual(["-1", "-4"]);
    const usage = (await admin("GET", `/customers/${id}/usage?hours=24`)).body;
    expect(usage.totals.last_24h.find((m: { meter: string }) => m.meter === "api_requests")).toMatchObject({ requests: 0, charged_exact_cents: "0" });
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 0, ledgerSumMicros: 0 });
  });

  it("a refund and then a lost dispute on one top-up take back at most the top-up", async () => {
    const doubles = connect();
    const { id, key } = await stripeCustomer(doubles);
    const pi = await topUp(doubles, key, 500);
    await spend(key, 100);
    doubles.stripe.refundCharge(pi, 300);
    await deliverAll(doubles.stripe);
    expect(await balance(id)).toMatchObject({ available_exact_cents: "100", debt_exact_cents: "0" });
    const dispute = doubles.stripe.createDispute(pi, 500);
    doubles.stripe.closeDispute(dispute.id, "lost");
    await deliverAll(doubles.stripe);
    // 300 refunded + 200 of the dispute = the 500 paid; what was spent (100) is owed.
    expect(await balance(id)).toMatchObject({ available_exact_cents: "-100", debt_exact_cents: "100", frozen_cents: 0 });
    await settleWithStripe(doubles, id);
    expect(doubles.stripe.balanceOf(id)).toBe(100);
  });
});

describe("expiry and voids reach Stripe", () => {
  it("expired credit is posted to Stripe as a balance transaction, so both sides keep agreeing", async () => {
    const doubles = connect();
    const { id, key } = await stripeCustomer(doubles);
    const expiresAt = Math.floor(Date.now() / 1000) + 3_600;
    expect((await admin("POST", `/customers/${id}/grants`, { amount: 40, expires_at: expiresAt, reason: "trial" })).status).toBe(201);
    await spend(key, 5);
    await settleWithStripe(doubles, id);
    await settleWithStripe(doubles, id, expiresAt * 1000 + 60_000);
    const expiry = doubles.stripe.balanceTransactions(id).find((t) => String(t.metadata?.payg_report).startsWith("payg_expiry"));
    expect(expiry).toMatchObject({ amount: 35, description: "Credit expired" });
    expect(doubles.stripe.balanceOf(id)).toBe(0);
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: 0, ledgerSumMicros: 0 });
  });
});

describe("plan switches keep every cent", () => {
  it("an admin grant to a post-paid customer is pushed to Stripe and survives the switch back to prepaid", async () => {
    const doubles = connect();
    const { id, key } = await stripeCustomer(doubles, { metadata: { payg_plan: "postpaid" } });
    expect((await admin("POST", `/customers/${id}/credits`, { amount: 70, reason: "goodwill" })).status).toBe(201);
    expect(doubles.stripe.balanceOf(id)).toBe(-70);
    expect((await admin("PUT", `/customers/${id}`, { plan: "prepaid" })).status).toBe(200);
    await settleWithStripe(doubles, id, Date.now() + 60_000);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(70_000_000);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
  });

  it("a refund of a prepaid-era charge after a switch goes back to the prepaid side", async () => {
    const doubles = connect();
    const { id, key } = await stripeCustomer(doubles, { balance: -20 });
    const stub = customerStub(id);
    const { sha256Hex } = await import("../../../src/lib/api-key-format");
    const charge = await stub.authorize({ keyHash: await sha256Hex(key), meter: "api_requests", priceMicros: 1_000_000, requestId: "req_prepaid_era" });
    expect(charge.outcome).toBe("ok");
    expect((await admin("PUT", `/customers/${id}`, { plan: "postpaid" })).status).toBe(200);
    expect(await stub.refund({ requestId: "req_prepaid_era" })).toMatchObject({ refunded: true });
    expect(await stub.balanceCheck()).toMatchObject({ pendingUsageMicros: 0, balanceMicros: 20_000_000 });
    await settleWithStripe(doubles, id);
    expect(doubles.stripe.meterUsage(id)).toBe(0);
    expect(doubles.stripe.balanceOf(id)).toBe(-20);
  });

  it("removing payg_plan or payg_minimum_balance_cents from Stripe metadata clears the override", async () => {
    const doubles = connect();
    const { id } = await stripeCustomer(doubles, { metadata: { payg_plan: "postpaid", payg_minimum_balance_cents: "-300" } });
    expect((await admin("GET", `/customers/${id}`)).body.customer).toMatchObject({ plan: "postpaid", minimum_balance_cents: -300 });
    const cleared = await doubles.stripe.handle(
      new Request(`https://stripe.test/v1/customers/${id}`, {
        method: "POST",
        headers: { authorization: "Bearer sk_test_x", "content-type": "application/x-www-form-urlencoded" },
        body: "metadata[payg_plan]=&metadata[payg_minimum_balance_cents]=",
      }),
    );
    expect(cleared.status).toBe(200);
    const event = doubles.stripe.takeEvents().find((e) => e.type === "customer.updated") as Stripe.Event;
    expect((await deliver(doubles.stripe, event)).status).toBe(200);
    expect((await admin("GET", `/customers/${id}`)).body.customer).toMatchObject({ plan: "prepaid", minimum_balance_cents: null });
  });
});
