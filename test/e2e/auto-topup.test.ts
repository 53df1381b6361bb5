import type Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { verifyWebhook } from "../../src/verify/payg-signature";
import { MailChannelsDouble } from "../doubles/mailchannels-double";
import { StripeDouble } from "../doubles/stripe-double";
import { type Gateway, serveHandler, startGateway, stripeWebhooks, until } from "./harness";

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
  const endpoint = await gateway.admin("POST", "/webhook-endpoints", {
    url: `${hooks.url}/hooks`,
    events: ["topup.succeeded", "topup.failed", "auto_topup.paused", "auto_topup.updated"],
  });
  expect(endpoint.status).toBe(201);
  endpointSecret = endpoint.body.secret;
});
afterAll(async () => {
  await gateway?.stop();
  for (const close of closers) await close();
});

const deliver = (event: Stripe.Event) => stripeWebhooks(gateway, stripe).deliver(event);

async function deliverAll() {
  for (const event of stripe.takeEvents()) expect((await deliver(event)).status).toBe(200);
}

/**
 * A Stripe customer with `cents` of credit and a default card (never charged by auto top-up), a
 * key, and, with `card`, that card saved for auto top-up by a Checkout top-up (its 500 cents taken
 * off again). `declines`: the issuer declines the saved card from then on.
 */
async function customer(name: string, cents: number, card: string | null, settings: Record<string, number> | null, opts: { declines?: boolean } = {}) {
  const email = `${name.toLowerCase()}-${Date.now()}@example.com`;
  const c = stripe.createCustomer({ email, name, balance: -cents, paymentMethod: "pm_card_visa", defaultPaymentMethod: true });
  await deliverAll();
  await until(
    () => gateway.admin("GET", `/customers/${c.id}`),
    (r) => r.status === 200 && r.body.balance.available_cents === cents,
    "the customer's credit",
  );
  const key = (await gateway.admin("POST", `/customers/${c.id}/keys`, {})).body.key as string;
  let saved: { pm: string; paymentIntent: string } | null = null;
  if (card) {
    const response = await gateway.fetch("/billing/checkout", {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ amount_cents: 500, save_payment_method: true }),
    });
    expect(response.status).toBe(201);
    const session = stripe.completeCheckout(((await response.json()) as { id: string }).id, { paymentMethod: card });
    await deliverAll();
    const paymentIntent = session.payment_intent as string;
    saved = { pm: stripe.getPaymentIntent(paymentIntent)!.payment_method as string, paymentIntent };
    if (opts.declines) stripe.declineFromNowOn(saved.pm);
    await until(
      () => gateway.admin("GET", `/customers/${c.id}`),
      (r) => r.body.auto_topup === null && r.body.balance.available_cents === cents + 500,
      "the Checkout credit",
    );
    expect((await gateway.admin("POST", `/customers/${c.id}/credits`, { amount: -500, reason: "back to the starting credit" })).status).toBe(201);
  }
  if (settings) expect((await gateway.admin("PUT", `/customers/${c.id}`, { auto_topup: settings })).status).toBe(200);
  const defaultCard = stripe.getCustomer(c.id)!.invoice_settings.default_payment_method as string;
  return { id: c.id, key, email, card: saved, defaultCard };
}

const spend = async (key: string, n: number) =>
  (await Promise.all(Array.from({ length: n }, () => gateway.fetch("/v1/data", { headers: { authorization: `Bearer ${key}` } }).then((r) => r.status)))).filter((s) => s === 200)
    .length;
const creates = (id: string) => stripe.requests.filter((r) => r.method === "POST" && r.path === "/v1/payment_intents" && r.params.customer === id);
const topUps = (id: string) => gateway.admin("GET", `/customers/${id}/auto-top-up`).then((r) => r.body);
const state = async (id: string) => (await topUps(id)).auto_topup;
const pause = () => new Promise((r) => setTimeout(r, 1_000));
const settled = (id: string, n: number) =>
  until(
    () => topUps(id),
    (b) => b.topups.length === n && b.topups.every((t: { status: string }) => t.status !== "pending"),
    `${n} settled top-ups`,
  );

