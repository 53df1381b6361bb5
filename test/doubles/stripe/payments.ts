/**
 * Payment methods, PaymentIntents and Charges.
 *
 * Stripe's test payment methods (https://docs.stripe.com/testing):
 * - `pm_card_visa` (4242) succeeds.
 * - `pm_card_chargeCustomerFail` (0341) attaches to a customer, then every charge declines:
 *   HTTP 402, `card_error`, `card_declined` (decline_code `generic_decline`), the PaymentIntent
 *   (`requires_payment_method`) in `error.payment_intent`.
 * - `pm_card_authenticationRequired` (3184) needs authentication on every payment: confirmed
 *   `off_session` it is HTTP 402 `authentication_required`, PaymentIntent
 *   `requires_payment_method`; confirmed on session it is `requires_action` (200).
 * A test token used in a request stands for a fresh `pm_…` each time, as on Stripe.
 *
 * A decline is a result of a request that began executing: under an Idempotency-Key the 402 is
 * saved and replayed like a 200 ("as long as an API method began execution, Stripe's API servers
 * will cache the results of the request regardless of what they were", docs.stripe.com/error-low-level).
 *
 * Choices of the double: a declined confirmation creates a failed Charge (its id in
 * `error.charge` and `latest_charge`); no balance transactions are modelled for charges
 * (`balance_transaction` ids are placeholders). Refunds and disputes are in refunds.ts.
 */
import type Stripe from "stripe";
import { chargeObject, chargeView } from "./charges";
import {
  ApiError,
  applyMetadata,
  checkKnown,
  clone,
  invalid,
  newId,
  noSuch,
  type Params,
  parseIntParam,
  randomChars,
  readBoolean,
  readCurrency,
  readExpand,
  readInt,
  readMetadata,
  readString,
  type StripeErrorBody,
} from "./common";
import { type CardBehavior, eventRequest, type RequestContext, type StripeState } from "./core";
import { paginate } from "./customers";
import { spendToken, tokenCaptured, tokenParam, tokenPending, tokenSettled } from "./shared-payment";

/** The test tokens this double knows, with the card they stand for. */
export const TEST_PAYMENT_METHODS: Record<string, { last4: string; behavior: CardBehavior }> = {
  pm_card_visa: { last4: "4242", behavior: "succeeds" },
  pm_card_chargeCustomerFail: { last4: "0341", behavior: "declines" },
  pm_card_authenticationRequired: { last4: "3184", behavior: "requires_authentication" },
  // 4000 0000 0000 5126: the charge succeeds; a refund of it succeeds at first and fails later (refunds.ts).
  pm_card_refundFail: { last4: "5126", behavior: "refund_fails" },
};

// From the SDK's PaymentIntentCreateParams.
const PAYMENT_INTENT_CREATE_PARAMS = new Set([
  "amount",
  "currency",
  "allowed_payment_method_types",
  "amount_details",
  "application_fee_amount",
  "automatic_payment_methods",
  "capture_method",
  "confirm",
  "confirmation_method",
  "confirmation_token",
  "customer",
  "customer_account",
  "description",
  "error_on_requires_action",
  "excluded_payment_method_types",
  "expand",
  "hooks",
  "mandate",
  "mandate_data",
  "metadata",
  "off_session",
  "on_behalf_of",
  "payment_details",
  "payment_method",
  "payment_method_configuration",
  "payment_method_data",
  "payment_method_options",
  "radar_options",
  "receipt_email",
  "return_url",
  // Preview (Shared Payment Tokens, shared-payment.ts).
  "shared_payment_granted_token",
  "setup_future_usage",
  "shipping",
  "statement_descriptor",
  "statement_descriptor_suffix",
  "transfer_data",
  "transfer_group",
  "use_stripe_sdk",
]);
const PAYMENT_INTENT_RETRIEVE_PARAMS = new Set(["client_secret", "expand"]);
// From the SDK's PaymentIntentListParams.
const PAYMENT_INTENT_LIST_PARAMS = new Set(["created", "customer", "customer_account", "ending_before", "expand", "limit", "starting_after"]);
const RETRIEVE_PARAMS = new Set(["expand"]);
const LIST_PAYMENT_METHODS_PARAMS = new Set(["allow_redisplay", "ending_before", "expand", "limit", "starting_after", "type"]);
/** Smallest charge in USD: 50 cents (docs.stripe.com/currencies#minimum-and-maximum-charge-amounts). */
const MIN_AMOUNT: Record<string, number> = { usd: 50, eur: 50, gbp: 30, cad: 50, aud: 50 };
/** Eight digits of minor units. */
export const MAX_AMOUNT = 99_999_999;

