import type Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { verifyWebhook } from "../../src/verify/payg-signature";
import { MailChannelsDouble } from "../doubles/mailchannels-double";
import { StripeDouble } from "../doubles/stripe-double";
import { serveHandler, startGateway, type Gateway } from "./harness";

// Auto top-up against the real `wrangler dev`: the customer object's own alarm creates the
// PaymentIntent at the Stripe double (served over HTTP on loopback), Stripe's webhooks come back
// signed, emails go to the MailChannels double and signed webhooks to a receiver.
const stripe = new StripeDouble({ webhookSecret: "whsec_e2e_auto" });
const mail = new MailChannelsDouble({ apiKey: "mc_e2e_auto" });
const received: { raw: string; signature: string | null; event: { id: string; type: string; data: Record<string, any> } }[] = [];
let gateway: Gateway;
let endpointSecret = "";
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const origin = await startDemoOrigin({ port: 0 });
  const stripeServer = await serveHandler((r) => stripe.handle(r));
  const mailServer = await serveHandler((r) => mail.handle(r));
  const hooks = await serveHandler(async (request) => {
    const raw = await request.text();
    received.push({ raw, signature: request.headers.get("x-payg-signature"), event: JSON.parse(raw) });
    return new Response(null, { status: 204 });
  });
  closers.push(origin.close, stripeServer.close, mailServer.close, hooks.close);
  gateway = await startGateway({
    vars: { ORIGIN_URL: origin.url, STRIPE_API_BASE: stripeServer.url, MAILCHANNELS_API_BASE: mailServer.url, ALLOW_INSECURE_WEBHOOKS: "true" },
    secrets: { STRIPE_SECRET_KEY: "sk_test_e2e", STRIPE_WEBHOOK_SECRET: "whsec_e2e_auto", MAILCHANNELS_API_KEY: "mc_e2e_auto" },
  });
  const endpoint = await gateway.admin("POST", "/webhook-endpoints", { url: `${hooks.url}/hooks`, events: ["topup.succeeded", "topup.failed"] });
  expect(endpoint.status).toBe(201);
  endpointSecret = endpoint.body.secret;
});
afterAll(async () => {
  await gateway?.stop();
  for (const close of closers) await close();
});

async function until<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function deliver(event: Stripe.Event) {
  const { body, signature } = await stripe.sign(event);
  const response = await gateway.fetch("/webhooks/stripe", { method: "POST", headers: { "stripe-signature": signature }, body });
  return { status: response.status, body: (await response.json()) as { status: string } };
}

async function deliverAll() {
  for (const event of stripe.takeEvents()) expect((await deliver(event)).status).toBe(200);
}

async function customer(name: string, cents: number, card: string, settings: Record<string, number>) {
  const email = `${name.toLowerCase()}-${Date.now()}@example.com`;
  const c = stripe.createCustomer({ email, name, balance: -cents, paymentMethod: card, defaultPaymentMethod: true });
  await deliverAll();
  await until(() => gateway.admin("GET", `/customers/${c.id}`), (r) => r.status === 200 && r.body.balance.available_cents === cents, "the customer's credit");
  const key = (await gateway.admin("POST", `/customers/${c.id}/keys`, {})).body.key as string;
  expect((await gateway.admin("PUT", `/customers/${c.id}`, { auto_topup: settings })).status).toBe(200);
  return { id: c.id, key, email };
}

const spend = async (key: string, n: number) =>
  (await Promise.all(Array.from({ length: n }, () => gateway.fetch("/v1/data", { headers: { authorization: `Bearer ${key}` } }).then((r) => r.status)))).filter((s) => s === 200).length;
const creates = (id: string) => stripe.requests.filter((r) => r.method === "POST" && r.path === "/v1/payment_intents" && r.params.customer === id);
const topUps = (id: string) => gateway.admin("GET", `/customers/${id}/auto-top-up`).then((r) => r.body);
const settled = (id: string, n: number) =>
  until(() => topUps(id), (b) => b.topups.length === n && b.topups.every((t: { status: string }) => t.status !== "pending"), `${n} settled top-ups`);

