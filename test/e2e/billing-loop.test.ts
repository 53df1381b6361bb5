import type Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { MailChannelsDouble } from "../doubles/mailchannels-double";
import { StripeDouble } from "../doubles/stripe-double";
import { type Gateway, serveHandler, startGateway, stripeWebhooks } from "./harness";

// The whole loop against the real `wrangler dev --test-scheduled`, with Stripe and MailChannels
// replaced by test doubles served over HTTP on loopback.
const stripe = new StripeDouble({ webhookSecret: "whsec_e2e" });
const mail = new MailChannelsDouble({ apiKey: "mc_e2e" });
let gateway: Gateway;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const origin = await startDemoOrigin({ port: 0 });
  const stripeServer = await serveHandler((r) => stripe.handle(r));
  const mailServer = await serveHandler((r) => mail.handle(r));
  closers.push(origin.close, stripeServer.close, mailServer.close);
  gateway = await startGateway({
    vars: { ORIGIN_URL: origin.url, STRIPE_API_BASE: stripeServer.url, MAILCHANNELS_API_BASE: mailServer.url },
    secrets: { STRIPE_SECRET_KEY: "sk_test_e2e", STRIPE_WEBHOOK_SECRET: "whsec_e2e", MAILCHANNELS_API_KEY: "mc_e2e" },
  });
});
afterAll(async () => {
  await gateway?.stop();
  for (const close of closers) await close();
});

const deliver = (event: Stripe.Event) => stripeWebhooks(gateway, stripe).deliver(event);
const deliverAll = () => stripeWebhooks(gateway, stripe).deliverAll();
const get = (key: string, path = "/v1/data") => gateway.fetch(path, { headers: { authorization: `Bearer ${key}` } });

describe("the tutorial's walk-through, end to end", () => {
  it("credit given in Stripe → 200; taken away leaving 0 → 402; usage reported once by the cron", async () => {
    const customer = stripe.createCustomer({ name: "Alan Turing", email: "alan@example.com" });
    await deliverAll();
    const key = (await gateway.admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
    expect((await get(key)).status).toBe(402);

    stripe.adjustBalance(customer.id, -300, "Give credit");
    await deliverAll();
    expect((await get(key)).status).toBe(200);
    expect((await get(key)).status).toBe(200);

    stripe.adjustBalance(customer.id, 300, "Take it away");
    expect(stripe.balanceOf(customer.id)).toBe(0);
    await deliverAll();
    const refused = await get(key);
    expect(refused.status).toBe(402);
    expect(await refused.json()).toMatchObject({ code: "insufficient_credit", customer_id: customer.id });

    await gateway.untilDue(customer.id);
    await gateway.scheduled();
    await gateway.scheduled(Date.now() + 1000);
    const debits = stripe.balanceTransactions(customer.id).filter((t) => String(t.metadata?.payg_report).startsWith("payg_usage"));
    expect(debits.map((t) => t.amount)).toEqual([2]);
    await deliverAll();
    const summary = await gateway.admin("GET", `/customers/${customer.id}`);
    expect(summary.body.balance.available_exact_cents).toBe("-2");
    expect(summary.body.stripe.last_known_stripe_balance).toBe(2);
  });

  it("a Checkout top-up unblocks the first request after its webhook is acknowledged", async () => {
    const customer = stripe.createCustomer({ name: "Barbara Liskov", email: "barbara@example.com" });
    await deliverAll();
    const key = (await gateway.admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
    const checkout = await gateway.fetch("/billing/checkout", {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ amount_cents: 500 }),
    });
    expect(checkout.status).toBe(201);
    const session = (await checkout.json()) as { id: string; url: string };
    stripe.completeCheckout(session.id);
    const [completed] = stripe.takeEvents();
    expect((await deliver(completed!)).status).toBe(200);
    expect((await get(key)).status).toBe(200);
    expect((await deliver(completed!)).body).toMatchObject({ status: "duplicate" });
    expect(stripe.balanceOf(customer.id)).toBe(-500);
  });
});

describe("behavioral emails through MailChannels, end to end", () => {
  it("Ada: one low-balance warning on the way down, one email on running out, again after the wait, none after a top-up", async () => {
    const ada = stripe.createCustomer({ name: "Ada Lovelace", email: "ada@example.com", balance: -101 });
    await deliverAll();
    const key = (await gateway.admin("POST", `/customers/${ada.id}/keys`, {})).body.key as string;
    const t0 = Date.now();

    expect((await get(key)).status).toBe(200); // 100 left: not low yet
    expect((await get(key)).status).toBe(200); // 99 left: low
    await gateway.untilDue(ada.id);
    await gateway.scheduled(t0 + 1000);
    expect(mail.sentTo("ada@example.com").map((m) => m.subject)).toEqual(["Your API credit is running low"]);

    for (let i = 0; i < 99; i++) expect((await get(key)).status).toBe(200);
    expect((await get(key)).status).toBe(402);
    await gateway.untilDue(ada.id);
    // Not before she ran out: 100 requests can take longer than 2 s on a busy machine.
    await gateway.scheduled(Math.max(t0 + 2000, Date.now()));
    const outOfCredit = mail.sentTo("ada@example.com").filter((m) => m.subject === "You're out of API credit");
    expect(outOfCredit).toHaveLength(1);
    expect(outOfCredit[0]!.text).toMatch(/^Hi Ada,/);
    expect(outOfCredit[0]!.html).toContain("<p>Hi Ada,</p>");

    await gateway.scheduled(t0 + 30 * 60_000); // within the hour: nothing
    expect(mail.sentTo("ada@example.com")).toHaveLength(2);
    await gateway.scheduled(t0 + 62 * 60_000); // past the re-enrollment wait: one more
    expect(mail.sentTo("ada@example.com").filter((m) => m.subject === "You're out of API credit")).toHaveLength(2);

    stripe.adjustBalance(ada.id, -1000, "Top-up");
    await deliverAll();
    expect((await get(key)).status).toBe(200);
    await gateway.scheduled(t0 + 3 * 3_600_000);
    await gateway.scheduled(t0 + 5 * 3_600_000);
    expect(mail.sentTo("ada@example.com")).toHaveLength(3);
    expect(mail.sentTo("ada@example.com").filter((m) => m.subject === "Your API credit is running low")).toHaveLength(1);

    const emails = await gateway.admin("GET", `/customers/${ada.id}/emails`);
    expect(emails.body.emails.map((e: { status: string }) => e.status)).toEqual(["sent", "sent", "sent"]);
  });
});