const DECLINED: StripeErrorBody = {
  type: "card_error",
  code: "card_declined",
  decline_code: "generic_decline",
  message: "Your card was declined.",
  doc_url: "https://stripe.com/docs/error-codes/card-declined",
};
const AUTHENTICATION_REQUIRED: StripeErrorBody = {
  type: "card_error",
  code: "authentication_required",
  decline_code: "authentication_required",
  message: "Your card was declined. This transaction requires authentication.",
  doc_url: "https://stripe.com/docs/error-codes/authentication-required",
};

// ----------------------------------------------------------------------------- payment methods

/**
 * The payment method a request names: a test token becomes a fresh, unattached pm_…; a pm_… must
 * exist (400 `resource_missing` otherwise).
 */
export function resolvePaymentMethod(state: StripeState, idOrToken: string, param: string): Stripe.PaymentMethod {
  const card = TEST_PAYMENT_METHODS[idOrToken];
  if (card) return newPaymentMethod(state, card.last4, card.behavior);
  const pm = state.paymentMethods.get(idOrToken);
  if (!pm) throw invalid(`No such PaymentMethod: '${idOrToken}'`, { code: "resource_missing", param });
  return pm;
}

function newPaymentMethod(state: StripeState, last4: string, behavior: CardBehavior): Stripe.PaymentMethod {
  const id = newId("pm_");
  const pm: Stripe.PaymentMethod = {
    id,
    object: "payment_method",
    allow_redisplay: "unspecified",
    billing_details: {
      address: { city: null, country: null, line1: null, line2: null, postal_code: null, state: null },
      email: null,
      name: null,
      phone: null,
      tax_id: null,
    },
    card: {
      brand: "visa",
      checks: { address_line1_check: null, address_postal_code_check: null, cvc_check: "pass" },
      country: "US",
      display_brand: "visa",
      exp_month: 12,
      exp_year: new Date(state.nowMs()).getUTCFullYear() + 3,
      fingerprint: randomChars(16),
      funding: "credit",
      generated_from: null,
      last4,
      networks: { available: ["visa"], preferred: null },
      regulated_status: "unregulated",
      three_d_secure_usage: { supported: true },
      wallet: null,
    },
    created: state.nowSeconds(),
    customer: null,
    customer_account: null,
    livemode: false,
    metadata: {},
    type: "card",
  };
  state.paymentMethods.set(id, pm);
  state.cardBehavior.set(id, behavior);
  return pm;
}

/** Attaches a payment method to a customer, emitting `payment_method.attached`. */
export function attachPaymentMethod(state: StripeState, pm: Stripe.PaymentMethod, customerId: string, request: Stripe.Event.Request | null): void {
  pm.customer = customerId;
  state.emit("payment_method.attached", pm, undefined, request);
}

export function apiRetrievePaymentMethod(state: StripeState, id: string, params: Params): Stripe.PaymentMethod {
  checkKnown(params, RETRIEVE_PARAMS);
  readExpand(params, []);
  const pm = state.paymentMethods.get(id);
  if (!pm) throw noSuch("payment_method", id, "payment_method", 404);
  return pm;
}

export function apiListCustomerPaymentMethods(state: StripeState, customerId: string, params: Params, url: string): Stripe.ApiList<Stripe.PaymentMethod> {
  checkKnown(params, LIST_PAYMENT_METHODS_PARAMS);
  readExpand(params, []);
  state.liveCustomer(customerId, 404, "customer");
  const type = readString(params, "type");
  const limit = readInt(params, "limit") ?? 10;
  if (limit < 1 || limit > 100) throw invalid(`Invalid limit: must be between 1 and 100`, { param: "limit" });
  const attached = [...state.paymentMethods.values()].filter((pm) => pm.customer === customerId && (type === undefined || pm.type === type)).reverse();
  return paginate(attached, limit, readString(params, "starting_after"), readString(params, "ending_before"), url, "payment_method");
}

