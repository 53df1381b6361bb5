import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { StripeDouble } from "../doubles/stripe-double";
import { type Gateway, serveHandler, startGateway, stripeWebhooks } from "./harness";

// End to end: Checkout top-ups are paid grants that refunds and disputes take back,
// against the real `wrangler dev --test-scheduled` and the Stripe double served over HTTP.
const stripe = new StripeDouble({ webhookSecret: "whsec_e2e_grants" });
let gateway: Gateway;
let hooks: ReturnType<typeof stripeWebhooks>;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const origin = await startDemoOrigin({ port: 0 });
  const stripeServer = await serveHandler((r) => stripe.handle(r));
  closers.push(origin.close, stripeServer.close);
  gateway = await startGateway({
    vars: { ORIGIN_URL: origin.url, STRIPE_API_BASE: stripeServer.url },
    secrets: { STRIPE_SECRET_KEY: "sk_test_e2e_grants", STRIPE_WEBHOOK_SECRET: "whsec_e2e_grants" },
  });
  hooks = stripeWebhooks(gateway, stripe);
});
afterAll(async () => {
  await gateway?.stop();
  for (const close of closers) await close();
});

async function stripeCustomer(name: string) {
  const customer = stripe.createCustomer({ name, email: `${name.toLowerCase().replace(/\W+/g, ".")}@example.com` });
  await hooks.deliverAll();
  const key = (await gateway.admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
  return { id: customer.id, key };
}

const get = (key: string) => gateway.fetch("/v1/data", { headers: { authorization: `Bearer ${key}` } });

/** A Checkout top-up, paid and its webhook delivered; returns its PaymentIntent. */
async function topUp(key: string, cents: number): Promise<string> {
  const checkout = await gateway.fetch("/billing/checkout", {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ amount_cents: cents }),
  });
  expect(checkout.status).toBe(201);
  const session = stripe.completeCheckout(((await checkout.json()) as { id: string }).id);
  await hooks.deliverAll();
  return session.payment_intent as string;
}

async function spend(key: string, n: number) {
  for (let i = 0; i < n; i++) expect((await get(key)).status).toBe(200);
}

const balance = async (id: string) => (await gateway.admin("GET", `/customers/${id}`)).body.balance;

/** The cron reports what is left, then Stripe's balance must be the edge's (Stripe counts credit negative). */
async function expectStripeAgrees(id: string) {
  await gateway.untilReported(id);
  await hooks.deliverAll();
  const summary = (await gateway.admin("GET", `/customers/${id}`)).body;
  expect(summary.stripe.report_totals.filter((r: { status: string }) => r.status !== "sent")).toEqual([]);
  const edgeCents = Number(summary.balance.available_exact_cents);
  expect(Number.isInteger(edgeCents)).toBe(true);
  expect(stripe.balanceOf(id)).toBe(-edgeCents);
  expect(summary.stripe.last_known_stripe_balance).toBe(-edgeCents);
}

describe("top-ups, refunds and disputes end to end", () => {
  it("a Checkout top-up, partly spent, then fully refunded: the customer is refused, owes what it spent, and Stripe agrees", async () => {
    const { id, key } = await stripeCustomer("Refund Rita");
    expect((await get(key)).status).toBe(402);
    const pi = await topUp(key, 500);
    expect(await balance(id)).toMatchObject({ available_exact_cents: "500", debt_exact_cents: "0" });
    await spend(key, 3);

    stripe.refundCharge(pi);
    await hooks.deliverAll();
    expect(await balance(id)).toMatchObject({ available_exact_cents: "-3", debt_exact_cents: "3", ledger_sum_exact_cents: "-3" });
    const refused = await get(key);
    expect(refused.status).toBe(402);
    expect(await refused.json()).toMatchObject({ code: "insufficient_credit", customer_id: id });

    // +500 top-up credit, 3 cents of usage, 500 taken back: the customer owes 3 cents.
    await expectStripeAgrees(id);
    expect(stripe.balanceOf(id)).toBe(3);
  });

  it("a dispute won releases the frozen credit; a dispute lost on another top-up takes it back; Stripe agrees", async () => {
    const { id, key } = await stripeCustomer("Dispute Dan");
    const won = await topUp(key, 500);
    const lost = await topUp(key, 700);
    // The oldest top-up drains first.
    await spend(key, 10);
    expect(await balance(id)).toMatchObject({ available_exact_cents: "1190" });

    const first = stripe.createDispute(won);
    await hooks.deliverAll();
    // What is left of the disputed top-up is frozen; the other top-up stays spendable.
    expect(await balance(id)).toMatchObject({ available_exact_cents: "700", frozen_cents: 490, total_exact_cents: "1190" });
    expect((await get(key)).status).toBe(200);
    stripe.closeDispute(first.id, "won");
    await hooks.deliverAll();
    expect(await balance(id)).toMatchObject({ available_exact_cents: "1189", frozen_cents: 0 });

    // That request was paid by the second top-up: 699 of it is left to freeze.
    const second = stripe.createDispute(lost);
    await hooks.deliverAll();
    expect(await balance(id)).toMatchObject({ available_exact_cents: "490", frozen_cents: 699 });
    // Lost: all 700 disputed cents are taken back, the one already spent as debt.
    stripe.closeDispute(second.id, "lost");
    await hooks.deliverAll();
    expect(await balance(id)).toMatchObject({ available_exact_cents: "489", frozen_cents: 0, total_exact_cents: "489", debt_exact_cents: "1" });
    expect((await get(key)).status).toBe(200);

    // 500 + 700 of top-ups, 12 cents of usage, 700 lost: 488 cents of credit on both sides.
    await expectStripeAgrees(id);
    expect(stripe.balanceOf(id)).toBe(-488);
  });
});
