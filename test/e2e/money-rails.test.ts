import { Webhook } from "standardwebhooks";
import { parseList } from "structured-headers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { StripeDouble } from "../doubles/stripe-double";
import { ADMIN_TOKEN, type Gateway, serveHandler, startGateway, stripeWebhooks, until } from "./harness";

// What providers expect from the money rails, against the real `wrangler dev`: a Checkout top-up
// with an invoice and Stripe Tax, an auto top-up with Stripe's receipt, both in the portal's and
// the dashboard's top-up list; Standard Webhooks signatures across a secret rotation, verified
// with the `standardwebhooks` library as a receiver would; RateLimit fields on a capped key.
const stripe = new StripeDouble({ webhookSecret: "whsec_e2e_rails" });
let gateway: Gateway;
const closers: (() => Promise<void>)[] = [];
let hooksUrl = "";
const arrivals: { raw: string; headers: Record<string, string>; event: { id: string; type: string; data: Record<string, any> } }[] = [];

beforeAll(async () => {
  const origin = await startDemoOrigin({ port: 0 });
  const stripeServer = await serveHandler((r) => stripe.handle(r));
  const hooks = await serveHandler(async (request) => {
    const raw = await request.text();
    arrivals.push({ raw, headers: Object.fromEntries(request.headers), event: JSON.parse(raw) });
    return new Response(null, { status: 204 });
  });
  closers.push(origin.close, stripeServer.close, hooks.close);
  hooksUrl = hooks.url;
  const governance = {
    topup_url: "http://127.0.0.1:8787/portal",
    checkout_success_url: "https://example.com/ok",
    checkout_cancel_url: "https://example.com/cancel",
    checkout_automatic_tax: true,
  };
  gateway = await startGateway({
    vars: { ORIGIN_URL: origin.url, STRIPE_API_BASE: stripeServer.url, ALLOW_INSECURE_WEBHOOKS: "true", GOVERNANCE: JSON.stringify(governance) },
    secrets: { STRIPE_SECRET_KEY: "sk_test_e2e", STRIPE_WEBHOOK_SECRET: "whsec_e2e_rails" },
  });
});
afterAll(async () => {
  await gateway?.stop();
  for (const close of closers) await close();
});

const deliverAll = () => stripeWebhooks(gateway, stripe).deliverAll();

function cookieOf(response: Response): string {
  return response.headers.get("set-cookie")!.split(";")[0]!;
}

const form = (fields: Record<string, string>, cookie?: string): RequestInit => ({
  method: "POST",
  redirect: "manual",
  headers: { "content-type": "application/x-www-form-urlencoded", origin: gateway.url, ...(cookie ? { cookie } : {}) },
  body: new URLSearchParams(fields).toString(),
});

/** The customer's portal, as the owner opens it: the provider's link, confirmed. */
async function ownerPortal(customerId: string): Promise<string> {
  const { url } = (await gateway.admin("POST", `/customers/${customerId}/portal-sessions`, {})).body as { url: string };
  const token = new URL(url).searchParams.get("token")!;
  const entered = await gateway.fetch("/portal/enter", form({ token }));
  expect(entered.status).toBe(303);
  return (await gateway.fetch("/portal", { headers: { cookie: cookieOf(entered) } })).text();
}

async function dashboardPage(path: string): Promise<string> {
  const signedIn = await gateway.fetch("/dashboard/sign-in", form({ token: ADMIN_TOKEN, next: path }));
  expect(signedIn.status).toBe(303);
  return (await gateway.fetch(path, { headers: { cookie: cookieOf(signedIn) } })).text();
}

async function checkout(key: string, amount: number, save = false) {
  const response = await gateway.fetch("/billing/checkout", {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ amount_cents: amount, ...(save ? { save_payment_method: true } : {}) }),
  });
  expect(response.status).toBe(201);
  return ((await response.json()) as { id: string }).id;
}

