/**
 * What a Checkout session does beyond the payment: the post-purchase invoice
 * (`invoice_creation`), Stripe Tax (`automatic_tax`, `tax_id_collection`), what Checkout may save
 * on an existing customer (`customer_update`) and the payment methods it offers
 * (`allowed_payment_method_types`). Parameters and shapes from the SDK's SessionCreateParams
 * and Session (stripe-node 23, API 2026-10-28.endive), from Stripe's OpenAPI spec
 * (github.com/stripe/openapi), and Stripe's guides:
 * - docs.stripe.com/payments/checkout/receipts (post-purchase invoices in payment mode),
 * - docs.stripe.com/tax/checkout: for an existing customer Checkout uses the customer's saved
 *   address, and saves the one entered only when asked (`customer_update[address]=auto`);
 * - docs.stripe.com/tax/checkout/tax-ids: with an existing customer, collecting a business name
 *   could override the customer's name, so `customer_update[name]=auto` is required.
 * Choices of the double (its "Dashboard"): card, link and crypto are enabled; crypto settles in
 * USD only and cannot be saved for later (setup_future_usage); no default tax behavior is set, so
 * automatic tax needs `tax_behavior` on every price; tax is a flat rate (10% unless the test says
 * otherwise) on the collected address.
 */
import type Stripe from "stripe";
import { applyMetadata, invalid, missing, newId, type Params, readBoolean, readMetadata, readString } from "./common";
import type { StripeState } from "./core";

// From the SDK's SessionCreateParams.InvoiceCreation(.InvoiceData), AutomaticTax, TaxIdCollection, CustomerUpdate.
const INVOICE_CREATION_PARAMS = new Set(["enabled", "invoice_data"]);
const INVOICE_DATA_PARAMS = new Set(["account_tax_ids", "custom_fields", "description", "footer", "issuer", "metadata", "rendering_options"]);
const AUTOMATIC_TAX_PARAMS = new Set(["enabled", "liability"]);
const TAX_ID_COLLECTION_PARAMS = new Set(["enabled", "required"]);
const CUSTOMER_UPDATE_PARAMS = new Set(["address", "name", "shipping"]);
// SessionCreateParams.AllowedPaymentMethodType.
const PAYMENT_METHOD_TYPES = new Set(
  (
    "acss_debit affirm afterpay_clearpay alipay alma amazon_pay au_becs_debit bacs_debit bancontact billie bizum blik boleto card cashapp crypto " +
    "customer_balance eps fpx giropay grabpay ideal kakao_pay klarna konbini kr_card link mb_way mobilepay multibanco naver_pay nz_bank_account " +
    "oxxo p24 pay_by_bank payco paynow paypal paypay payto pix promptpay revolut_pay samsung_pay satispay scalapay sepa_debit sequra sofort " +
    "sunbit swish twint upi us_bank_account wechat_pay zip"
  ).split(" "),
);
/** The double's Dashboard: the payment methods turned on. */
export const DASHBOARD_PAYMENT_METHODS = ["card", "link", "crypto"];
export const DEFAULT_TAX_RATE_BASIS_POINTS = 1000;

/** What a session was created with, applied when it completes. */
export interface SessionExtras {
  invoice: { description: string | null; metadata: Stripe.Metadata } | null;
  automaticTax: boolean;
  taxIdCollection: boolean;
  customerUpdate: { address: "auto" | "never"; name: "auto" | "never" } | null;
  taxBehavior: "exclusive" | "inclusive" | "unspecified" | null;
}

function object(params: Params, name: string, allowed: ReadonlySet<string>): Params | undefined {
  const v = params[name];
  if (v === undefined) return undefined;
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw invalid("Invalid object", { param: name });
  for (const key of Object.keys(v)) {
    if (!allowed.has(key)) throw invalid(`Received unknown parameter: ${name}[${key}]`, { code: "parameter_unknown", param: `${name}[${key}]` });
  }
  return v as Params;
}

function requiredBoolean(p: Params, parent: string): boolean {
  const v = readBoolean(p, "enabled");
  if (v === undefined) throw missing(`${parent}[enabled]`);
  return v;
}

function autoOrNever(p: Params, name: string): "auto" | "never" | undefined {
  const v = readString(p, name);
  if (v === undefined) return undefined;
  if (v !== "auto" && v !== "never") throw invalid(`Invalid customer_update[${name}]: must be one of auto or never`, { param: `customer_update[${name}]` });
  return v;
}

/** `price_data[tax_behavior]` of a line item, checked. */
export function readTaxBehavior(priceData: Params, param: string): SessionExtras["taxBehavior"] {
  const v = readString(priceData, "tax_behavior");
  if (v === undefined) return null;
  if (v !== "exclusive" && v !== "inclusive" && v !== "unspecified") throw invalid(`Invalid ${param}: must be one of exclusive, inclusive, or unspecified`, { param });
  return v;
}

