/**
 * Checkout sessions. Completing a payment-mode session (`completeCheckout`) creates the
 * PaymentIntent and the Charge it paid with, so that refunds and disputes can refer to them; a
 * session created with `payment_intent_data[setup_future_usage]` and a `customer` also attaches
 * the card to that customer (the API reference of `payment_intent_data.setup_future_usage`,
 * https://docs.stripe.com/api/checkout/sessions/create: "If a Customer has been provided or
 * Checkout creates a new Customer, Checkout will attach the payment method to the Customer"; the
 * double never creates one). `checkout.session.completed` is emitted first, then `payment_method.attached`,
 * `payment_intent.created`, `charge.succeeded` and `payment_intent.succeeded` (Stripe does not
 * order deliveries).
 * Completing a checkout never changes a customer balance: the gateway credits it itself.
 */
import type Stripe from "stripe";
import { buildInvoice } from "./billing";
import { applyTaxAtCompletion, invoiceForSession, readSessionExtras, readTaxBehavior, type SessionExtras, type TaxInputs } from "./checkout-tax";
import { applyMetadata, checkKnown, clone, invalid, missing, noSuch, type Params, parseIntParam, randomChars, readBoolean, readExpand, readMetadata, readString } from "./common";
import type { StripeState } from "./core";
import { MAX_AMOUNT, payForCheckout, settleCheckoutPayment } from "./payments";

// From the SDK's SessionCreateParams and SessionCreateParams.PaymentIntentData.
const SESSION_CREATE_PARAMS = new Set([
  "adaptive_pricing",
  "after_expiration",
  "allow_promotion_codes",
  "allowed_payment_method_types",
  "automatic_tax",
  "billing_address_collection",
  "branding_settings",
  "cancel_url",
  "client_reference_id",
  "consent_collection",
  "currency",
  "custom_fields",
  "custom_text",
  "customer",
  "customer_account",
  "customer_creation",
  "customer_email",
  "customer_update",
  "discounts",
  "excluded_payment_method_types",
  "expand",
  "expires_at",
  "integration_identifier",
  "invoice_creation",
  "line_items",
  "locale",
  "managed_payments",
  "metadata",
  "mode",
  "name_collection",
  "optional_items",
  "origin_context",
  "payment_intent_data",
  "payment_method_collection",
  "payment_method_configuration",
  "payment_method_data",
  "payment_method_options",
  "permissions",
  "phone_number_collection",
  "redirect_on_completion",
  "return_url",
  "saved_payment_method_options",
  "setup_intent_data",
  "shipping_address_collection",
  "shipping_options",
  "submit_type",
  "subscription_data",
  "success_url",
  "tax_id_collection",
  "ui_mode",
  "wallet_options",
]);
const PAYMENT_INTENT_DATA_PARAMS = new Set([
  "application_fee_amount",
  "capture_method",
  "description",
  "metadata",
  "on_behalf_of",
  "receipt_email",
  "setup_future_usage",
  "shipping",
  "statement_descriptor",
  "statement_descriptor_suffix",
  "transfer_data",
  "transfer_group",
]);
const RETRIEVE_PARAMS = new Set(["expand"]);
const DECIMAL_SCALE = 10n ** 12n;