/** Customer payment methods, attached order (test-side reader). */
export function paymentMethodsOf(state: StripeState, customerId: string): Stripe.PaymentMethod[] {
  return [...state.paymentMethods.values()].filter((pm) => pm.customer === customerId).map(clone);
}

// ----------------------------------------------------------------------------- PaymentIntents

function readOffSession(params: Params): boolean | undefined {
  const v = params.off_session;
  if (v === "one_off" || v === "recurring") return true;
  return readBoolean(params, "off_session");
}

function readSetupFutureUsage(params: Params, param = "setup_future_usage"): "on_session" | "off_session" | null | undefined {
  const v = readString(params, param.split("[").pop()!.replace("]", ""));
  if (v === undefined) return undefined;
  if (v === "") return null;
  if (v !== "on_session" && v !== "off_session") {
    throw invalid(`Invalid ${param}: must be one of on_session or off_session`, { param });
  }
  return v;
}

export function apiCreatePaymentIntent(state: StripeState, params: Params, ctx: RequestContext): Stripe.PaymentIntent {
  checkKnown(params, PAYMENT_INTENT_CREATE_PARAMS);
  const expand = readExpand(params, ["latest_charge", "payment_method", "customer"]);
  const amount = readInt(params, "amount", { required: true }) as number;
  const currency = readCurrency(params, "currency", { required: true }) as string;
  if (amount < 1) throw invalid("This value must be greater than or equal to 1.", { param: "amount" });
  const min = MIN_AMOUNT[currency];
  if (min !== undefined && amount < min) {
    throw invalid(`Amount must be at least ${min} ${currency} minor units`, { code: "amount_too_small", param: "amount" });
  }
  // "The amount value supports up to eight digits" (docs.stripe.com/currencies#minimum-and-maximum-charge-amounts).
  if (amount > MAX_AMOUNT) throw invalid(`Amount must be no more than ${MAX_AMOUNT} ${currency} minor units`, { code: "amount_too_large", param: "amount" });

  const customerId = readString(params, "customer");
  const customer = customerId ? state.liveCustomer(customerId, 400, "customer") : undefined;
  const confirm = readBoolean(params, "confirm") ?? false;
  const offSession = readOffSession(params) ?? false;
  if (offSession && !confirm) {
    throw invalid("You can only pass `off_session` when `confirm` is `true`.", { param: "off_session" });
  }
  const setupFutureUsage = readSetupFutureUsage(params) ?? null;
  const description = readString(params, "description", { max: 1000 }) ?? null;
  const metadata = readMetadata(params);
  const receiptEmail = readString(params, "receipt_email") ?? null;
  const pmParam = readString(params, "payment_method");
  const sptParam = tokenParam(params);
  if (sptParam !== undefined && pmParam !== undefined)
    throw invalid("Pass either payment_method or shared_payment_granted_token, not both.", { param: "shared_payment_granted_token" });
  const spent = sptParam !== undefined ? spendToken(state, sptParam, amount, currency) : undefined;
  const pm = spent ? spent.pm : pmParam !== undefined ? resolvePaymentMethod(state, pmParam, "payment_method") : undefined;
  if (pm?.customer && pm.customer !== customer?.id) {
    throw invalid(
      customer
        ? `The provided PaymentMethod ${pm.id} belongs to another Customer than ${customer.id}.`
        : `The provided PaymentMethod ${pm.id} is attached to a Customer: pass that customer as \`customer\`.`,
      { param: "payment_method" },
    );
  }
  if (confirm && !pm) {
    throw invalid("You cannot confirm this PaymentIntent because it's missing a payment method.", {
      code: "parameter_missing",
      param: "payment_method",
    });
  }

  const pi = newPaymentIntent(state, {
    amount,
    currency,
    customer: customer?.id ?? null,
    description,
    metadata: metadata ? applyMetadata({}, metadata) : {},
    receiptEmail,
    setupFutureUsage,
    paymentMethod: pm?.id ?? null,
  });
  const request = eventRequest(ctx);
  state.emit("payment_intent.created", pi, undefined, request);
  if (!confirm) return paymentIntentView(state, pi, expand);

  const error = confirmPaymentIntent(state, pi, pm!, offSession, request);
  if (error) throw new ApiError(402, { ...error, payment_intent: paymentIntentView(state, pi, new Set()) }, { committed: true });
  if (spent && pi.status === "succeeded") tokenCaptured(spent.token, amount);
  if (spent && pi.status === "processing") tokenPending(pi, spent.token);
  return paymentIntentView(state, pi, expand);
}