/**
 * Reads and checks the session's invoice, tax, customer update and payment method parameters
 * against Stripe's rules; returns what completion applies and the payment method types offered.
 */
export function readSessionExtras(
  params: Params,
  ctx: { mode: string; customer: Stripe.Customer | undefined; currency: string | null; saving: boolean; taxBehaviors: SessionExtras["taxBehavior"][] },
): { extras: SessionExtras; paymentMethodTypes: string[] } {
  const invoiceCreation = object(params, "invoice_creation", INVOICE_CREATION_PARAMS);
  let invoice: SessionExtras["invoice"] = null;
  if (invoiceCreation) {
    if (ctx.mode !== "payment") throw invalid("You can only specify `invoice_creation` in `payment` mode.", { param: "invoice_creation" });
    const data = object(invoiceCreation, "invoice_data", INVOICE_DATA_PARAMS) ?? {};
    const metadata = readMetadata(data);
    if (requiredBoolean(invoiceCreation, "invoice_creation")) {
      invoice = { description: readString(data, "description", { max: 1500 }) ?? null, metadata: metadata ? applyMetadata({}, metadata) : {} };
    }
  }
  const tax = object(params, "automatic_tax", AUTOMATIC_TAX_PARAMS);
  const automaticTax = tax ? requiredBoolean(tax, "automatic_tax") : false;
  const ids = object(params, "tax_id_collection", TAX_ID_COLLECTION_PARAMS);
  const taxIdCollection = ids ? requiredBoolean(ids, "tax_id_collection") : false;
  const update = object(params, "customer_update", CUSTOMER_UPDATE_PARAMS);
  if (update && !ctx.customer) throw invalid("`customer_update` can only be used with `customer`.", { param: "customer_update" });
  const customerUpdate = update ? { address: autoOrNever(update, "address") ?? "never", name: autoOrNever(update, "name") ?? "never" } : null;
  autoOrNever(update ?? {}, "shipping");

  if (automaticTax) {
    if (ctx.taxBehaviors.some((b) => b === null || b === "unspecified")) {
      throw invalid("To use automatic tax, set a tax_behavior on every price (line_items[][price_data][tax_behavior]) or a default tax behavior in your tax settings.", {
        param: "line_items",
      });
    }
    if (ctx.customer && !ctx.customer.address && customerUpdate?.address !== "auto") {
      throw invalid(
        "Automatic tax calculation in Checkout requires a valid address on the Customer. Add a valid address to the Customer or set `customer_update[address]` to 'auto' to save the address entered in Checkout to the Customer.",
        { param: "customer_update[address]" },
      );
    }
  }
  if (taxIdCollection && ctx.customer && customerUpdate?.name !== "auto") {
    throw invalid("Tax ID collection for an existing customer requires `customer_update[name]` to be 'auto': the business name collected is saved on the customer.", {
      param: "customer_update[name]",
    });
  }

  const raw = params.allowed_payment_method_types;
  let allowed: string[] | null = null;
  if (raw !== undefined) {
    if (!Array.isArray(raw) || raw.length === 0) throw invalid("Invalid array", { param: "allowed_payment_method_types" });
    allowed = raw.map((t, i) => {
      if (typeof t !== "string" || !PAYMENT_METHOD_TYPES.has(t))
        throw invalid(`Invalid allowed_payment_method_types[${i}]: ${String(t)} is not a payment method type`, { param: `allowed_payment_method_types[${i}]` });
      return t;
    });
  }
  // A filter on the methods eligible for this session (SDK: "Unlike payment_method_types, this acts as a filter on the dynamically computed set").
  const eligible = DASHBOARD_PAYMENT_METHODS.filter((t) => t !== "crypto" || (ctx.currency === "usd" && !ctx.saving));
  const offered = allowed ? eligible.filter((t) => allowed.includes(t)) : eligible;
  if (ctx.mode !== "setup" && offered.length === 0) {
    throw invalid(
      "No valid payment method types for this Checkout Session. Ensure the payment methods allowed are activated in your Dashboard and compatible with the session's currency and setup_future_usage.",
      {
        param: "allowed_payment_method_types",
      },
    );
  }
  return { extras: { invoice, automaticTax, taxIdCollection, customerUpdate, taxBehavior: ctx.taxBehaviors[0] ?? null }, paymentMethodTypes: offered };
}

export interface TaxInputs {
  /** Basis points of the subtotal. Default DEFAULT_TAX_RATE_BASIS_POINTS. */
  taxRateBasisPoints?: number;
  /** A business buyer's tax ID, entered with tax_id_collection. */
  taxId?: { type: Stripe.Checkout.Session.CustomerDetails.TaxId.Type; value: string; businessName: string };
}