describe("auto top-up against wrangler dev", () => {
  it("50 parallel requests crossing the threshold create exactly one PaymentIntent; its webhook credits it once", async () => {
    const { id, key, card, defaultCard } = await customer("Ada", 100, "pm_card_visa", { threshold_cents: 80, amount_cents: 500, monthly_cap_cents: 2000 });
    expect(await spend(key, 50)).toBe(50);
    const done = await settled(id, 1);
    expect(creates(id)).toHaveLength(1);
    expect(creates(id)[0]!.idempotencyKey).toBe(`payg_auto_topup_${id}_${done.topups[0].id}`);
    // The card the Checkout top-up saved, never the default card.
    expect(creates(id)[0]!.params).toMatchObject({ payment_method: card!.pm, off_session: "true" });
    expect(card!.pm).not.toBe(defaultCard);
    expect(done.topups[0]).toMatchObject({ status: "succeeded", amount_cents: 500 });
    const succeeded = stripe.events.find(
      (e) => e.type === "payment_intent.succeeded" && (e.data.object as Stripe.PaymentIntent).metadata?.payg_auto_topup && (e.data.object as Stripe.PaymentIntent).customer === id,
    )!;
    expect((await deliver(succeeded)).body.status).toBe("applied");
    expect((await deliver(succeeded)).body.status).toBe("duplicate");
    const summary = (await gateway.admin("GET", `/customers/${id}`)).body;
    expect(summary.balance).toMatchObject({ available_cents: 550, ledger_sum_exact_cents: "550" });
    expect(summary.grants.filter((g: { source: string }) => g.source === "auto_topup")).toEqual([
      expect.objectContaining({ amount_cents: 500, payment_intent: (succeeded.data.object as Stripe.PaymentIntent).id }),
    ]);
    const events = await until(
      async () => received.filter((r) => r.event.data.customer_id === id && r.event.type.startsWith("topup.")),
      (r) => r.length >= 1,
      "topup.succeeded",
    );
    expect(events.map((r) => r.event.type)).toEqual(["topup.succeeded"]);
    expect((await verifyWebhook(events[0]!.raw, events[0]!.signature, endpointSecret)).ok).toBe(true);
  });

  it("a declined card pauses auto top-up: topup.failed and one email, and the card is not tried again", async () => {
    const { id, key, email } = await customer("Grace", 100, "pm_card_visa", { threshold_cents: 80, amount_cents: 500, monthly_cap_cents: 2000 }, { declines: true });
    expect(await spend(key, 25)).toBe(25);
    const done = await settled(id, 1);
    expect(done.auto_topup).toMatchObject({ state: "paused", paused_reason: "card_declined" });
    for (const event of stripe.takeEvents()) await deliver(event);
    expect(await spend(key, 10)).toBe(10);
    await new Promise((r) => setTimeout(r, 500));
    expect(creates(id)).toHaveLength(1);
    const failed = await until(
      async () => received.filter((r) => r.event.data.customer_id === id && r.event.type.startsWith("topup.")),
      (r) => r.length >= 1,
      "topup.failed",
    );
    expect(failed.map((r) => [r.event.type, r.event.data.reason])).toEqual([["topup.failed", "card_declined"]]);

    await gateway.untilDue(id);
    await gateway.scheduled();
    await gateway.scheduled(Date.now() + 3 * 3_600_000);
    const sent = mail.sentTo(email).filter((m) => m.subject === "Your automatic top-up failed");
    expect(sent).toHaveLength(1);
    expect(sent[0]!.text).toContain("/portal");
  });

  it("the monthly cap stops the next top-up of the month", async () => {
    const { id, key } = await customer("Alan", 100, "pm_card_visa", { threshold_cents: 80, amount_cents: 500, monthly_cap_cents: 500 });
    expect(await spend(key, 21)).toBe(21);
    await settled(id, 1);
    expect(await spend(key, 500)).toBe(500);
    await pause();
    expect(creates(id)).toHaveLength(1);
    const summary = (await gateway.admin("GET", `/customers/${id}`)).body;
    expect(summary.balance.available_cents).toBe(79);
    expect(summary.auto_topup).toMatchObject({ state: "capped", month_total_cents: 500 });
    expect(summary.cohorts.current.map((c: { cohort: string }) => c.cohort)).toContain("auto_topup_capped");
  });
});

