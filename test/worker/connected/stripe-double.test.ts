/**
 * The Stripe and MailChannels doubles themselves, driven through the real `stripe` SDK (v23, the
 * gateway's client settings: fetch HTTP client, host/port/protocol, maxNetworkRetries 2) and
 * plain fetch, inside workerd through MSW.
 */
import Stripe from "stripe";
import { describe, expect, it } from "vitest";
import type { StripeDouble } from "../../doubles/stripe-double";
import { connect } from "./doubles";

const DAY_MS = 24 * 60 * 60 * 1000;

/** The SDK as src/stripe/client.ts builds it, pointed at the double. */
function sdk(key = "sk_test_double", maxNetworkRetries = 2): Stripe {
  return new Stripe(key, {
    host: "stripe.test",
    port: 443,
    protocol: "https",
    httpClient: Stripe.createFetchHttpClient(),
    maxNetworkRetries,
  });
}

async function stripeError(promise: Promise<unknown>): Promise<Stripe.errors.StripeError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(Stripe.errors.StripeError);
    return error as Stripe.errors.StripeError;
  }
  throw new Error("expected a Stripe error");
}

const calls = (double: StripeDouble, method: string, path: RegExp) => double.requests.filter((r) => r.method === method && path.test(r.path));
const eventsOf = <T extends Stripe.Event["type"]>(double: StripeDouble, type: T) => double.events.filter((e): e is Extract<Stripe.Event, { type: T }> => e.type === type);

describe("Stripe double: clock and idempotency", () => {
  it("replays a key for 24 hours of the double's clock, then executes it again as new", async () => {
    const { stripe: double } = connect();
    const client = sdk();
    const c = double.createCustomer({ email: "clock@example.com" });
    const create = () => client.customers.createBalanceTransaction(c.id, { amount: -100, currency: "usd" }, { idempotencyKey: "topup-1" });
    const first = await create();
    double.advance(DAY_MS - 1000);
    const replay = await create();
    expect(replay.id).toBe(first.id);
    expect(calls(double, "POST", /balance_transactions$/).at(-1)!.replayed).toBe(true);
    expect(double.balanceOf(c.id)).toBe(-100);

    double.advance(1000);
    const again = await create();
    expect(again.id).not.toBe(first.id);
    expect(double.balanceOf(c.id)).toBe(-200);
    // `created` follows the double's clock (real time goes on underneath: allow a second).
    expect(again.created - first.created - DAY_MS / 1000).toBeLessThanOrEqual(1);
    expect(again.created - first.created - DAY_MS / 1000).toBeGreaterThanOrEqual(0);
  });

  it("dedupes a meter event identifier for 24 hours only", async () => {
    const { stripe: double } = connect();
    const client = sdk();
    const c = double.createCustomer();
    const send = () =>
      client.billing.meterEvents.create({
        event_name: "api_requests",
        identifier: "usage-2025-01-01T00",
        payload: { stripe_customer_id: c.id, value: "7" },
      });
    await send();
    await send();
    expect(double.meterUsage(c.id, "api_requests")).toBe(7);
    double.advance(DAY_MS);
    await send();
    expect(double.meterUsage(c.id, "api_requests")).toBe(14);
  });
});

