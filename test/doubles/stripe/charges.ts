/**
 * Charges: the one Charge builder every payment path of the double uses (cards in payments.ts,
 * crypto in crypto-payment.ts), the API's view of a Charge, and `GET /v1/charges/{id}`. The shape
 * is Stripe's Charge object (docs.stripe.com/api/charges/object); what differs between payment
 * methods is `payment_method_details` and `outcome`.
 */
import type Stripe from "stripe";
import { checkKnown, clone, newId, noSuch, type Params, readExpand, type StripeErrorBody } from "./common";
import type { StripeState } from "./core";

const RETRIEVE_PARAMS = new Set(["expand"]);

/** What a payment method decides about its Charge; everything else follows from the PaymentIntent. */
export type ChargeParts = {
  failure: StripeErrorBody | null;
  outcome: Stripe.Charge.Outcome | null;
  details: Stripe.Charge.PaymentMethodDetails;
};

/** A new Charge of `pi` paid with `pm`, saved in the double's state. */
export function chargeObject(state: StripeState, pi: Stripe.PaymentIntent, pm: Stripe.PaymentMethod, { failure, outcome, details }: ChargeParts): Stripe.Charge {
  const id = newId("ch_");
  const ok = failure === null;
  const charge: Stripe.Charge = {
    id,
    object: "charge",
    amount: pi.amount,
    amount_captured: ok ? pi.amount : 0,
    amount_refunded: 0,
    application: null,
    application_fee: null,
    application_fee_amount: null,
    balance_transaction: ok ? newId("txn_") : null,
    billing_details: clone(pm.billing_details),
    calculated_statement_descriptor: "STRIPE* TEST",
    captured: ok,
    created: state.nowSeconds(),
    currency: pi.currency,
    customer: pi.customer,
    description: pi.description,
    disputed: false,
    failure_balance_transaction: null,
    failure_code: failure?.code ?? null,
    failure_message: failure?.message ?? null,
    fraud_details: {},
    livemode: false,
    metadata: { ...pi.metadata },
    on_behalf_of: null,
    outcome,
    paid: ok,
    payment_intent: pi.id,
    payment_method: pm.id,
    payment_method_details: details,
    receipt_email: pi.receipt_email,
    receipt_number: null,
    receipt_url: `https://pay.stripe.test/receipts/payment/${id}`,
    refunded: false,
    refunds: { object: "list", data: [], has_more: false, url: `/v1/charges/${id}/refunds` },
    review: null,
    shipping: null,
    source: null,
    source_transfer: null,
    statement_descriptor: null,
    statement_descriptor_suffix: null,
    status: ok ? "succeeded" : "failed",
    transfer_data: null,
    transfer_group: null,
  };
  state.charges.set(id, charge);
  return charge;
}

/**
 * The Charge as the API shows it: since API version 2022-11-15 `refunds` is not included unless
 * expanded (docs.stripe.com/changelog/2022-11-15/deprecates-charges-auto-expand; optional in the
 * SDK's Charge type), so event payloads carry `amount_refunded` and `refunded`, not the list.
 */
export function chargeView(charge: Stripe.Charge, expandRefunds = false): Stripe.Charge {
  const view = clone(charge);
  if (!expandRefunds) delete view.refunds;
  return view;
}

export function apiRetrieveCharge(state: StripeState, id: string, params: Params): Stripe.Charge {
  checkKnown(params, RETRIEVE_PARAMS);
  const expand = readExpand(params, ["payment_intent", "customer", "refunds"]);
  const charge = state.charges.get(id);
  if (!charge) throw noSuch("charge", id, "charge", 404);
  const view = chargeView(charge, expand.has("refunds"));
  if (expand.has("payment_intent") && typeof charge.payment_intent === "string") view.payment_intent = clone(state.paymentIntents.get(charge.payment_intent)!);
  if (expand.has("customer") && typeof charge.customer === "string") view.customer = clone(state.customers.get(charge.customer)!);
  return view;
}

/** A charge id, or a PaymentIntent id (its latest charge). */
export function chargeFor(state: StripeState, chargeOrPaymentIntentId: string): Stripe.Charge {
  let id = chargeOrPaymentIntentId;
  if (id.startsWith("pi_")) {
    const pi = state.paymentIntents.get(id);
    if (!pi) throw new Error(`no such payment intent ${id}`);
    if (typeof pi.latest_charge !== "string") throw new Error(`payment intent ${id} has no charge`);
    id = pi.latest_charge;
  }
  const charge = state.charges.get(id);
  if (!charge) throw new Error(`no such charge ${id}`);
  return charge;
}