export function apiRetrievePaymentIntent(state: StripeState, id: string, params: Params): Stripe.PaymentIntent {
  checkKnown(params, PAYMENT_INTENT_RETRIEVE_PARAMS);
  const expand = readExpand(params, ["latest_charge", "payment_method", "customer"]);
  const pi = state.paymentIntents.get(id);
  if (!pi) throw noSuch("payment_intent", id, "intent", 404);
  return paymentIntentView(state, pi, expand);
}

/**
 * `GET /v1/payment_intents`, newest first: `customer` and `created` (a timestamp, or
 * `created[gt|gte|lt|lte]`) filter, like Stripe's list.
 */
export function apiListPaymentIntents(state: StripeState, params: Params, url: string): Stripe.ApiList<Stripe.PaymentIntent> {
  checkKnown(params, PAYMENT_INTENT_LIST_PARAMS);
  readExpand(params, []);
  const customer = readString(params, "customer");
  const limit = readInt(params, "limit") ?? 10;
  if (limit < 1 || limit > 100) throw invalid(`Invalid limit: must be between 1 and 100`, { param: "limit" });
  const created = params.created;
  const bounds: Partial<Record<"gt" | "gte" | "lt" | "lte" | "eq", number>> = {};
  if (typeof created === "string") bounds.eq = parseIntParam(created, "created");
  else if (created !== undefined) {
    if (typeof created !== "object" || created === null || Array.isArray(created)) throw invalid("Invalid object", { param: "created" });
    for (const [op, value] of Object.entries(created as Params)) {
      if (op !== "gt" && op !== "gte" && op !== "lt" && op !== "lte") {
        throw invalid(`Received unknown parameter: created[${op}]`, { code: "parameter_unknown", param: `created[${op}]` });
      }
      bounds[op] = parseIntParam(value, `created[${op}]`);
    }
  }
  const inRange = (t: number) =>
    (bounds.eq === undefined || t === bounds.eq) &&
    (bounds.gt === undefined || t > bounds.gt) &&
    (bounds.gte === undefined || t >= bounds.gte) &&
    (bounds.lt === undefined || t < bounds.lt) &&
    (bounds.lte === undefined || t <= bounds.lte);
  const matching = [...state.paymentIntents.values()]
    .filter((pi) => (customer === undefined || pi.customer === customer) && inRange(pi.created))
    .reverse()
    .map((pi) => paymentIntentView(state, pi, new Set()));
  return paginate(matching, limit, readString(params, "starting_after"), readString(params, "ending_before"), url, "payment_intent");
}

function paymentIntentView(state: StripeState, pi: Stripe.PaymentIntent, expand: ReadonlySet<string>): Stripe.PaymentIntent {
  const view = clone(pi);
  if (expand.has("latest_charge") && typeof pi.latest_charge === "string") view.latest_charge = chargeView(state.charges.get(pi.latest_charge)!);
  if (expand.has("payment_method") && typeof pi.payment_method === "string") view.payment_method = clone(state.paymentMethods.get(pi.payment_method)!);
  if (expand.has("customer") && typeof pi.customer === "string") view.customer = clone(state.customers.get(pi.customer)!);
  return view;
}

interface NewPaymentIntent {
  amount: number;
  currency: string;
  customer: string | null;
  description: string | null;
  metadata: Stripe.Metadata;
  receiptEmail: string | null;
  setupFutureUsage: "on_session" | "off_session" | null;
  paymentMethod: string | null;
}