// The review's findings, reproduced against wrangler dev: M3 (a refund or dispute of the auto
// top-up card's payment started another top-up on the same card) and M4 (threshold >= amount, or
// a debt larger than the amount, gave back-to-back off-session charges up to the monthly cap).
describe("auto top-up cannot drain a card (wrangler dev)", () => {
  const SETTINGS = { threshold_cents: 80, amount_cents: 500, monthly_cap_cents: 100_000 };
  const pausedEvents = (id: string) => received.filter((r) => r.event.data.customer_id === id && r.event.type === "auto_topup.paused");

  it("a refund of the auto top-up's payment starts no new top-up, though its clawback leaves the credit below the threshold; auto top-up pauses (refund)", async () => {
    const { id, key } = await customer("Rhea", 100, "pm_card_visa", SETTINGS);
    expect(await spend(key, 21)).toBe(21);
    const done = await settled(id, 1);
    stripe.refundCharge(done.topups[0].payment_intent);
    await deliverAll();
    await until(
      () => state(id),
      (s) => s.state === "paused",
      "the pause",
    );
    expect((await gateway.admin("GET", `/customers/${id}`)).body.balance.available_cents).toBe(79);
    expect(await spend(key, 5)).toBe(5);
    await pause();
    expect(creates(id)).toHaveLength(1);
    expect(await state(id)).toMatchObject({ paused_reason: "refund", paused_topup_id: null });
    const events = await until(
      async () => pausedEvents(id),
      (e) => e.length >= 1,
      "auto_topup.paused",
    );
    expect(events.map((r) => r.event.data)).toEqual([expect.objectContaining({ reason: "refund", topup_id: null })]);
  });

  it("a dispute of the auto top-up's payment starts no new top-up; auto top-up pauses (dispute)", async () => {
    const { id, key } = await customer("Dora", 100, "pm_card_visa", SETTINGS);
    expect(await spend(key, 21)).toBe(21);
    const done = await settled(id, 1);
    stripe.createDispute(done.topups[0].payment_intent);
    await deliverAll();
    await until(
      () => state(id),
      (s) => s.state === "paused",
      "the pause",
    );
    // The disputed credit is frozen: 79 cents are spendable, below the threshold.
    expect((await gateway.admin("GET", `/customers/${id}`)).body.balance.available_cents).toBe(79);
    expect(await spend(key, 5)).toBe(5);
    await pause();
    expect(creates(id)).toHaveLength(1);
    expect(await state(id)).toMatchObject({ paused_reason: "dispute" });
  });

  it("a threshold not below the amount is refused with 400 and changes nothing", async () => {
    const { id } = await customer("Theo", 100, "pm_card_visa", null);
    for (const threshold_cents of [500, 100_000]) {
      const refused = await gateway.admin("PUT", `/customers/${id}`, { auto_topup: { ...SETTINGS, threshold_cents } });
      expect(refused.status).toBe(400);
      expect(refused.body.error).toMatchObject({ code: "invalid_request", message: expect.stringContaining("amount_cents") });
    }
    expect(await state(id)).toBeNull();
  });

  it("a debt larger than the amount gets one top-up, then auto top-up pauses (below_threshold); set again, the next waits out the interval", async () => {
    const { id, key, email } = await customer("Debra", 100, "pm_card_visa", SETTINGS);
    expect((await gateway.admin("POST", `/customers/${id}/credits`, { amount: -2000, reason: "a debt larger than the amount" })).status).toBe(201);
    await until(
      () => state(id),
      (s) => s.state === "paused",
      "the pause",
    );
    await pause();
    expect(creates(id)).toHaveLength(1);
    expect(await state(id)).toMatchObject({ paused_reason: "below_threshold" });
    expect((await gateway.admin("GET", `/customers/${id}`)).body.balance.available_cents).toBe(-1400);
    expect(await spend(key, 3)).toBe(0);

    // Set again (the customer or the operator insists): still no charge within min_interval_seconds.
    for (let i = 0; i < 3; i++) expect((await gateway.admin("PUT", `/customers/${id}`, { auto_topup: SETTINGS })).status).toBe(200);
    expect((await gateway.admin("POST", `/customers/${id}/credits`, { amount: -10, reason: "more debt" })).status).toBe(201);
    await pause();
    expect(creates(id)).toHaveLength(1);
    expect(await state(id)).toMatchObject({ state: "waiting", today_count: 1, why: expect.stringContaining("min_interval_seconds") });
    // The customer was told: turned on, paused, turned on again (once: the same settings again change nothing).
    const notices = await until(
      async () => mail.sentTo(email).filter((m) => m.subject === "Your automatic top-up changed"),
      (m) => m.length >= 3,
      "the notices",
    );
    expect(notices.map((m) => m.text!.split("\n")[2])).toEqual([
      expect.stringContaining("was turned on"),
      expect.stringContaining("paused because a top-up left the credit still below the threshold"),
      expect.stringContaining("was turned on"),
    ]);
  });

  it("a customer with only a default card (none saved for auto top-up) is never charged off session", async () => {
    const { id, key, defaultCard } = await customer("Otto", 100, null, SETTINGS);
    expect(defaultCard).toMatch(/^pm_/);
    expect(await spend(key, 60)).toBe(60);
    expect((await gateway.admin("POST", `/customers/${id}/credits`, { amount: -1000, reason: "deep in debt" })).status).toBe(201);
    await pause();
    expect(creates(id)).toHaveLength(0);
    expect(await state(id)).toMatchObject({ state: "no_card", saved_payment_method: null });
  });
});
