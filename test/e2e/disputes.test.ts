import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { StripeDouble } from "../doubles/stripe-double";
import { type Gateway, serveHandler, startGateway, stripeWebhooks } from "./harness";

// Credit under an open dispute is never spent, end to end: a stream's hold has part of a top-up
// when the dispute opens; what the hold gives back when the stream ends stays frozen. Against the
// real `wrangler dev` and the Stripe double served over HTTP.
const stripe = new StripeDouble({ webhookSecret: "whsec_e2e_disputes" });
const PRICING = {
  currency: "usd",
  default_price_cents: "1",
  meters: [{ name: "events", path: "/v1/stream", price_cents: "1", units: "sse:events", hold_units: 8 }],
};
let gateway: Gateway;
let hooks: ReturnType<typeof stripeWebhooks>;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const origin = await startDemoOrigin({ port: 0 });
  const stripeServer = await serveHandler((r) => stripe.handle(r));
  closers.push(origin.close, stripeServer.close);
  gateway = await startGateway({
    vars: { ORIGIN_URL: origin.url, STRIPE_API_BASE: stripeServer.url, PRICING: JSON.stringify(PRICING) },
    secrets: { STRIPE_SECRET_KEY: "sk_test_e2e_disputes", STRIPE_WEBHOOK_SECRET: "whsec_e2e_disputes" },
  });
  hooks = stripeWebhooks(gateway, stripe);
});
afterAll(async () => {
  await gateway?.stop();
  for (const close of closers) await close();
});

const balance = async (id: string) => (await gateway.admin("GET", `/customers/${id}`)).body.balance;
const get = (key: string, path = "/v1/data") => gateway.fetch(path, { headers: { authorization: `Bearer ${key}` } });

describe("disputed credit is never spendable (end to end)", () => {
  it("a dispute opened while a stream holds part of the top-up: what the hold gives back stays frozen (402) until the dispute is won", async () => {
    const customer = stripe.createCustomer({ name: "Stream Disputer", email: "stream.disputer@example.com" });
    await hooks.deliverAll();
    const key = (await gateway.admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
    const checkout = await gateway.fetch("/billing/checkout", {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ amount_cents: 500 }),
    });
    expect(checkout.status).toBe(201);
    const session = stripe.completeCheckout(((await checkout.json()) as { id: string }).id);
    await hooks.deliverAll();

    // The stream holds 8 cents; it will send 3 events, one a second.
    const stream = await get(key, "/v1/stream?events=3&interval_ms=1000");
    expect(stream.status).toBe(200);
    const dispute = stripe.createDispute(session.payment_intent as string);
    await hooks.deliverAll();
    expect(await balance(customer.id)).toMatchObject({ available_exact_cents: "0", frozen_cents: 492 });
    expect((await stream.text()).match(/^id: /gm)).toHaveLength(3);
    for (let i = 0; i < 100 && (await balance(customer.id)).total_exact_cents !== "497"; i++) await new Promise((r) => setTimeout(r, 50));
    // The 5 unused cents came back into the disputed top-up: frozen with the rest.
    expect(await balance(customer.id)).toMatchObject({ total_exact_cents: "497", available_exact_cents: "0", frozen_cents: 497 });
    expect((await get(key)).status).toBe(402);

    stripe.closeDispute(dispute.id, "won");
    await hooks.deliverAll();
    expect(await balance(customer.id)).toMatchObject({ available_exact_cents: "497", frozen_cents: 0 });
    expect((await get(key)).status).toBe(200);
  });
});