describe("top-ups with invoices, tax and receipts, end to end", () => {
  it("a taxed Checkout top-up: an invoice with its tax in Stripe, the pre-tax credit, listed in the portal and the dashboard; an auto top-up with its receipt", async () => {
    const c = stripe.createCustomer({ email: "ada@example.com", name: "Ada Lovelace" });
    await deliverAll();
    const key = (await gateway.admin("POST", `/customers/${c.id}/keys`, {})).body.key as string;

    const session = stripe.completeCheckout(await checkout(key, 1000, true), {
      taxRateBasisPoints: 2000,
      taxId: { type: "eu_vat", value: "DE123456789", businessName: "Analytical Engines GmbH" },
    });
    const invoice = stripe.getInvoice(session.invoice as string)!;
    expect(invoice).toMatchObject({ status: "paid", total: 1200, total_excluding_tax: 1000, customer_tax_ids: [{ type: "eu_vat", value: "DE123456789" }] });
    await deliverAll();
    const summary = await until(
      () => gateway.admin("GET", `/customers/${c.id}`),
      (r) => r.body.balance.available_cents === 1000,
      "the pre-tax credit",
    );
    expect(summary.body.balance.ledger_sum_exact_cents).toBe("1000");
    const [checkoutTopUp] = (await gateway.admin("GET", `/customers/${c.id}/topups`)).body.topups;
    const receipt = stripe.getCharge(stripe.getPaymentIntent(session.payment_intent as string)!.latest_charge as string)!.receipt_url!;
    expect(checkoutTopUp).toMatchObject({
      source: "checkout",
      credit_cents: 1000,
      tax_cents: 200,
      total_cents: 1200,
      invoice: { url: invoice.hosted_invoice_url, pdf_url: invoice.invoice_pdf },
      receipt_url: receipt,
    });

    // Auto top-up with the card that top-up saved: Stripe's receipt, in the same list.
    expect((await gateway.admin("PUT", `/customers/${c.id}`, { auto_topup: { threshold_cents: 400, amount_cents: 500, monthly_cap_cents: 2000 } })).status).toBe(200);
    expect((await gateway.admin("POST", `/customers/${c.id}/credits`, { amount: -700, reason: "usage elsewhere" })).status).toBe(201);
    const pi = await until(
      async () => stripe.requests.find((r) => r.method === "POST" && r.path === "/v1/payment_intents" && r.params.customer === c.id),
      (r) => r !== undefined,
      "the auto top-up's PaymentIntent",
    );
    expect(pi!.params).toMatchObject({ receipt_email: "ada@example.com", off_session: "true" });
    await deliverAll();
    const list = await until(
      async () => (await gateway.admin("GET", `/customers/${c.id}/topups`)).body.topups as any[],
      (t) => t.length === 2 && t[0].receipt_url !== null,
      "the auto top-up with its receipt",
    );
    expect(list[0]).toMatchObject({
      source: "auto_topup",
      credit_cents: 500,
      tax_cents: 0,
      invoice: null,
      receipt_url: expect.stringMatching(/^https:\/\/pay\.stripe\.test\/receipts\//),
    });

    const portal = await ownerPortal(c.id);
    for (const link of [invoice.hosted_invoice_url!, invoice.invoice_pdf!, receipt, list[0].receipt_url]) expect(portal).toContain(`href="${link}"`);
    const dashboard = await dashboardPage(`/dashboard/customers/${c.id}`);
    for (const link of [invoice.hosted_invoice_url!, invoice.invoice_pdf!, receipt, list[0].receipt_url]) expect(dashboard).toContain(`href="${link}"`);
  });
});

describe("Standard Webhooks signatures across a rotation, end to end", () => {
  it("every delivery verifies with the standardwebhooks library before, during and after the overlap; the old secret stops after it", async () => {
    const endpoint = await gateway.admin("POST", "/webhook-endpoints", { url: `${hooksUrl}/hooks`, events: ["customer.balance.depleted"] });
    expect(endpoint.status).toBe(201);
    const original = endpoint.body.secret as string;
    const deplete = async () => {
      const { id } = stripe.createCustomer({ email: "rotation@example.com", balance: -1 });
      await deliverAll();
      await until(
        () => gateway.admin("GET", `/customers/${id}`),
        (r) => r.status === 200 && r.body.balance.available_cents === 1,
        "the customer's cent",
      );
      const key = (await gateway.admin("POST", `/customers/${id}/keys`, {})).body.key as string;
      expect((await gateway.fetch("/v1/data", { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
      return until(
        async () => arrivals.find((a) => a.event.data.customer_id === id),
        (a) => a !== undefined,
        `${id}'s depletion`,
      );
    };
    const verifies = (arrival: (typeof arrivals)[number], secret: string) => {
      try {
        return JSON.stringify(new Webhook(secret).verify(arrival.raw, arrival.headers)) === JSON.stringify(arrival.event);
      } catch {
        return false;
      }
    };

    const before = (await deplete())!;
    expect(before.headers["webhook-id"]).toBe(before.event.id);
    expect(verifies(before, original)).toBe(true);

    const rotated = await gateway.admin("POST", `/webhook-endpoints/${endpoint.body.id}/rotate-secret`, { rotation_overlap_seconds: 3 });
    expect(rotated.status).toBe(200);
    const fresh = rotated.body.secret as string;
    const during = (await deplete())!;
    expect(verifies(during, fresh)).toBe(true);
    expect(verifies(during, original)).toBe(true);

    await new Promise((r) => setTimeout(r, Math.max(0, rotated.body.previous_secret_expires_at - Date.now()) + 100));
    const after = (await deplete())!;
    expect(verifies(after, fresh)).toBe(true);
    expect(verifies(after, original)).toBe(false);
    expect(after.headers["webhook-signature"]!.split(" ")).toHaveLength(1);
    expect((await gateway.admin("DELETE", `/webhook-endpoints/${endpoint.body.id}`)).status).toBe(204);
  });
});

describe("RateLimit fields, end to end", () => {
  it("a capped key's responses carry RateLimit-Policy and RateLimit as the draft's Structured Fields; its 402 carries Retry-After", async () => {
    const { id } = stripe.createCustomer({ email: "capped@example.com", balance: -100 });
    await deliverAll();
    const key = (await gateway.admin("POST", `/customers/${id}/keys`, { spend_cap_cents: 2, cap_period: "day" })).body.key as string;
    const get = () => gateway.fetch("/v1/data", { headers: { authorization: `Bearer ${key}` } });
    const first = await get();
    expect(first.status).toBe(200);
    const [[policy, policyParams]] = parseList(first.headers.get("ratelimit-policy")!) as [[string, Map<string, unknown>]];
    expect([policy, Object.fromEntries(policyParams)]).toEqual(["key_cap", { q: 2, w: 86_400, "payg-unit": "cents" }]);
    const [[name, params]] = parseList(first.headers.get("ratelimit")!) as [[string, Map<string, unknown>]];
    expect(name).toBe("key_cap");
    expect(params.get("r")).toBe(1);
    expect(params.get("t")).toBeGreaterThan(0);
    expect((await get()).status).toBe(200);
    const refused = await get();
    expect(refused.status).toBe(402);
    const [[, limit]] = parseList(refused.headers.get("ratelimit")!) as [[string, Map<string, unknown>]];
    expect(limit.get("r")).toBe(0);
    expect(Number(refused.headers.get("retry-after"))).toBe(limit.get("t"));
  });
});
