import { describe, expect, it } from "vitest";
import { admin, customerStub, gateway, gatewayWith, withKey } from "../helpers";
import { connect, deliverAll } from "./doubles";

const HOUR_MS = 3_600_000;

async function stripeCustomer(stripe: ReturnType<typeof connect>["stripe"]) {
  const customer = stripe.createCustomer({ email: "ada@example.com", name: "Ada Lovelace" });
  await deliverAll(stripe);
  const key = await admin("POST", `/customers/${customer.id}/keys`, {});
  expect(key.status).toBe(201);
  return { id: customer.id, key: key.body.key as string };
}

const checkout = (key: string) => withKey(key, { method: "POST", body: '{"amount_cents":1000}' });
const sessionsOf = (stripe: ReturnType<typeof connect>["stripe"]) => stripe.requests.filter((r) => r.method === "POST" && r.path === "/v1/checkout/sessions");

describe("POST /billing/checkout is limited per customer (happy)", () => {
  it("opens the default 10 sessions an hour", async () => {
    const { stripe } = connect();
    const { key } = await stripeCustomer(stripe);
    for (let i = 0; i < 10; i++) expect((await gateway("/billing/checkout", checkout(key))).status).toBe(201);
    expect(sessionsOf(stripe)).toHaveLength(10);
  });
});

describe("POST /billing/checkout is limited per customer (error)", () => {
  it("answers the 11th within the hour with 429 rate_limited and Retry-After, without calling Stripe", async () => {
    const { stripe } = connect();
    const { key } = await stripeCustomer(stripe);
    const other = await stripeCustomer(stripe);
    for (let i = 0; i < 10; i++) expect((await gateway("/billing/checkout", checkout(key))).status).toBe(201);
    const limited = await gateway("/billing/checkout", checkout(key));
    expect(limited.status).toBe(429);
    const retryAfter = Number(limited.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThan(3500);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    expect(((await limited.json()) as any).error).toMatchObject({ code: "rate_limited", requestId: expect.any(String) });
    expect(sessionsOf(stripe)).toHaveLength(10);
    // Another customer has its own allowance.
    expect((await gateway("/billing/checkout", checkout(other.key))).status).toBe(201);
  });

  it("follows GOVERNANCE.checkout_limit_per_hour, and counts only sessions that reach Stripe", async () => {
    const { stripe } = connect();
    const { key } = await stripeCustomer(stripe);
    const governance = { GOVERNANCE: { checkout_limit_per_hour: 2 } };
    expect((await gatewayWith(governance, "/billing/checkout", withKey(key, { method: "POST", body: '{"amount_cents":1}' }))).status).toBe(400);
    expect((await gatewayWith(governance, "/billing/checkout", checkout(key))).status).toBe(201);
    expect((await gatewayWith(governance, "/billing/checkout", checkout(key))).status).toBe(201);
    expect((await gatewayWith(governance, "/billing/checkout", checkout(key))).status).toBe(429);
    expect(sessionsOf(stripe)).toHaveLength(2);
  });

  it("counts a rolling hour: a slot frees an hour after it was taken", async () => {
    const { stripe } = connect();
    const { id } = await stripeCustomer(stripe);
    const stub = customerStub(id);
    const t0 = Date.now();
    expect(await stub.takeCheckoutSlot({ limit: 2, amountCents: 1000, now: t0 })).toEqual({ ok: true });
    expect(await stub.takeCheckoutSlot({ limit: 2, amountCents: 1000, now: t0 + 60_000 })).toEqual({ ok: true });
    expect(await stub.takeCheckoutSlot({ limit: 2, amountCents: 1000, now: t0 + 120_000 })).toEqual({ ok: false, retryAfterSeconds: 3480 });
    expect(await stub.takeCheckoutSlot({ limit: 2, amountCents: 1000, now: t0 + HOUR_MS })).toEqual({ ok: true });
    expect(await stub.takeCheckoutSlot({ limit: 2, amountCents: 1000, now: t0 + HOUR_MS + 1 })).toEqual({ ok: false, retryAfterSeconds: 60 });
  });
});

describe("a top-up and the largest balance the gateway holds ($10,000,000)", () => {
  const grant = (id: string, amount: number) => admin("POST", `/customers/${id}/credits`, { amount, reason: "large account" });

  it("opens no Checkout session for a top-up past it (409, no Stripe call); one opened while it fitted is credited in full once paid", async () => {
    const { stripe } = connect();
    const { id, key } = await stripeCustomer(stripe);
    for (let i = 0; i < 9; i++) expect((await grant(id, 99_999_999)).status).toBe(201);
    const opened = await gateway("/billing/checkout", checkout(key));
    expect(opened.status).toBe(201);
    const sessionId = ((await opened.json()) as { id: string }).id;
    // Meanwhile the balance reaches 999,999,990 cents: a grant of 11 more is refused, and so is a new top-up.
    expect((await grant(id, 99_999_999)).status).toBe(201);
    expect((await grant(id, 11)).status).toBe(409);
    const refused = await gateway("/billing/checkout", checkout(key));
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as any).error).toMatchObject({ code: "conflict", message: expect.stringContaining("largest balance") });
    expect(sessionsOf(stripe)).toHaveLength(1);
    // The customer paid for the session opened before: that money becomes credit, past the limit or not.
    stripe.completeCheckout(sessionId);
    await deliverAll(stripe);
    const { balance } = (await admin("GET", `/customers/${id}`)).body;
    expect(balance).toMatchObject({ available_cents: 1_000_000_990, ledger_sum_exact_cents: "1000000990" });
    const ledger = (await admin("GET", `/customers/${id}/ledger`)).body;
    expect(JSON.stringify(ledger)).toContain(`Stripe Checkout ${sessionId}`);
  });
});
