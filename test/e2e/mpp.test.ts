import { Receipt } from "mppx";
import { Mppx, stripe as stripeMethod } from "mppx/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { StripeDouble } from "../doubles/stripe-double";
import { type Gateway, serveHandler, startGateway, stripeWebhooks, until } from "./harness";

// The Payment HTTP authentication scheme as an agent meets it: the real `wrangler dev` with Stripe
// (the Stripe double over HTTP on loopback) and mppx's own client (the scheme's reference SDK)
// paying the 402. Its `createToken` is the agent's wallet: it asks Stripe for a Shared Payment
// Token through the test helper Stripe documents for sellers
// (POST /v1/test_helpers/shared_payment/granted_tokens, docs.stripe.com/agentic-commerce/testing),
// limited to the challenge's amount, currency and expiry.
const stripe = new StripeDouble({ webhookSecret: "whsec_e2e_mpp" });
let gateway: Gateway;
let stripeUrl = "";
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const origin = await startDemoOrigin({ port: 0 });
  const stripeServer = await serveHandler((r) => stripe.handle(r));
  closers.push(origin.close, stripeServer.close);
  stripeUrl = stripeServer.url;
  const payments = { topup_cents: 500, mpp: { realm: "127.0.0.1", network_id: "profile_e2e_gateway" } };
  gateway = await startGateway({
    vars: { ORIGIN_URL: origin.url, STRIPE_API_BASE: stripeServer.url, ALLOW_INSECURE_WEBHOOKS: "true", PAYMENTS: JSON.stringify(payments) },
    secrets: { STRIPE_SECRET_KEY: "sk_test_e2e", STRIPE_WEBHOOK_SECRET: "whsec_e2e_mpp", KEY_SIGNING_SECRET: "e2e-key-signing-secret-0123456789abcdef" },
  });
});
afterAll(async () => {
  await gateway?.stop();
  for (const close of closers) await close();
});

/** The agent's wallet: a Shared Payment Token granted for its card, over Stripe's HTTP API. */
async function grantToken(input: { amount: string; currency: string; expiresAt: number; paymentMethod?: string | undefined }): Promise<string> {
  const body = new URLSearchParams({
    payment_method: input.paymentMethod ?? "pm_card_visa",
    "usage_limits[currency]": input.currency,
    "usage_limits[max_amount]": input.amount,
    "usage_limits[expires_at]": String(input.expiresAt),
  });
  const response = await fetch(`${stripeUrl}/v1/test_helpers/shared_payment/granted_tokens`, {
    method: "POST",
    headers: { authorization: "Bearer sk_test_e2e", "content-type": "application/x-www-form-urlencoded" },
    body,
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { id: string }).id;
}

describe("an agent with mppx's client against the gateway (happy)", () => {
  it("runs out of credit, pays the 402's Payment challenge with an spt_, is served with Payment-Receipt, charged once; a replayed credential charges nothing", async () => {
    const c = stripe.createCustomer({ email: "agent@example.com", name: "Agent Smith", balance: -1 });
    const webhooks = stripeWebhooks(gateway, stripe);
    await webhooks.deliverAll();
    await until(
      () => gateway.admin("GET", `/customers/${c.id}`),
      (r) => r.status === 200 && r.body.balance.available_cents === 1,
      "the customer's credit",
    );
    const key = (await gateway.admin("POST", `/customers/${c.id}/keys`, {})).body.key as string;

    const credentials: string[] = [];
    const tokens: string[] = [];
    const mppx = Mppx.create({
      polyfill: false,
      maxPaymentRetries: 1,
      fetch: (input: RequestInfo | URL, init?: RequestInit) => {
        const request = new Request(input, init);
        request.headers.set("authorization", `Bearer ${key}`);
        const credential = request.headers.get("payment-authorization");
        if (credential) credentials.push(credential);
        return fetch(request);
      },
      methods: [
        stripeMethod.charge({
          paymentMethod: "pm_card_visa",
          createToken: async ({ amount, currency, expiresAt, paymentMethod }) => {
            const token = await grantToken({ amount, currency, expiresAt, paymentMethod });
            tokens.push(token);
            return token;
          },
        }),
      ],
    });

    const answers: { status: number; balance: string | null; receipt: boolean }[] = [];
    let reference = "";
    for (let i = 0; i < 4; i++) {
      const response = await mppx.fetch(`${gateway.url}/hello`);
      answers.push({ status: response.status, balance: response.headers.get("x-payg-balance-cents"), receipt: response.headers.has("payment-receipt") });
      if (response.headers.has("payment-receipt")) {
        const receipt = Receipt.deserialize(response.headers.get("payment-receipt")!);
        expect(receipt).toMatchObject({ method: "stripe", status: "success" });
        expect(response.headers.get("cache-control")).toBe("private");
        reference = receipt.reference;
      }
      await response.arrayBuffer();
    }
    // The first request spends the last cent; the second meets the 402, pays a $5.00 pack and is served from it.
    expect(answers).toEqual([
      { status: 200, balance: "0", receipt: false },
      { status: 200, balance: "499", receipt: true },
      { status: 200, balance: "498", receipt: false },
      { status: 200, balance: "497", receipt: false },
    ]);
    expect(tokens).toHaveLength(1);
    expect(tokens[0]).toMatch(/^spt_/);
    expect(credentials).toHaveLength(1);

    const intents = stripe.paymentIntentsOf(c.id);
    expect(intents).toHaveLength(1);
    expect(intents[0]).toMatchObject({ id: reference, status: "succeeded", amount: 500, currency: "usd", customer: c.id });
    expect(stripe.sharedPaymentToken(tokens[0]!)!.usage_details.amount_captured.value).toBe(500);

    // The same credential again, as a confused or malicious client would send it: refused as a
    // used challenge (an RFC 9457 problem with a fresh challenge), nothing charged or credited.
    const replay = await fetch(`${gateway.url}/hello`, { headers: { authorization: `Bearer ${key}`, "payment-authorization": credentials[0]! } });
    expect(replay.status).toBe(402);
    expect(replay.headers.get("content-type")).toBe("application/problem+json");
    expect(replay.headers.get("payment-receipt")).toBeNull();
    expect(replay.headers.get("www-authenticate")).toMatch(/^Payment /);
    expect(((await replay.json()) as { type: string }).type).toBe("https://paymentauth.org/problems/invalid-challenge");

    // Stripe's payment_intent.succeeded comes back and credits nothing again.
    await webhooks.deliverAll();
    expect(stripe.paymentIntentsOf(c.id)).toHaveLength(1);
    expect(stripe.requests.filter((r) => r.method === "POST" && r.path === "/v1/payment_intents")).toHaveLength(1);
    const summary = (await gateway.admin("GET", `/customers/${c.id}`)).body;
    expect(summary.balance.available_exact_cents).toBe("497");
    const grants = (await gateway.admin("GET", `/customers/${c.id}/grants`)).body.grants;
    expect(grants.filter((g: { source: string }) => g.source === "mpp")).toEqual([expect.objectContaining({ amount_cents: 500, category: "paid", payment_intent: reference })]);
    expect((await gateway.admin("GET", "/status")).body.payments).toEqual({ x402: null, mpp: "on" });
  });
});