describe("auto top-up against wrangler dev", () => {
  it("50 parallel requests crossing the threshold create exactly one PaymentIntent; its webhook credits it once", async () => {
    const { id, key } = await customer("Ada", 100, "pm_card_visa", { threshold_cents: 80, amount_cents: 500, monthly_cap_cents: 2000 });
    expect(await spend(key, 50)).toBe(50);
    const state = await settled(id, 1);
    expect(creates(id)).toHaveLength(1);
    expect(creates(id)[0]!.idempotencyKey).toBe(`payg_auto_topup_${id}_${state.topups[0].id}`);
    expect(state.topups[0]).toMatchObject({ status: "succeeded", amount_cents: 500 });
    const succeeded = stripe.events.find((e) => e.type === "payment_intent.succeeded" && (e.data.object as Stripe.PaymentIntent).customer === id)!;
    expect((await deliver(succeeded)).body.status).toBe("applied");
    expect((await deliver(succeeded)).body.status).toBe("duplicate");
    const summary = (await gateway.admin("GET", `/customers/${id}`)).body;
    expect(summary.balance).toMatchObject({ available_cents: 550, ledger_sum_exact_cents: "550" });
    expect(summary.grants.filter((g: { source: string }) => g.source === "auto_topup")).toEqual([
      expect.objectContaining({ amount_cents: 500, payment_intent: (succeeded.data.object as Stripe.PaymentIntent).id }),
    ]);
    const events = await until(async () => received.filter((r) => r.event.data.customer_id === id), (r) => r.length >= 1, "topup.succeeded");
    expect(events.map((r) => r.event.type)).toEqual(["topup.succeeded"]);
    expect((await verifyWebhook(events[0]!.raw, events[0]!.signature, endpointSecret)).ok).toBe(true);
  });

  it("a declined card pauses auto top-up: topup.failed and one email, and the card is not tried again", async () => {
    const { id, key, email } = await customer("Grace", 100, "pm_card_chargeCustomerFail", { threshold_cents: 80, amount_cents: 500, monthly_cap_cents: 2000 });
    expect(await spend(key, 25)).toBe(25);
    const state = await settled(id, 1);
    expect(state.auto_topup).toMatchObject({ state: "paused", paused_reason: "card_declined" });
    for (const event of stripe.takeEvents()) await deliver(event);
    expect(await spend(key, 10)).toBe(10);
    await new Promise((r) => setTimeout(r, 500));
    expect(creates(id)).toHaveLength(1);
    const failed = await until(async () => received.filter((r) => r.event.data.customer_id === id), (r) => r.length >= 1, "topup.failed");
    expect(failed.map((r) => [r.event.type, r.event.data.reason])).toEqual([["topup.failed", "card_declined"]]);

    await gateway.untilDue(id);
    await gateway.scheduled();
    await gateway.scheduled(Date.now() + 3 * 3_600_000);
    const sent = mail.sentTo(email).filter((m) => m.subject === "Your automatic top-up failed");
    expect(sent).toHaveLength(1);
    expect(sent[0]!.text).toContain("/portal");
  });

  it("the monthly cap stops the third top-up of the month", async () => {
    const { id, key } = await customer("Alan", 100, "pm_card_visa", { threshold_cents: 80, amount_cents: 500, monthly_cap_cents: 1000 });
    expect(await spend(key, 21)).toBe(21);
    await settled(id, 1);
    expect(await spend(key, 500)).toBe(500);
    await settled(id, 2);
    expect(await spend(key, 500)).toBe(500);
    await new Promise((r) => setTimeout(r, 500));
    expect(creates(id)).toHaveLength(2);
    const summary = (await gateway.admin("GET", `/customers/${id}`)).body;
    expect(summary.balance.available_cents).toBe(79);
    expect(summary.auto_topup).toMatchObject({ state: "capped", month_total_cents: 1000 });
    expect(summary.cohorts.current.map((c: { cohort: string }) => c.cohort)).toContain("auto_topup_capped");
  });
});
