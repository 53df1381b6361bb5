import { env } from "cloudflare:workers";
import Stripe from "stripe";
import { describe, expect, it } from "vitest";
import { admin, customerStub, gateway, gatewayWith, portalKeySession, portalLinkSession, withKey } from "../helpers";
import { autoTopUpCustomer, deduct } from "./auto-topup-helpers";
import { connect, deliver, deliverAll, settle } from "./doubles";

// Checkout top-ups with an invoice and Stripe Tax, auto top-ups with Stripe's receipt, and the
// top-up list they appear in (GET /admin/customers/{id}/topups, the portal, the dashboard).

const governance = (env as unknown as { GOVERNANCE: Record<string, unknown> }).GOVERNANCE;
const withGovernance = (extra: Record<string, unknown>) => ({ GOVERNANCE: { ...governance, ...extra } });

async function customer(doubles: ReturnType<typeof connect>) {
  const c = doubles.stripe.createCustomer({ email: "ada@example.com", name: "Ada Lovelace" });
  await deliverAll(doubles.stripe);
  const key = (await admin("POST", `/customers/${c.id}/keys`, {})).body.key as string;
  return { id: c.id, key };
}

async function checkout(key: string, amount: number, options: { bindings?: Record<string, unknown>; save?: boolean } = {}) {
  const init = withKey(key, { method: "POST", body: JSON.stringify({ amount_cents: amount, ...(options.save ? { save_payment_method: true } : {}) }) });
  return options.bindings ? gatewayWith(options.bindings, "/billing/checkout", init) : gateway("/billing/checkout", init);
}

const lastSessionParams = (doubles: ReturnType<typeof connect>) =>
  doubles.stripe.requests.filter((r) => r.method === "POST" && r.path === "/v1/checkout/sessions").at(-1)!.params as Record<string, any>;
const topUps = async (id: string) => (await admin("GET", `/customers/${id}/topups`)).body.topups as any[];