/**
 * Completion, before the payment: the tax on the collected address (exclusive: added on top;
 * inclusive: part of the price) and what `customer_update` saves on the customer.
 */
export function applyTaxAtCompletion(state: StripeState, s: Stripe.Checkout.Session, extras: SessionExtras | undefined, inputs: TaxInputs): void {
  if (!extras) return;
  const details = s.customer_details!;
  if (extras.taxIdCollection && inputs.taxId) {
    details.tax_ids = [{ type: inputs.taxId.type, value: inputs.taxId.value }];
    details.business_name = inputs.taxId.businessName;
  }
  if (extras.automaticTax) {
    const subtotal = s.amount_subtotal ?? 0;
    const bps = BigInt(inputs.taxRateBasisPoints ?? DEFAULT_TAX_RATE_BASIS_POINTS);
    // Whole minor units, half up, in integers.
    const tax =
      extras.taxBehavior === "inclusive" ? Number((BigInt(subtotal) * bps * 2n + (10_000n + bps)) / (2n * (10_000n + bps))) : Number((BigInt(subtotal) * bps + 5_000n) / 10_000n);
    s.total_details = { amount_discount: 0, amount_shipping: 0, amount_tax: tax };
    s.amount_total = extras.taxBehavior === "inclusive" ? subtotal : subtotal + tax;
    s.automatic_tax = { ...s.automatic_tax, enabled: true, status: "complete", provider: "stripe" };
  }
  const customer = typeof s.customer === "string" ? state.customers.get(s.customer) : undefined;
  if (!customer || !extras.customerUpdate) return;
  const previous: Partial<Stripe.Customer> = {};
  if (extras.customerUpdate.address === "auto" && details.address) {
    previous.address = customer.address;
    customer.address = { ...details.address };
  }
  if (extras.customerUpdate.name === "auto" && details.business_name) {
    previous.name = customer.name;
    customer.name = details.business_name;
  }
  if (Object.keys(previous).length) state.emit("customer.updated", customer, previous, null);
}

/**
 * The post-purchase invoice of a paid session (`invoice_creation`): paid, with its hosted page
 * and PDF, the session's amounts and tax, the invoice_data's description and metadata.
 * Returns the emission of `invoice.created`, `invoice.finalized`, `invoice.paid` and
 * `invoice.payment_succeeded`, so that the session's own event can come first.
 */
export function invoiceForSession(
  state: StripeState,
  s: Stripe.Checkout.Session,
  extras: SessionExtras | undefined,
  build: (customer: Stripe.Customer, id: string) => Stripe.Invoice,
): () => void {
  if (!extras?.invoice || s.payment_status !== "paid" || typeof s.customer !== "string") return () => undefined;
  const customer = state.customers.get(s.customer)!;
  const id = newId("in_");
  const invoice = build(customer, id);
  const tax = s.total_details?.amount_tax ?? 0;
  const subtotal = s.amount_subtotal ?? 0;
  const total = s.amount_total ?? 0;
  Object.assign(invoice, {
    description: extras.invoice.description,
    metadata: { ...extras.invoice.metadata },
    amount_due: total,
    amount_paid: total,
    amount_remaining: 0,
    subtotal,
    subtotal_excluding_tax: total - tax,
    total,
    total_excluding_tax: total - tax,
    total_taxes: tax
      ? [
          {
            amount: tax,
            tax_behavior: extras.taxBehavior === "inclusive" ? "inclusive" : "exclusive",
            tax_rate_details: null,
            taxability_reason: "standard_rated",
            taxable_amount: total - tax,
            type: "tax_rate_details",
          },
        ]
      : [],
    automatic_tax: {
      disabled_reason: null,
      enabled: extras.automaticTax,
      liability: extras.automaticTax ? { type: "self" } : null,
      provider: extras.automaticTax ? "stripe" : null,
      status: extras.automaticTax ? "complete" : null,
    },
    customer_tax_ids: (s.customer_details?.tax_ids ?? []).map((t) => ({ type: t.type, value: t.value })),
    customer_address: s.customer_details?.address ?? null,
    customer_name: s.customer_details?.business_name ?? customer.name ?? null,
    number: `${customer.invoice_prefix ?? "INV"}-${String(state.invoices.size + 1).padStart(4, "0")}`,
  } satisfies Partial<Stripe.Invoice>);
  invoice.lines.data[0]!.amount = subtotal;
  invoice.lines.data[0]!.subtotal = subtotal;
  invoice.lines.data[0]!.description = "API credit";
  state.invoices.set(id, invoice);
  s.invoice = id;
  return () => {
    for (const type of ["invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded"] as const) state.emit(type, invoice, undefined, null);
  };
}