function readPaymentIntentData(params: Params, mode: string) {
  const raw = params.payment_intent_data;
  const out = { setupFutureUsage: null as "on_session" | "off_session" | null, description: null as string | null, metadata: {} as Stripe.Metadata };
  if (raw === undefined) return out;
  if (mode !== "payment") {
    throw invalid("You can only specify `payment_intent_data` in `payment` mode.", { param: "payment_intent_data" });
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw invalid("Invalid object", { param: "payment_intent_data" });
  const data = raw as Params;
  for (const key of Object.keys(data)) {
    if (!PAYMENT_INTENT_DATA_PARAMS.has(key)) {
      throw invalid(`Received unknown parameter: payment_intent_data[${key}]`, { code: "parameter_unknown", param: `payment_intent_data[${key}]` });
    }
  }
  const sfu = readString(data, "setup_future_usage");
  if (sfu !== undefined) {
    if (sfu !== "on_session" && sfu !== "off_session") {
      throw invalid("Invalid payment_intent_data[setup_future_usage]: must be one of on_session or off_session", {
        param: "payment_intent_data[setup_future_usage]",
      });
    }
    out.setupFutureUsage = sfu;
  }
  out.description = readString(data, "description") ?? null;
  const metadata = readMetadata(data);
  if (metadata) out.metadata = applyMetadata({}, metadata);
  return out;
}

export function apiRetrieveSession(state: StripeState, id: string, params: Params): Stripe.Checkout.Session {
  checkKnown(params, RETRIEVE_PARAMS);
  readExpand(params, []);
  const s = state.sessions.get(id);
  if (!s) throw noSuch("checkout.session", id, "session", 404);
  return s;
}

export function apiCreateSession(state: StripeState, params: Params): Stripe.Checkout.Session {
  checkKnown(params, SESSION_CREATE_PARAMS);
  const mode = readString(params, "mode", { required: true }) as string;
  if (!["payment", "setup", "subscription"].includes(mode)) {
    throw invalid(`Invalid mode: must be one of payment, setup, or subscription`, { param: "mode" });
  }
  const customerId = readString(params, "customer");
  const customerEmail = readString(params, "customer_email");
  if (customerId && customerEmail) {
    throw invalid("You may only specify one of these parameters: customer, customer_email.");
  }
  const customer = customerId ? state.liveCustomer(customerId, 400, "customer") : undefined;
  const successUrl = readString(params, "success_url") ?? null;
  const cancelUrl = readString(params, "cancel_url") ?? null;
  const clientReferenceId = readString(params, "client_reference_id") ?? null;
  const metadata = readMetadata(params);
  const customerCreation = readString(params, "customer_creation");
  const paymentData = readPaymentIntentData(params, mode);
  // "Defaults to your dashboard setting" (SDK SessionCreateParams.AdaptivePricing): on in this double's dashboard.
  const adaptive = params.adaptive_pricing;
  if (adaptive !== undefined && (typeof adaptive !== "object" || adaptive === null || Array.isArray(adaptive))) throw invalid("Invalid object", { param: "adaptive_pricing" });
  const adaptivePricing = (adaptive === undefined ? undefined : readBoolean(adaptive as Params, "enabled")) ?? true;

  let currency: string | null = readString(params, "currency")?.toLowerCase() ?? null;
  let amount: number | null = null;
  const taxBehaviors: SessionExtras["taxBehavior"][] = [];
  const rawItems = params.line_items;
  if (mode !== "setup") {
    if (rawItems === undefined) throw missing("line_items");
    if (!Array.isArray(rawItems) || rawItems.length === 0) throw invalid("Invalid array", { param: "line_items" });
    amount = 0;
    rawItems.forEach((raw, i) => {
      const p = `line_items[${i}]`;
      if (typeof raw !== "object" || raw === null) throw invalid("Invalid object", { param: p });
      const item = raw as Params;
      const price = item.price;
      if (typeof price === "string" && price !== "") throw noSuch("price", price, `${p}[price]`, 400);
      const pd = item.price_data;
      if (typeof pd !== "object" || pd === null) {
        throw invalid(`You must specify either \`price\` or \`price_data\` for each line item.`, { param: p });
      }
      const priceData = pd as Params;
      const cur = readString(priceData, "currency");
      if (!cur) throw missing(`${p}[price_data][currency]`);
      if (priceData.product === undefined && priceData.product_data === undefined) {
        throw invalid("You must specify either `product` or `product_data` when creating a price.", {
          param: `${p}[price_data]`,
        });
      }
      taxBehaviors.push(readTaxBehavior(priceData, `${p}[price_data][tax_behavior]`));
      const product = priceData.product_data;
      if (product !== undefined && (typeof product !== "object" || product === null || !(product as Params).name)) {
        throw missing(`${p}[price_data][product_data][name]`);
      }
      // Unit price in 1e-12 minor units (unit_amount_decimal has at most 12 decimals): no floats.
      let unit: bigint;
      if (priceData.unit_amount !== undefined) {
        unit = BigInt(parseIntParam(priceData.unit_amount, `${p}[price_data][unit_amount]`)) * DECIMAL_SCALE;
      } else if (typeof priceData.unit_amount_decimal === "string" && /^\d+(\.\d{1,12})?$/.test(priceData.unit_amount_decimal)) {
        const [whole, frac = ""] = priceData.unit_amount_decimal.split(".");
        unit = BigInt(whole!) * DECIMAL_SCALE + BigInt(frac.padEnd(12, "0"));
      } else {
        throw missing(`${p}[price_data][unit_amount]`);
      }
      if (unit < 0n) throw invalid("This value must be greater than or equal to 0.", { param: `${p}[price_data][unit_amount]` });
      if (item.quantity === undefined) throw missing(`${p}[quantity]`);
      const qty = parseIntParam(item.quantity, `${p}[quantity]`);
      if (qty < 1) throw invalid("This value must be greater than or equal to 1.", { param: `${p}[quantity]` });
      const c = cur.toLowerCase();
      if (currency && currency !== c) {
        throw invalid("All line items must have the same currency.", { param: `${p}[price_data][currency]` });
      }
      currency = c;
      // Round half up to a whole minor unit.
      amount = (amount ?? 0) + Number((unit * BigInt(qty) + DECIMAL_SCALE / 2n) / DECIMAL_SCALE);
    });
  }

  const { extras, paymentMethodTypes } = readSessionExtras(params, { mode, customer, currency, saving: paymentData.setupFutureUsage !== null, taxBehaviors });
  const allowed = Array.isArray(params.allowed_payment_method_types) ? (params.allowed_payment_method_types as string[]) : null;
  if (amount !== null && amount > MAX_AMOUNT) throw invalid(`Amount must be no more than ${MAX_AMOUNT} ${currency} minor units`, { code: "amount_too_large", param: "line_items" });
  const created = state.nowSeconds();
  const id = `cs_test_a1${randomChars(58)}`;
  const session: Stripe.Checkout.Session = {
    id,
    object: "checkout.session",
    adaptive_pricing: { enabled: adaptivePricing },
    after_expiration: null,
    allow_promotion_codes: null,
    allowed_payment_method_types: allowed as Stripe.Checkout.Session["allowed_payment_method_types"],
    amount_subtotal: amount,
    amount_total: amount,
    automatic_tax: extras.automaticTax
      ? { enabled: true, liability: { type: "self" }, provider: null, status: "requires_location_inputs" }
      : { enabled: false, liability: null, provider: null, status: null },
    billing_address_collection: null,
    cancel_url: cancelUrl,
    client_reference_id: clientReferenceId,
    client_secret: null,
    collected_information: null,
    consent: null,
    consent_collection: null,
    created,
    currency,
    currency_conversion: null,
    custom_fields: [],
    custom_text: { after_submit: null, shipping_address: null, submit: null, terms_of_service_acceptance: null },
    customer: customer ? customer.id : null,
    customer_account: null,
    customer_creation: customer ? null : ((customerCreation as Stripe.Checkout.Session.CustomerCreation | undefined) ?? (mode === "payment" ? "if_required" : "always")),
    customer_details: customerEmail
      ? { address: null, business_name: null, email: customerEmail, individual_name: null, name: null, phone: null, tax_exempt: "none", tax_ids: null }
      : null,
    customer_email: customerEmail ?? null,
    discounts: [],
    expires_at: created + 24 * 60 * 60,
    integration_identifier: null,
    invoice: null,
    invoice_creation:
      mode === "payment"
        ? {
            enabled: extras.invoice !== null,
            invoice_data: {
              account_tax_ids: null,
              custom_fields: null,
              description: extras.invoice?.description ?? null,
              footer: null,
              issuer: null,
              metadata: { ...(extras.invoice?.metadata ?? {}) },
              rendering_options: null,
            },
          }
        : null,
    livemode: false,
    locale: null,
    managed_payments: null,
    metadata: metadata ? applyMetadata({}, metadata) : {},
    mode,
    origin_context: null,
    payment_intent: null,
    payment_link: null,
    payment_method_collection: "if_required",
    payment_method_configuration_details: null,
    payment_method_options: {},
    payment_method_types: paymentMethodTypes,
    payment_status: mode === "setup" ? "no_payment_required" : "unpaid",
    permissions: null,
    phone_number_collection: { enabled: false },
    recovered_from: null,
    saved_payment_method_options: customer ? { allow_redisplay_filters: ["always"], payment_method_remove: null, payment_method_save: null } : null,
    setup_intent: null,
    shipping_address_collection: null,
    shipping_cost: null,
    shipping_options: [],
    status: "open",
    submit_type: null,
    subscription: null,
    success_url: successUrl,
    tax_id_collection: { enabled: extras.taxIdCollection, required: "never" },
    total_details: mode === "setup" ? null : { amount_discount: 0, amount_shipping: 0, amount_tax: 0 },
    ui_mode: "hosted",
    url: `https://checkout.stripe.test/c/pay/${id}`,
    wallet_options: null,
  };
  state.sessions.set(id, session);
  if (mode === "payment") state.sessionPaymentData.set(id, paymentData);
  state.sessionExtras.set(id, extras);
  return session;
}

// ----------------------------------------------------------------------------- test-side helpers

export interface CompleteCheckoutOptions extends TaxInputs {
  /**
   * A delayed payment method: the session completes with payment_status "unpaid" and a
   * `processing` PaymentIntent; call `succeedAsyncPayment` (or `failAsyncPayment`) afterwards.
   */
  async?: boolean;
  /** The test card the customer pays with. Default "pm_card_visa". */
  paymentMethod?: string;
  /**
   * Adaptive Pricing: the customer pays in this currency (at a rate of 1 in this double); the
   * session's `currency` and amounts are then the customer's, `currency_conversion` keeps the
   * creation currency. Refused when the session has `adaptive_pricing.enabled: false`.
   */
  localCurrency?: string;
}

/** Mark a checkout session complete and emit `checkout.session.completed` (see the file header). */
export function completeCheckout(state: StripeState, sessionId: string, opts: CompleteCheckoutOptions = {}): Stripe.Checkout.Session {
  const s = state.sessions.get(sessionId);
  if (!s) throw new Error(`no such checkout session ${sessionId}`);
  if (s.status !== "open") throw new Error(`checkout session ${sessionId} is ${s.status}, not open`);
  let after: (() => void) | undefined;
  if (opts.localCurrency && opts.localCurrency !== s.currency) {
    if (!s.adaptive_pricing?.enabled) throw new Error(`checkout session ${sessionId} has Adaptive Pricing off: it is paid in ${s.currency}`);
    s.currency_conversion = { amount_subtotal: s.amount_subtotal ?? 0, amount_total: s.amount_total ?? 0, fx_rate: "1" as never, source_currency: s.currency! };
    s.currency = opts.localCurrency;
  }
  const cust = typeof s.customer === "string" ? state.customers.get(s.customer) : undefined;
  s.customer_details = {
    address: cust?.address ? { ...cust.address } : { city: null, country: "US", line1: null, line2: null, postal_code: "94103", state: null },
    business_name: null,
    email: cust?.email ?? s.customer_email ?? s.customer_details?.email ?? "customer@example.com",
    individual_name: null,
    name: cust?.name ?? null,
    phone: null,
    tax_exempt: "none",
    tax_ids: [],
  };
  // The tax (on the address just collected) is part of what is paid.
  const extras = state.sessionExtras.get(s.id);
  applyTaxAtCompletion(state, s, extras, opts);
  if (s.mode === "payment") {
    const paid = payForCheckout(state, s, opts.paymentMethod ?? "pm_card_visa", { pending: opts.async ?? false });
    s.payment_intent = paid.paymentIntent.id;
    after = paid.emit;
  }
  s.status = "complete";
  if (s.mode !== "setup") s.payment_status = opts.async ? "unpaid" : "paid";
  if (s.mode === "setup") s.setup_intent = `seti_${randomChars(24)}`;
  s.url = null;
  const invoiced = invoiceForSession(state, s, extras, (customer, id) => buildInvoice(state, customer, "invoice.paid", id, { currency: s.currency! }));
  state.emit("checkout.session.completed", s, undefined, null);
  after?.();
  invoiced();
  return clone(s);
}

function asyncPending(state: StripeState, sessionId: string): Stripe.Checkout.Session {
  const s = state.sessions.get(sessionId);
  if (!s) throw new Error(`no such checkout session ${sessionId}`);
  if (s.status !== "complete" || s.payment_status !== "unpaid") {
    throw new Error(`checkout session ${sessionId} has no pending async payment (status ${s.status}, payment_status ${s.payment_status})`);
  }
  return s;
}

/** For an async-completed session: payment_status → "paid", emits `checkout.session.async_payment_succeeded`. */
export function succeedAsyncPayment(state: StripeState, sessionId: string): Stripe.Checkout.Session {
  const s = asyncPending(state, sessionId);
  s.payment_status = "paid";
  const invoiced = invoiceForSession(state, s, state.sessionExtras.get(s.id), (customer, id) => buildInvoice(state, customer, "invoice.paid", id, { currency: s.currency! }));
  state.emit("checkout.session.async_payment_succeeded", s, undefined, null);
  if (typeof s.payment_intent === "string") settleCheckoutPayment(state, s.payment_intent, true);
  invoiced();
  return clone(s);
}

/** For an async-completed session: emits `checkout.session.async_payment_failed` (payment_status stays "unpaid"). */
export function failAsyncPayment(state: StripeState, sessionId: string): Stripe.Checkout.Session {
  const s = asyncPending(state, sessionId);
  state.emit("checkout.session.async_payment_failed", s, undefined, null);
  if (typeof s.payment_intent === "string") settleCheckoutPayment(state, s.payment_intent, false);
  return clone(s);
}

/** Expire an open session, emitting `checkout.session.expired`. */
export function expireCheckout(state: StripeState, sessionId: string): Stripe.Checkout.Session {
  const s = state.sessions.get(sessionId);
  if (!s) throw new Error(`no such checkout session ${sessionId}`);
  if (s.status !== "open") throw new Error(`checkout session ${sessionId} is ${s.status}, not open`);
  s.status = "expired";
  s.url = null;
  state.emit("checkout.session.expired", s, undefined, null);
  return clone(s);
}