describe("Stripe double: faults reach the caller as Stripe sends them", () => {
  it("a 429 has no Stripe-Should-Retry, so the SDK does not retry it", async () => {
    const { stripe: double } = connect();
    double.inject({ match: { method: "POST", path: "/v1/customers" }, kind: "429", times: 3 });
    const error = await stripeError(sdk().customers.create({ email: "a@example.com" }));
    expect(error).toBeInstanceOf(Stripe.errors.StripeRateLimitError);
    expect(error.statusCode).toBe(429);
    expect(error.code).toBe("rate_limit");
    expect(error.headers?.["stripe-should-retry"]).toBeUndefined();
    expect(calls(double, "POST", /^\/v1\/customers$/)).toHaveLength(1);
    expect(double.pendingFaults()).toBe(2);
  });

  it("a lock_timeout 429 says Stripe-Should-Retry: true, and the SDK retries it", async () => {
    const { stripe: double } = connect();
    double.inject({ match: { method: "POST", path: "/v1/customers" }, kind: "429_lock_timeout", times: 2 });
    const customer = await sdk().customers.create({ email: "lock@example.com" });
    expect(customer.email).toBe("lock@example.com");
    expect(calls(double, "POST", /^\/v1\/customers$/)).toHaveLength(3);
  });

  it("a 500 on a POST says Stripe-Should-Retry: false: no SDK retry, and its key replays the 500", async () => {
    const { stripe: double } = connect();
    const c = double.createCustomer();
    double.inject({ match: { method: "POST", path: /balance_transactions$/ }, kind: "500", times: 3 });
    const params = { amount: 42, currency: "usd" };
    const error = await stripeError(sdk().customers.createBalanceTransaction(c.id, params, { idempotencyKey: "k500" }));
    expect(error).toBeInstanceOf(Stripe.errors.StripeAPIError);
    expect(error.statusCode).toBe(500);
    expect(error.headers?.["stripe-should-retry"]).toBe("false");
    expect(calls(double, "POST", /balance_transactions$/)).toHaveLength(1);
    expect(double.balanceTransactions(c.id)).toHaveLength(0);
    double.clearFaults();
    // The idempotency layer saved the 500: the same key answers it again, a new key executes.
    const replayed = await stripeError(sdk().customers.createBalanceTransaction(c.id, params, { idempotencyKey: "k500" }));
    expect(replayed.statusCode).toBe(500);
    expect(calls(double, "POST", /balance_transactions$/).at(-1)!.replayed).toBe(true);
    await sdk().customers.createBalanceTransaction(c.id, params, { idempotencyKey: "k500-2" });
    expect(double.balanceOf(c.id)).toBe(42);
  });

  it("500_after_commit executed the request: the 500 is final for the SDK, the key keeps answering 500", async () => {
    const { stripe: double } = connect();
    const c = double.createCustomer();
    double.inject({ match: { method: "POST", path: /balance_transactions$/ }, kind: "500_after_commit" });
    const error = await stripeError(sdk().customers.createBalanceTransaction(c.id, { amount: 5, currency: "usd" }, { idempotencyKey: "kc" }));
    expect(error.headers?.["stripe-should-retry"]).toBe("false");
    expect(double.balanceOf(c.id)).toBe(5);
    expect(calls(double, "POST", /balance_transactions$/)).toHaveLength(1);
  });

  it("500_retryable (no header) and a 500 on a GET are retried by the SDK itself", async () => {
    const { stripe: double } = connect();
    const c = double.createCustomer({ email: "get@example.com" });
    double.inject({ match: { method: "GET", path: /^\/v1\/customers\/[^/]+$/ }, kind: "500", times: 2 });
    const got = (await sdk().customers.retrieve(c.id)) as Stripe.Customer;
    expect(got.email).toBe("get@example.com");
    expect(calls(double, "GET", /^\/v1\/customers\//)).toHaveLength(3);

    double.inject({ match: { method: "POST", path: "/v1/customers" }, kind: "500_retryable", times: 1 });
    await sdk().customers.create({ email: "r@example.com" });
    expect(calls(double, "POST", /^\/v1\/customers$/)).toHaveLength(2);
  });

  it("faults match any endpoint, the new ones included", async () => {
    const { stripe: double } = connect();
    double.inject({ match: { method: "POST", path: "/v1/payment_intents" }, kind: "429" });
    double.inject({ match: { method: "GET", path: /^\/v2\/core\/events\// }, kind: "429" });
    const pi = await stripeError(sdk().paymentIntents.create({ amount: 500, currency: "usd" }));
    expect(pi.statusCode).toBe(429);
    const v2 = await stripeError(sdk().v2.core.events.retrieve("evt_test_x"));
    expect(v2.statusCode).toBe(429);
    expect(double.pendingFaults()).toBe(0);
  });
});

describe("Stripe double: keys, currencies, limits", () => {
  it("accepts restricted keys like secret keys and refuses publishable ones", async () => {
    const { stripe: double } = connect();
    const c = double.createCustomer({ email: "rk@example.com" });
    expect(((await sdk("rk_test_restricted").customers.retrieve(c.id)) as Stripe.Customer).email).toBe("rk@example.com");
    expect(((await sdk("rk_live_restricted").customers.retrieve(c.id)) as Stripe.Customer).email).toBe("rk@example.com");
    const error = await stripeError(sdk("pk_test_publishable").customers.retrieve(c.id));
    expect(error).toBeInstanceOf(Stripe.errors.StripeAuthenticationError);
  });

  it("puts a balance transaction in another currency into invoice_credit_balance, not balance", async () => {
    const { stripe: double } = connect();
    const client = sdk();
    const c = double.createCustomer({ currency: "usd", balance: -1000 });
    double.takeEvents();
    const txn = await client.customers.createBalanceTransaction(c.id, { amount: -500, currency: "eur" });
    expect(txn).toMatchObject({ currency: "eur", amount: -500, ending_balance: -500 });
    const plain = (await client.customers.retrieve(c.id)) as Stripe.Customer;
    expect(plain.balance).toBe(-1000);
    expect(plain.currency).toBe("usd");
    expect(plain.invoice_credit_balance).toBeUndefined();
    const expanded = (await client.customers.retrieve(c.id, { expand: ["invoice_credit_balance"] })) as Stripe.Customer;
    // The spec: "If positive in a currency, the customer has a credit".
    expect(expanded.invoice_credit_balance).toEqual({ eur: 500 });
    expect(double.invoiceCreditBalance(c.id)).toEqual({ eur: 500 });
    expect(double.takeEvents()).toEqual([]);
    const bad = await stripeError(client.customers.retrieve(c.id, { expand: ["sources.data.owner"] }));
    expect(bad.param).toBe("expand");
  });

  it("limits a balance transaction description to 350 characters", async () => {
    const { stripe: double } = connect();
    const client = sdk();
    const c = double.createCustomer();
    await client.customers.createBalanceTransaction(c.id, { amount: 1, currency: "usd", description: "x".repeat(350) });
    const error = await stripeError(client.customers.createBalanceTransaction(c.id, { amount: 1, currency: "usd", description: "x".repeat(351) }));
    expect(error).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(error).toMatchObject({ statusCode: 400, type: "StripeInvalidRequestError", param: "description" });
    expect(error.raw).toMatchObject({ type: "invalid_request_error" });
    expect(double.balanceOf(c.id)).toBe(1);
  });
});

describe("Stripe double: PaymentIntents with Stripe's test cards", () => {
  it("pm_card_visa succeeds with a Charge and emits charge.succeeded and payment_intent.succeeded", async () => {
    const { stripe: double } = connect();
    const client = sdk();
    const c = double.createCustomer();
    const pi = await client.paymentIntents.create({
      amount: 2000,
      currency: "usd",
      customer: c.id,
      payment_method: "pm_card_visa",
      confirm: true,
      off_session: true,
      metadata: { payg: "topup" },
      description: "Credit top-up",
    });
    expect(pi).toMatchObject({ object: "payment_intent", status: "succeeded", amount: 2000, amount_received: 2000, customer: c.id });
    expect(pi.latest_charge).toMatch(/^ch_/);
    const charge = await client.charges.retrieve(pi.latest_charge as string);
    expect(charge).toMatchObject({ status: "succeeded", paid: true, amount: 2000, payment_intent: pi.id, customer: c.id, amount_refunded: 0 });
    expect((await client.paymentIntents.retrieve(pi.id, { expand: ["latest_charge"] })).latest_charge).toMatchObject({ id: charge.id });
    expect(eventsOf(double, "payment_intent.succeeded").map((e) => e.data.object.id)).toEqual([pi.id]);
    expect(eventsOf(double, "charge.succeeded").map((e) => e.data.object.id)).toEqual([charge.id]);
    const unknown = await stripeError(client.paymentIntents.create({ amount: 100, currency: "usd", colour: "red" } as never));
    expect(unknown.code).toBe("parameter_unknown");
  });

  it("pm_card_chargeCustomerFail attaches, then declines with 402 card_declined; the decline is replayed under its key", async () => {
    const { stripe: double } = connect();
    const client = sdk();
    const created = await client.customers.create({ email: "fail@example.com", payment_method: "pm_card_chargeCustomerFail" });
    const [pm] = (await client.customers.listPaymentMethods(created.id)).data;
    expect(pm).toMatchObject({ object: "payment_method", type: "card", customer: created.id, card: { last4: "0341" } });
    const updated = await client.customers.update(created.id, { invoice_settings: { default_payment_method: pm!.id } });
    expect(updated.invoice_settings.default_payment_method).toBe(pm!.id);

    const params = { amount: 1500, currency: "usd", customer: created.id, payment_method: pm!.id, confirm: true, off_session: true };
    const error = await stripeError(client.paymentIntents.create(params, { idempotencyKey: "charge-fail-1" }));
    expect(error).toBeInstanceOf(Stripe.errors.StripeCardError);
    expect(error).toMatchObject({ statusCode: 402, code: "card_declined", decline_code: "generic_decline" });
    expect(error.payment_intent).toMatchObject({ status: "requires_payment_method", last_payment_error: { code: "card_declined" } });
    expect(error.charge).toMatch(/^ch_/);
    expect((await client.charges.retrieve(error.charge!)).status).toBe("failed");
    expect(eventsOf(double, "payment_intent.payment_failed").map((e) => e.data.object.id)).toEqual([error.payment_intent!.id]);

    const replay = await stripeError(client.paymentIntents.create(params, { idempotencyKey: "charge-fail-1" }));
    expect(replay.payment_intent!.id).toBe(error.payment_intent!.id);
    expect(calls(double, "POST", /^\/v1\/payment_intents$/).at(-1)!.replayed).toBe(true);
    expect(eventsOf(double, "payment_intent.payment_failed")).toHaveLength(1);
  });

  it("pm_card_authenticationRequired off session is 402 authentication_required, the PaymentIntent requires_payment_method", async () => {
    const { stripe: double } = connect();
    const client = sdk();
    const c = double.createCustomer({ paymentMethod: "pm_card_authenticationRequired", defaultPaymentMethod: true });
    const pmId = double.getCustomer(c.id)!.invoice_settings.default_payment_method as string;
    const error = await stripeError(client.paymentIntents.create({ amount: 900, currency: "usd", customer: c.id, payment_method: pmId, confirm: true, off_session: true }));
    expect(error).toMatchObject({ statusCode: 402, type: "StripeCardError", code: "authentication_required" });
    expect(error.payment_intent!.status).toBe("requires_payment_method");
    const onSession = await client.paymentIntents.create({ amount: 900, currency: "usd", customer: c.id, payment_method: pmId, confirm: true });
    expect(onSession.status).toBe("requires_action");
    expect((await client.paymentMethods.retrieve(pmId)).card!.last4).toBe("3184");
  });
});

describe("Stripe double: Checkout saves the card, refunds and disputes", () => {
  it("a session with setup_future_usage and a customer pays, attaches the card, and the card pays again off session", async () => {
    const { stripe: double } = connect();
    const client = sdk();
    const c = double.createCustomer({ email: "save@example.com" });
    const session = await client.checkout.sessions.create({
      mode: "payment",
      customer: c.id,
      line_items: [{ quantity: 1, price_data: { currency: "usd", unit_amount: 2500, product_data: { name: "API credit" } } }],
      payment_intent_data: { setup_future_usage: "off_session" },
      success_url: "https://example.com/ok",
    });
    double.takeEvents();
    const completed = double.completeCheckout(session.id);
    const events = double.takeEvents();
    expect(events.map((e) => e.type)).toEqual(["checkout.session.completed", "payment_method.attached", "payment_intent.created", "charge.succeeded", "payment_intent.succeeded"]);
    const pi = await client.paymentIntents.retrieve(completed.payment_intent as string);
    expect(pi).toMatchObject({ status: "succeeded", amount: 2500, customer: c.id, setup_future_usage: "off_session" });
    const saved = (await client.customers.listPaymentMethods(c.id)).data;
    expect(saved.map((pm) => pm.id)).toEqual([pi.payment_method]);
    const again = await client.paymentIntents.create({
      amount: 2500,
      currency: "usd",
      customer: c.id,
      payment_method: saved[0]!.id,
      confirm: true,
      off_session: true,
    });
    expect(again.status).toBe("succeeded");
  });

  it("refunds accumulate on the charge; disputes carry the payment intent and no customer", async () => {
    const { stripe: double } = connect();
    const client = sdk();
    const c = double.createCustomer();
    const pi = await client.paymentIntents.create({ amount: 1000, currency: "usd", customer: c.id, payment_method: "pm_card_visa", confirm: true });
    double.takeEvents();

    double.refundCharge(pi.id, 300);
    double.refundCharge(pi.latest_charge as string);
    const refunded = eventsOf(double, "charge.refunded").map((e) => e.data);
    expect(refunded.map((d) => [d.object.amount_refunded, d.object.refunded])).toEqual([
      [300, false],
      [1000, true],
    ]);
    expect(refunded[1]!.previous_attributes).toMatchObject({ amount_refunded: 300, refunded: false });
    expect(refunded[1]!.object).toMatchObject({ payment_intent: pi.id });
    // Since API 2022-11-15 a Charge carries `refunds` only when expanded.
    expect(refunded[1]!.object.refunds).toBeUndefined();
    const withRefunds = await client.charges.retrieve(pi.latest_charge as string, { expand: ["refunds"] });
    expect(withRefunds.refunds!.data.map((r) => r.amount)).toEqual([700, 300]);
    expect(eventsOf(double, "refund.created").map((e) => e.data.object.amount)).toEqual([300, 700]);

    const other = await client.paymentIntents.create({ amount: 4000, currency: "usd", customer: c.id, payment_method: "pm_card_visa", confirm: true });
    const dispute = double.createDispute(other.latest_charge as string);
    const [created] = eventsOf(double, "charge.dispute.created");
    expect(created!.data.object).toMatchObject({ id: dispute.id, payment_intent: other.id, charge: other.latest_charge, amount: 4000, status: "needs_response" });
    expect("customer" in created!.data.object).toBe(false);
    expect(eventsOf(double, "charge.dispute.funds_withdrawn").map((e) => e.data.object.id)).toEqual([dispute.id]);
    expect((await client.charges.retrieve(other.latest_charge as string)).disputed).toBe(true);

    double.closeDispute(dispute.id, "won");
    expect(eventsOf(double, "charge.dispute.closed").map((e) => e.data.object.status)).toEqual(["won"]);
    expect(eventsOf(double, "charge.dispute.funds_reinstated")).toHaveLength(1);
    const fetched = await client.disputes.retrieve(dispute.id);
    expect(fetched.status).toBe("won");
    expect(fetched.balance_transactions.map((t) => t.amount)).toEqual([-4000, 4000]);
  });
});

describe("Stripe double: meter errors as thin v2 events", () => {
  it("parses signed thin events with parseEventNotificationAsync and fetches them from /v2/core/events", async () => {
    const { stripe: double } = connect();
    const client = sdk();
    const c = double.createCustomer();
    // Accepted with 200, as Stripe does; reported asynchronously, never counted.
    const unknownMeter = await client.billing.meterEvents.create({
      event_name: "no_such_meter",
      identifier: "id-no-meter",
      payload: { stripe_customer_id: c.id, value: "3" },
    });
    expect(unknownMeter.identifier).toBe("id-no-meter");
    await client.billing.meterEvents.create({
      event_name: "api_requests",
      identifier: "id-no-customer",
      payload: { stripe_customer_id: "cus_missing", value: "1" },
    });
    expect(double.meterEvents).toHaveLength(0);
    expect(double.rejectedMeterEvents.map((e) => e.identifier)).toEqual(["id-no-meter", "id-no-customer"]);

    const thin = double.takeThinEvents();
    expect(thin.map((t) => t.type).sort()).toEqual(["v1.billing.meter.error_report_triggered", "v1.billing.meter.no_meter_found"]);
    for (const payload of thin) {
      const { body, signature } = await double.signThin(payload);
      const notification = await client.parseEventNotificationAsync(body, signature, double.thinEventSecret, undefined, Stripe.createSubtleCryptoProvider());
      expect(notification).toMatchObject({ id: payload.id, object: "v2.core.event", type: payload.type });
      if (notification.type === "v1.billing.meter.no_meter_found") {
        const event = await notification.fetchEvent();
        expect(event.data.reason.error_types).toEqual([
          { code: "no_meter", error_count: 1, sample_errors: [{ error_message: expect.any(String), request: { identifier: "id-no-meter" } }] },
        ]);
        expect("related_object" in notification).toBe(false);
      } else if (notification.type === "v1.billing.meter.error_report_triggered") {
        const event = await client.v2.core.events.retrieve(notification.id);
        expect(event.type).toBe("v1.billing.meter.error_report_triggered");
        const data = (event as Stripe.V2.Core.Events.V1BillingMeterErrorReportTriggeredEvent).data;
        expect(data.reason).toMatchObject({ error_count: 1, error_types: [{ code: "meter_event_customer_not_found", error_count: 1 }] });
        expect(data.reason.error_types[0]!.sample_errors[0]!.request.identifier).toBe("id-no-customer");
        expect(Date.parse(data.validation_start)).toBeLessThan(Date.parse(data.validation_end));
        const meter = await notification.fetchRelatedObject();
        expect(meter).toMatchObject({ object: "billing.meter", event_name: "api_requests" });
      } else {
        throw new Error(`unexpected ${notification.type}`);
      }
    }
    const forged = await double.signThin(thin[0]!, { secret: "whsec_other" });
    await expect(client.parseEventNotificationAsync(forged.body, forged.signature, double.thinEventSecret, undefined, Stripe.createSubtleCryptoProvider())).rejects.toThrow();
    expect(double.takeThinEvents()).toEqual([]);
    expect((await stripeError(client.v2.core.events.retrieve("evt_test_nope"))).statusCode).toBe(404);
  });

  it("a meter created by the test makes its event name count", async () => {
    const { stripe: double } = connect();
    const c = double.createCustomer();
    double.createMeter("image_renders");
    await sdk().billing.meterEvents.create({ event_name: "image_renders", payload: { stripe_customer_id: c.id, value: "2" } });
    expect(double.meterUsage(c.id, "image_renders")).toBe(2);
    expect(double.takeThinEvents()).toEqual([]);
  });
});

describe("MailChannels double", () => {
  const send = (body: unknown, key: string | null = "mc_test_key") =>
    fetch("https://mailchannels.test/tx/v1/send", {
      method: "POST",
      headers: { "content-type": "application/json", ...(key === null ? {} : { "x-api-key": key }) },
      body: JSON.stringify(body),
    });
  const message = (extra: Record<string, unknown> = {}, personalization: Record<string, unknown> = {}) => ({
    personalizations: [{ to: [{ email: "ada@example.com" }], ...personalization }],
    from: { email: "billing@example.com" },
    subject: "Hello",
    content: [{ type: "text/plain", value: "Hi" }],
    ...extra,
  });

  it("answers 403 for a missing or wrong key", async () => {
    const { mail } = connect();
    expect((await send(message(), null)).status).toBe(403);
    expect((await send(message(), "mc_wrong")).status).toBe(403);
    expect(mail.sent).toHaveLength(0);
  });

  it("answers 202 with request_id and per-message results; a 202_failed fault reports failed with a reason", async () => {
    const { mail } = connect();
    const ok = await send(message());
    expect(ok.status).toBe(202);
    const body = (await ok.json()) as { request_id: string; results: { index: number; message_id: string; status: string }[] };
    expect(body).toMatchObject({ request_id: expect.any(String), results: [{ index: 0, message_id: expect.any(String), status: "sent" }] });

    mail.inject({ kind: "202_failed", reason: "recipient suppressed" });
    const failed = await send(message());
    expect(failed.status).toBe(202);
    expect(await failed.json()).toMatchObject({ results: [{ index: 0, status: "failed", reason: "recipient suppressed" }] });
    expect(mail.sent).toHaveLength(1);
    expect(mail.failed).toMatchObject([{ to: ["ada@example.com"], reason: "recipient suppressed" }]);
  });

  it("merges top-level and personalization headers (personalization wins) and refuses reserved ones", async () => {
    const { mail } = connect();
    const unsubscribe = "<https://gateway.example/unsubscribe?token=abc>";
    const response = await send(
      message(
        { headers: { "List-Unsubscribe": "<mailto:old@example.com>", "X-Campaign": "low-credit" } },
        { headers: { "list-unsubscribe": unsubscribe, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click" } },
      ),
    );
    expect(response.status).toBe(202);
    const [sent] = mail.sent;
    expect(sent!.headers).toEqual({ "list-unsubscribe": unsubscribe, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click", "X-Campaign": "low-credit" });
    expect(sent!.personalizations[0]!.headers).toEqual(sent!.headers);

    for (const name of ["Subject", "reply-to", "DKIM-Signature"]) {
      const refused = await send(message({}, { headers: { [name]: "x" } }));
      expect(refused.status).toBe(400);
      expect(((await refused.json()) as { errors: string[] }).errors.join()).toContain(name);
    }
    expect((await send(message({ headers: { "Message-ID": "<x@y>" } }))).status).toBe(400);
    expect(mail.sent).toHaveLength(1);
  });
});

describe("Stripe double: rate limits (as a sandbox enforces them)", () => {
  it("answers 429 rate_limit past the per-endpoint limit, counts meter events apart, and lets calls through again a second later", async () => {
    const { stripe: double } = connect();
    double.rateLimit({ perSecond: 25, perEndpointPerSecond: 5, meterEventsPerSecond: 3 });
    const client = sdk();
    const a = double.createCustomer({});
    const b = double.createCustomer({});
    // One endpoint whatever the customer: 5 of these 8 go through.
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => client.customers.createBalanceTransaction(i % 2 ? a.id : b.id, { amount: 1, currency: "usd" }, { idempotencyKey: `rl-${i}` })),
    );
    const refused = results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason as Stripe.errors.StripeError);
    expect(refused).toHaveLength(3);
    for (const error of refused) expect(error).toMatchObject({ statusCode: 429, code: "rate_limit" });
    expect(double.rateLimitedCount).toBe(3);
    // Nothing refused was executed, and the SDK did not retry it (no Stripe-Should-Retry).
    expect(double.balanceOf(a.id) + double.balanceOf(b.id)).toBe(5);
    expect(calls(double, "POST", /balance_transactions$/)).toHaveLength(8);
    // Another endpoint still has its own 5, and meter events their own limit.
    await client.customers.retrieve(a.id);
    const meter = await Promise.allSettled(
      Array.from({ length: 4 }, (_, i) =>
        client.billing.meterEvents.create({ event_name: "api_requests", payload: { stripe_customer_id: a.id, value: "1" }, identifier: `m${i}` }),
      ),
    );
    expect(meter.filter((r) => r.status === "fulfilled")).toHaveLength(3);
    await new Promise((resolve) => setTimeout(resolve, 1050));
    await client.customers.createBalanceTransaction(a.id, { amount: 1, currency: "usd" });
    expect(double.rateLimitedCount).toBe(4);
  });
});