describe("a Checkout top-up with an invoice (GOVERNANCE.checkout_invoice, on by default)", () => {
  it("asks Checkout for an invoice marked as the top-up's; paid, it is credited and listed with its invoice and receipt", async () => {
    const doubles = connect();
    const { id, key } = await customer(doubles);
    const created = await checkout(key, 1000);
    expect(created.status).toBe(201);
    const params = lastSessionParams(doubles);
    expect(params.invoice_creation).toEqual({ enabled: "true", invoice_data: { description: "API credit top-up", metadata: { payg_customer_id: id, payg_credit_cents: "1000" } } });
    expect(params).not.toHaveProperty("automatic_tax");
    expect(params).not.toHaveProperty("allowed_payment_method_types");

    const session = doubles.stripe.completeCheckout(((await created.json()) as { id: string }).id);
    expect(session.invoice).toMatch(/^in_/);
    const invoice = doubles.stripe.getInvoice(session.invoice as string)!;
    expect(invoice).toMatchObject({
      status: "paid",
      total: 1000,
      metadata: { payg_credit_cents: "1000" },
      hosted_invoice_url: expect.stringMatching(/^https:/),
      invoice_pdf: expect.stringMatching(/^https:/),
    });
    await deliverAll(doubles.stripe);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(1_000_000_000);
    const charge = doubles.stripe.getCharge(doubles.stripe.getPaymentIntent(session.payment_intent as string)!.latest_charge as string)!;
    expect(await topUps(id)).toEqual([
      {
        payment_intent: session.payment_intent,
        source: "checkout",
        reference: session.id,
        credit_cents: 1000,
        tax_cents: 0,
        total_cents: 1000,
        currency: "usd",
        created_at: expect.any(Number),
        invoice: { id: invoice.id, number: invoice.number, url: invoice.hosted_invoice_url, pdf_url: invoice.invoice_pdf },
        receipt_url: charge.receipt_url,
      },
    ]);
    // The top-up's paid invoice is not a post-paid invoice of the account's.
    expect((await admin("GET", `/customers/${id}`)).body.cohorts.current.map((c: { cohort: string }) => c.cohort)).not.toContain("payment_failed");
  });

  it("links that arrive before the payment (Stripe does not order deliveries) are joined to it", async () => {
    const doubles = connect();
    const { id, key } = await customer(doubles);
    const created = (await (await checkout(key, 500)).json()) as { id: string };
    doubles.stripe.completeCheckout(created.id);
    const events = doubles.stripe.takeEvents();
    const completed = events.find((e) => e.type === "checkout.session.completed")!;
    for (const event of events.filter((e) => e !== completed)) expect((await deliver(doubles.stripe, event)).status).toBe(200);
    expect(await topUps(id)).toEqual([]);
    expect((await deliver(doubles.stripe, completed)).body.status).toBe("applied");
    const [listed] = await topUps(id);
    expect(listed.invoice.url).toMatch(/^https:\/\/invoice\.stripe\.test\//);
    expect(listed.receipt_url).toMatch(/^https:\/\/pay\.stripe\.test\/receipts\//);
    // A redelivery lists nothing twice.
    expect((await deliver(doubles.stripe, completed)).body.status).toBe("duplicate");
    expect(await topUps(id)).toHaveLength(1);
  });

  it("checkout_invoice = false asks for no invoice: the top-up is listed with its receipt only", async () => {
    const doubles = connect();
    const { id, key } = await customer(doubles);
    const created = (await (await checkout(key, 500, { bindings: withGovernance({ checkout_invoice: false }) })).json()) as { id: string };
    expect(lastSessionParams(doubles)).not.toHaveProperty("invoice_creation");
    expect(doubles.stripe.completeCheckout(created.id).invoice).toBeNull();
    await deliverAll(doubles.stripe);
    expect(await topUps(id)).toMatchObject([{ credit_cents: 500, invoice: null, receipt_url: expect.stringMatching(/^https:/) }]);
  });
});

describe("Stripe Tax on Checkout top-ups (GOVERNANCE.checkout_automatic_tax)", () => {
  it("sends what Stripe requires for an existing customer; the tax is paid on top, recorded, never credited", async () => {
    const doubles = connect();
    const { id, key } = await customer(doubles);
    const created = await checkout(key, 1000, { bindings: withGovernance({ checkout_automatic_tax: true }) });
    expect(created.status).toBe(201);
    const params = lastSessionParams(doubles);
    expect(params).toMatchObject({
      automatic_tax: { enabled: "true" },
      tax_id_collection: { enabled: "true" },
      customer_update: { address: "auto", name: "auto" },
      line_items: [{ price_data: { tax_behavior: "exclusive", unit_amount: "1000" } }],
    });
    const session = doubles.stripe.completeCheckout(((await created.json()) as { id: string }).id, {
      taxRateBasisPoints: 2000,
      taxId: { type: "eu_vat", value: "DE123456789", businessName: "Analytical Engines GmbH" },
    });
    expect(session).toMatchObject({ amount_subtotal: 1000, amount_total: 1200, total_details: { amount_tax: 200 }, automatic_tax: { status: "complete" } });
    expect(doubles.stripe.getPaymentIntent(session.payment_intent as string)!.amount).toBe(1200);
    const invoice = doubles.stripe.getInvoice(session.invoice as string)!;
    expect(invoice).toMatchObject({
      total: 1200,
      total_excluding_tax: 1000,
      customer_tax_ids: [{ type: "eu_vat", value: "DE123456789" }],
      customer_name: "Analytical Engines GmbH",
    });
    expect(invoice.total_taxes).toMatchObject([{ amount: 200 }]);
    // customer_update saved the address and business name on the Stripe customer (a customer.updated).
    expect(doubles.stripe.getCustomer(id)).toMatchObject({ name: "Analytical Engines GmbH", address: { country: "US" } });
    await deliverAll(doubles.stripe);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(1_000_000_000);
    expect((await admin("GET", `/customers/${id}/grants`)).body.grants).toMatchObject([{ source: "checkout", amount_cents: 1000 }]);
    expect(await topUps(id)).toMatchObject([{ credit_cents: 1000, tax_cents: 200, total_cents: 1200, invoice: { id: invoice.id } }]);
  });

  it("a refund or a lost dispute of a taxed payment takes back its pre-tax share of the credit, never the tax", async () => {
    const doubles = connect();
    const { id, key } = await customer(doubles);
    const pay = async () => {
      const created = (await (await checkout(key, 1000, { bindings: withGovernance({ checkout_automatic_tax: true }) })).json()) as { id: string };
      const session = doubles.stripe.completeCheckout(created.id, { taxRateBasisPoints: 2000 });
      await deliverAll(doubles.stripe);
      return session.payment_intent as string;
    };
    const first = await pay();
    // 600 of the 1,200 paid: half the payment, so half the credit (500), not 600.
    doubles.stripe.refundCharge(first, 600);
    await deliverAll(doubles.stripe);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(500_000_000);
    doubles.stripe.refundCharge(first, 600);
    await deliverAll(doubles.stripe);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(0);
    const second = await pay();
    const dispute = doubles.stripe.createDispute(second, 1200);
    await deliverAll(doubles.stripe);
    doubles.stripe.closeDispute(dispute.id, "lost");
    await deliverAll(doubles.stripe);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(0);
    expect((await admin("GET", `/customers/${id}/grants`)).body.grants.map((g: { amount_cents: number }) => g.amount_cents)).toEqual([1000, 1000]);
  });

  it("a session whose total is not its credit plus its tax credits nothing", async () => {
    const doubles = connect();
    const { id, key } = await customer(doubles);
    const created = (await (await checkout(key, 1000, { bindings: withGovernance({ checkout_automatic_tax: true }) })).json()) as { id: string };
    doubles.stripe.completeCheckout(created.id, { taxRateBasisPoints: 1000 });
    const events = doubles.stripe.takeEvents();
    const completed = events.find((e) => e.type === "checkout.session.completed")! as Stripe.CheckoutSessionCompletedEvent;
    // As if the tax had been counted as credit: 1100 paid, 100 of it tax, metadata saying 1100.
    completed.data.object.metadata = { ...completed.data.object.metadata, payg_credit_cents: "1100" };
    expect((await deliver(doubles.stripe, completed)).body.status).toBe("ignored");
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(0);
  });
});

describe("the Stripe double refuses what Stripe refuses", () => {
  const sdk = () => new Stripe("sk_test_double", { host: "stripe.test", port: 443, protocol: "https", httpClient: Stripe.createFetchHttpClient(), maxNetworkRetries: 0 });
  const base = (customer: string): Stripe.Checkout.SessionCreateParams => ({
    mode: "payment",
    customer,
    success_url: "https://example.com/ok",
    line_items: [{ quantity: 1, price_data: { currency: "usd", unit_amount: 500, product_data: { name: "API credit" }, tax_behavior: "exclusive" } }],
  });
  async function refused(params: Record<string, unknown>) {
    try {
      await sdk().checkout.sessions.create(params as Stripe.Checkout.SessionCreateParams);
    } catch (error) {
      return error as Stripe.errors.StripeInvalidRequestError;
    }
    throw new Error(`expected Stripe to refuse ${JSON.stringify(params).slice(0, 300)}`);
  }

  it("automatic tax and tax IDs for an existing customer need customer_update; prices need a tax behavior; nested unknowns are refused", async () => {
    const doubles = connect();
    const { id } = doubles.stripe.createCustomer({ email: "x@example.com" });
    expect((await refused({ ...base(id), automatic_tax: { enabled: true } })).param).toBe("customer_update[address]");
    expect((await refused({ ...base(id), tax_id_collection: { enabled: true } })).param).toBe("customer_update[name]");
    const untaxed = { ...base(id), line_items: [{ quantity: 1, price_data: { currency: "usd", unit_amount: 500, product_data: { name: "x" } } }] };
    expect((await refused({ ...untaxed, automatic_tax: { enabled: true }, customer_update: { address: "auto" } })).param).toBe("line_items");
    expect((await refused({ ...base(id), invoice_creation: { enabled: true, invoice_data: { colour: "red" } } })).code).toBe("parameter_unknown");
    expect((await refused({ ...base(id), invoice_creation: { invoice_data: { description: "x" } } })).code).toBe("parameter_missing");
    // Gone from the API stripe-node 23 speaks (allowed_payment_method_types replaced it).
    expect((await refused({ ...base(id), payment_method_types: ["card"] })).code).toBe("parameter_unknown");
    const { customer: _c, ...guest } = base(id);
    expect((await refused({ ...guest, customer_update: { name: "auto" } })).param).toBe("customer_update");
    expect((await refused({ ...base(id), allowed_payment_method_types: ["crypto"], payment_intent_data: { setup_future_usage: "off_session" } })).param).toBe(
      "allowed_payment_method_types",
    );
    expect((await refused({ ...base(id), allowed_payment_method_types: ["carrier_pigeon"] })).param).toBe("allowed_payment_method_types[0]");
    const ok = await sdk().checkout.sessions.create({
      ...base(id),
      automatic_tax: { enabled: true },
      tax_id_collection: { enabled: true },
      customer_update: { address: "auto", name: "auto" },
      invoice_creation: { enabled: true },
    });
    expect(ok).toMatchObject({ automatic_tax: { enabled: true, status: "requires_location_inputs" }, invoice_creation: { enabled: true }, tax_id_collection: { enabled: true } });
  });
});

describe("payment methods (GOVERNANCE.checkout_payment_method_types)", () => {
  it("passes the list to Checkout; a top-up that saves its card offers only the card; none savable: 409 and no session", async () => {
    const doubles = connect();
    const { key } = await customer(doubles);
    const crypto = withGovernance({ checkout_payment_method_types: ["card", "crypto"] });
    const created = await checkout(key, 500, { bindings: crypto });
    expect(lastSessionParams(doubles).allowed_payment_method_types).toEqual(["card", "crypto"]);
    expect(doubles.stripe.getSession(((await created.json()) as { id: string }).id)!.payment_method_types).toEqual(["card", "crypto"]);
    expect((await checkout(key, 500, { bindings: crypto, save: true })).status).toBe(201);
    expect(lastSessionParams(doubles)).toMatchObject({ allowed_payment_method_types: ["card"], payment_intent_data: { setup_future_usage: "off_session" } });
    // Stripe's dynamic choice, saving a card: only the card still.
    expect((await checkout(key, 500, { save: true })).status).toBe(201);
    expect(lastSessionParams(doubles).allowed_payment_method_types).toEqual(["card"]);
    const sessions = doubles.stripe.requests.filter((r) => r.path === "/v1/checkout/sessions").length;
    const cryptoOnly = await checkout(key, 500, { bindings: withGovernance({ checkout_payment_method_types: ["crypto"] }), save: true });
    expect(cryptoOnly.status).toBe(409);
    expect(doubles.stripe.requests.filter((r) => r.path === "/v1/checkout/sessions")).toHaveLength(sessions);
  });
});

describe("auto top-ups: Stripe's receipt, in the same list", () => {
  it("the PaymentIntent asks Stripe to email its receipt; the top-up is listed with its receipt link", async () => {
    const doubles = connect();
    const { id, email } = await autoTopUpCustomer(doubles, 100, "pm_card_visa");
    await deduct(id, 30);
    await settle(id);
    const create = doubles.stripe.requests.filter((r) => r.method === "POST" && r.path === "/v1/payment_intents").at(-1)!;
    expect(create.params).toMatchObject({ receipt_email: email, off_session: "true" });
    await deliverAll(doubles.stripe);
    const list = await topUps(id);
    const auto = list.find((t) => t.source === "auto_topup");
    const pi = doubles.stripe.getPaymentIntent(auto.payment_intent)!;
    expect(pi.receipt_email).toBe(email);
    expect(auto).toMatchObject({
      credit_cents: 500,
      tax_cents: 0,
      total_cents: 500,
      invoice: null,
      receipt_url: doubles.stripe.getCharge(pi.latest_charge as string)!.receipt_url,
    });
    // The Checkout top-up that saved the card is there too, newest first.
    expect(list.map((t) => t.source)).toEqual(["auto_topup", "checkout"]);
  });
});

describe("the portal's top-up list", () => {
  it("a session from the provider's link sees the invoices and receipts; a session from an API key does not", async () => {
    const doubles = connect();
    const { id, key } = await customer(doubles);
    const created = (await (await checkout(key, 1000)).json()) as { id: string };
    const session = doubles.stripe.completeCheckout(created.id);
    await deliverAll(doubles.stripe);
    const invoice = doubles.stripe.getInvoice(session.invoice as string)!;
    const owner = await (await gateway("/portal", { headers: { cookie: await portalLinkSession(id) } })).text();
    expect(owner).toContain("Top-ups");
    expect(owner).toContain(`href="${invoice.hosted_invoice_url}"`);
    expect(owner).toContain(`href="${invoice.invoice_pdf}"`);
    const keyed = await (await gateway("/portal", { headers: { cookie: await portalKeySession(key) } })).text();
    expect(keyed).not.toContain(invoice.hosted_invoice_url!);
    expect(keyed).not.toContain("receipts/");
    expect(keyed).not.toContain('id="topups-h"');
  });
});