function newPaymentIntent(state: StripeState, input: NewPaymentIntent): Stripe.PaymentIntent {
  const id = newId("pi_");
  const pi: Stripe.PaymentIntent = {
    id,
    object: "payment_intent",
    allowed_payment_method_types: null,
    amount: input.amount,
    amount_capturable: 0,
    amount_details: { tip: {} },
    amount_received: 0,
    application: null,
    application_fee_amount: null,
    automatic_payment_methods: null,
    canceled_at: null,
    cancellation_reason: null,
    capture_method: "automatic",
    client_secret: `${id}_secret_${randomChars(25)}`,
    confirmation_method: "automatic",
    created: state.nowSeconds(),
    currency: input.currency,
    customer: input.customer,
    customer_account: null,
    description: input.description,
    excluded_payment_method_types: null,
    last_payment_error: null,
    latest_charge: null,
    livemode: false,
    managed_payments: null,
    metadata: input.metadata,
    next_action: null,
    on_behalf_of: null,
    payment_method: input.paymentMethod,
    payment_method_configuration_details: null,
    payment_method_options: {
      card: { installments: null, mandate_options: null, network: null, request_three_d_secure: "automatic" },
    },
    payment_method_types: ["card"],
    payment_record: null,
    processing: null,
    receipt_email: input.receiptEmail,
    review: null,
    setup_future_usage: input.setupFutureUsage,
    shipping: null,
    source: null,
    statement_descriptor: null,
    statement_descriptor_suffix: null,
    status: input.paymentMethod ? "requires_confirmation" : "requires_payment_method",
    transfer_data: null,
    transfer_group: null,
  };
  state.paymentIntents.set(id, pi);
  return pi;
}

/**
 * Confirms with the payment method's test-card behaviour. Success: a succeeded Charge,
 * `charge.succeeded` + `payment_intent.succeeded`, and the card attached to the customer when
 * `setup_future_usage` asks for it. Decline: a failed Charge, `charge.failed` +
 * `payment_intent.payment_failed`, and the error body to answer with 402.
 */
function confirmPaymentIntent(
  state: StripeState,
  pi: Stripe.PaymentIntent,
  pm: Stripe.PaymentMethod,
  offSession: boolean,
  request: Stripe.Event.Request | null,
): StripeErrorBody | undefined {
  pi.payment_method = pm.id;
  const behavior = state.cardBehavior.get(pm.id) ?? "succeeds";
  if (behavior === "requires_authentication" && !offSession) {
    pi.status = "requires_action";
    pi.next_action = {
      type: "use_stripe_sdk",
      use_stripe_sdk: { type: "three_d_secure_redirect", stripe_js: `https://hooks.stripe.com/3d_secure_2/hosted?payment_intent=${pi.id}` },
    };
    state.emit("payment_intent.requires_action", pi, undefined, request);
    return undefined;
  }
  if (behavior === "settles_later") {
    pi.status = "processing";
    pi.processing = { type: "card" };
    state.emit("payment_intent.processing", pi, undefined, request);
    return undefined;
  }
  if (behavior === "succeeds" || behavior === "refund_fails") {
    const charge = newCharge(state, pi, pm, null);
    pi.latest_charge = charge.id;
    pi.amount_received = pi.amount;
    pi.status = "succeeded";
    if (pi.setup_future_usage && typeof pi.customer === "string" && !pm.customer) attachPaymentMethod(state, pm, pi.customer, request);
    state.emit("charge.succeeded", chargeView(charge), undefined, request);
    state.emit("payment_intent.succeeded", pi, undefined, request);
    return undefined;
  }
  const error = behavior === "declines" ? DECLINED : AUTHENTICATION_REQUIRED;
  const charge = newCharge(state, pi, pm, error);
  pi.latest_charge = charge.id;
  pi.status = "requires_payment_method";
  pi.last_payment_error = {
    type: "card_error",
    code: error.code,
    decline_code: error.decline_code,
    doc_url: error.doc_url,
    message: error.message,
    charge: charge.id,
    payment_method: clone(pm),
  };
  pi.payment_method = null;
  state.emit("charge.failed", chargeView(charge), undefined, request);
  state.emit("payment_intent.payment_failed", pi, undefined, request);
  return { ...error, charge: charge.id, payment_method: clone(pm) };
}

/**
 * The PaymentIntent and Charge of a completed payment-mode Checkout session: `cardToken`'s card
 * is attached to the session's customer when the session asked for setup_future_usage. Events
 * are returned, not emitted, so that checkout.session.completed can come first.
 */
export function payForCheckout(
  state: StripeState,
  session: Stripe.Checkout.Session,
  cardToken: string,
  opts: { pending: boolean },
): { paymentIntent: Stripe.PaymentIntent; emit: () => void } {
  const card = TEST_PAYMENT_METHODS[cardToken];
  if (!card) throw new Error(`completeCheckout: unknown test payment method ${cardToken}`);
  if (card.behavior === "declines") {
    throw new Error(`${cardToken} declines every charge: a real Checkout session would stay open, not complete`);
  }
  const data = state.sessionPaymentData.get(session.id) ?? { setupFutureUsage: null, description: null, metadata: {} };
  const pm = newPaymentMethod(state, card.last4, card.behavior);
  const customer = typeof session.customer === "string" ? session.customer : null;
  const pi = newPaymentIntent(state, {
    amount: session.amount_total ?? 0,
    currency: session.currency ?? state.defaultCurrency,
    customer,
    description: data.description,
    metadata: { ...data.metadata },
    receiptEmail: null,
    setupFutureUsage: data.setupFutureUsage,
    paymentMethod: pm.id,
  });
  // Checkout authenticates on session, so even pm_card_authenticationRequired pays here.
  const attach = data.setupFutureUsage !== null && customer !== null;
  if (opts.pending) {
    pi.status = "processing";
    pi.processing = { type: "card" };
    return {
      paymentIntent: pi,
      emit: () => {
        if (attach) attachPaymentMethod(state, pm, customer, null);
        state.emit("payment_intent.created", pi, undefined, null);
      },
    };
  }
  const charge = newCharge(state, pi, pm, null);
  pi.latest_charge = charge.id;
  pi.amount_received = pi.amount;
  pi.status = "succeeded";
  return {
    paymentIntent: pi,
    emit: () => {
      if (attach) attachPaymentMethod(state, pm, customer, null);
      state.emit("payment_intent.created", pi, undefined, null);
      state.emit("charge.succeeded", chargeView(charge), undefined, null);
      state.emit("payment_intent.succeeded", pi, undefined, null);
    },
  };
}

/** Settles a `processing` PaymentIntent (a Checkout's async payment method, or a token's, shared-payment.ts). */
export function settleCheckoutPayment(state: StripeState, piId: string, succeeded: boolean): void {
  const pi = state.paymentIntents.get(piId);
  if (pi?.status !== "processing") return;
  const pm = state.paymentMethods.get(pi.payment_method as string)!;
  pi.processing = null;
  if (succeeded) {
    tokenSettled(pi);
    const charge = newCharge(state, pi, pm, null);
    pi.latest_charge = charge.id;
    pi.amount_received = pi.amount;
    pi.status = "succeeded";
    state.emit("charge.succeeded", chargeView(charge), undefined, null);
    state.emit("payment_intent.succeeded", pi, undefined, null);
  } else {
    pi.status = "requires_payment_method";
    pi.last_payment_error = { type: "card_error", code: DECLINED.code, decline_code: DECLINED.decline_code, message: DECLINED.message };
    state.emit("payment_intent.payment_failed", pi, undefined, null);
  }
}

/** A card Charge: the card's details, and an issuer's outcome (approved, or the failure's decline). */
function newCharge(state: StripeState, pi: Stripe.PaymentIntent, pm: Stripe.PaymentMethod, failure: StripeErrorBody | null): Stripe.Charge {
  const ok = failure === null;
  const card = pm.card!;
  const outcome: Stripe.Charge.Outcome = {
    advice_code: null,
    network_advice_code: null,
    network_decline_code: null,
    network_status: ok ? "approved_by_network" : "declined_by_network",
    reason: failure?.decline_code ?? null,
    risk_level: "normal",
    risk_score: 32,
    seller_message: ok ? "Payment complete." : "The bank did not return any further details with this decline.",
    type: ok ? "authorized" : "issuer_declined",
  };
  return chargeObject(state, pi, pm, {
    failure,
    outcome,
    details: {
      card: {
        amount_authorized: ok ? pi.amount : null,
        authorization_code: ok ? randomChars(6, "0123456789") : null,
        brand: card.brand,
        checks: clone(card.checks),
        country: card.country,
        electronic_commerce_indicator: null,
        exp_month: card.exp_month,
        exp_year: card.exp_year,
        extended_authorization: { status: "disabled" },
        fingerprint: card.fingerprint,
        funding: card.funding,
        incremental_authorization: { status: "unavailable" },
        installments: null,
        last4: card.last4,
        mandate: null,
        multicapture: { status: "unavailable" },
        network: "visa",
        network_token: { used: false },
        network_transaction_id: ok ? randomChars(15, "0123456789") : null,
        overcapture: { maximum_amount_capturable: pi.amount, status: "unavailable" },
        regulated_status: "unregulated",
        three_d_secure: null,
        transaction_link_id: null,
        wallet: null,
      },
      type: "card",
    },
  });
}
