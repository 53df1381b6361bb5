/**
 * Refunds and Disputes.
 *
 * Refunds (docs.stripe.com/refunds, docs.stripe.com/testing#refunds): a refund is `succeeded`
 * at once here; Stripe's test card 4000 0000 0000 5126 (`pm_card_refundFail`) makes its refunds
 * succeed at first and fail later with `failure_reason: expired_or_canceled_card`, announced by
 * `charge.refund.updated` (and `refund.updated`, `refund.failed`). The Refund then carries a
 * `failure_balance_transaction` (the money back in the merchant's balance). What the Charge's
 * `amount_refunded` does then is not in Stripe's published reference; this double takes the
 * failed amount off it (and `refunded` is false again), and the gateway does not depend on either
 * choice: it reads each refund's status.
 *
 * Disputes (the SDK's Dispute.Status): inquiries (`warning_needs_response`,
 * `warning_under_review`, closed as `warning_closed`) withdraw no funds; a chargeback
 * (`needs_response`, `under_review`) withdraws the amount with a 1500 fee (an inquiry that
 * escalates too); `won` reinstates it; `lost` keeps it withdrawn and may be appealed
 * (`appeal_needs_response`, `appeal_under_review`), an appeal won reinstating the funds;
 * `prevented` closes a dispute before any funds move. Events: `charge.dispute.created`,
 * `.updated` (status changes that do not close it), `.closed` (won, lost, prevented,
 * warning_closed), `.funds_withdrawn`, `.funds_reinstated`, each with `previous_attributes`.
 */
import type Stripe from "stripe";
import { chargeFor, chargeView } from "./charges";
import { checkKnown, clone, invalid, newId, noSuch, type Params, readExpand, readInt, readString } from "./common";
import { StripeState } from "./core";
import { paginate } from "./customers";

const RETRIEVE_PARAMS = new Set(["expand"]);
// From the SDK's RefundListParams.
const REFUND_LIST_PARAMS = new Set(["charge", "created", "ending_before", "expand", "limit", "payment_intent", "starting_after"]);
const DISPUTE_FEE = 1500;

// ----------------------------------------------------------------------------- refunds

/**
 * Dashboard-style refund of a succeeded charge (all that is left of it by default). Emits
 * `charge.refunded` (Charge with `amount_refunded` accumulated and `refunded` true only once fully
 * refunded; `refunds`, newest first, only through `expand[]=refunds`, see chargeView) and
 * `refund.created`.
 */
export function refundCharge(state: StripeState, chargeOrPaymentIntentId: string, amount?: number): { refund: Stripe.Refund; charge: Stripe.Charge } {
  const charge = chargeFor(state, chargeOrPaymentIntentId);
  if (charge.status !== "succeeded") throw new Error(`charge ${charge.id} is ${charge.status}: nothing to refund`);
  const left = charge.amount - charge.amount_refunded;
  const value = amount ?? left;
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`refund amount must be a positive integer, got ${value}`);
  if (value > left) throw new Error(`refund of ${value} exceeds the ${left} left on charge ${charge.id}`);
  const refund: Stripe.Refund = {
    id: newId("re_"),
    object: "refund",
    amount: value,
    balance_transaction: newId("txn_"),
    charge: charge.id,
    created: state.nowSeconds(),
    currency: charge.currency,
    customer: charge.customer,
    customer_account: null,
    destination_details:
      charge.payment_method_details?.type === "crypto"
        ? { crypto: { reference: null }, type: "crypto" }
        : { card: { reference_status: "pending", reference_type: "acquirer_reference_number", type: "refund" }, type: "card" },
    metadata: {},
    payment_intent: charge.payment_intent,
    payment_method: charge.payment_method,
    reason: null,
    receipt_number: null,
    source_transfer_reversal: null,
    status: "succeeded",
    transfer_reversal: null,
  };
  state.refunds.set(refund.id, refund);
  const previous: Partial<Stripe.Charge> = { amount_refunded: charge.amount_refunded };
  charge.amount_refunded += value;
  if (charge.amount_refunded === charge.amount) {
    previous.refunded = false;
    charge.refunded = true;
  }
  const list = charge.refunds ?? { object: "list", data: [], has_more: false, url: `/v1/charges/${charge.id}/refunds` };
  list.data = [refund, ...list.data];
  charge.refunds = list;
  state.emit("charge.refunded", chargeView(charge), previous, StripeState.noRequest);
  state.emit("refund.created", refund, undefined, StripeState.noRequest);
  return { refund: clone(refund), charge: chargeView(charge) };
}

/**
 * The later failure of a refund of a `pm_card_refundFail` charge (Stripe does it by itself some
 * time after; a test says when): `status: failed`, emits `charge.refund.updated`,
 * `refund.updated` and `refund.failed`.
 */
export function failRefund(state: StripeState, refundId: string): Stripe.Refund {
  const refund = state.refunds.get(refundId);
  if (!refund) throw new Error(`no such refund ${refundId}`);
  const charge = state.charges.get(refund.charge as string)!;
  if (state.cardBehavior.get(charge.payment_method as string) !== "refund_fails") {
    throw new Error(`refund ${refundId}: only refunds of pm_card_refundFail (4000 0000 0000 5126) fail`);
  }
  if (refund.status !== "succeeded") throw new Error(`refund ${refundId} is ${refund.status}`);
  const previous: Partial<Stripe.Refund> = { status: refund.status };
  refund.status = "failed";
  refund.failure_reason = "expired_or_canceled_card";
  refund.failure_balance_transaction = newId("txn_");
  charge.amount_refunded -= refund.amount;
  charge.refunded = false;
  state.emit("charge.refund.updated", refund, previous, StripeState.noRequest);
  state.emit("refund.updated", refund, previous, StripeState.noRequest);
  state.emit("refund.failed", refund, previous, StripeState.noRequest);
  return clone(refund);
}

export function apiRetrieveRefund(state: StripeState, id: string, params: Params): Stripe.Refund {
  checkKnown(params, RETRIEVE_PARAMS);
  readExpand(params, []);
  const refund = state.refunds.get(id);
  if (!refund) throw noSuch("refund", id, "refund", 404);
  return refund;
}

/** `GET /v1/refunds`, newest first; `charge` and `payment_intent` filter. */
export function apiListRefunds(state: StripeState, params: Params, url: string): Stripe.ApiList<Stripe.Refund> {
  checkKnown(params, REFUND_LIST_PARAMS);
  readExpand(params, []);
  const charge = readString(params, "charge");
  const paymentIntent = readString(params, "payment_intent");
  const limit = readInt(params, "limit") ?? 10;
  if (limit < 1 || limit > 100) throw invalid(`Invalid limit: must be between 1 and 100`, { param: "limit" });
  const matching = [...state.refunds.values()]
    .filter((r) => (charge === undefined || r.charge === charge) && (paymentIntent === undefined || r.payment_intent === paymentIntent))
    .reverse();
  return paginate(matching, limit, readString(params, "starting_after"), readString(params, "ending_before"), url, "refund");
}

// ----------------------------------------------------------------------------- disputes

function disputeTransaction(state: StripeState, dispute: Stripe.Dispute, amount: number, fee: number, description: string): Stripe.BalanceTransaction {
  const now = state.nowSeconds();
  return {
    id: newId("txn_"),
    object: "balance_transaction",
    amount,
    available_on: now + 2 * 24 * 60 * 60,
    balance_type: "payments",
    created: now,
    currency: dispute.currency,
    description,
    exchange_rate: null,
    fee,
    fee_details: fee === 0 ? [] : [{ amount: fee, application: null, currency: dispute.currency, description: "Dispute fee", type: "stripe_fee" }],
    net: amount - fee,
    reporting_category: "dispute",
    source: dispute.id,
    status: "pending",
    type: "adjustment",
  };
}

/**
 * A cardholder disputes a charge: a Dispute (with `charge` and `payment_intent` and, like
 * Stripe's, no `customer`). A chargeback (`needs_response`) withdraws the funds and emits
 * `charge.dispute.created` and `charge.dispute.funds_withdrawn`; an inquiry
 * (`warning_needs_response`) withdraws nothing and emits only `created`. The charge becomes `disputed`.
 */
export function createDispute(state: StripeState, chargeOrPaymentIntentId: string, amount?: number, opts: { inquiry?: boolean } = {}): Stripe.Dispute {
  const charge = chargeFor(state, chargeOrPaymentIntentId);
  if (charge.status !== "succeeded") throw new Error(`charge ${charge.id} is ${charge.status}: nothing to dispute`);
  if (charge.disputed) throw new Error(`charge ${charge.id} is already disputed`);
  if (charge.payment_method_details?.type === "crypto") throw new Error(`charge ${charge.id} is a crypto payment: stablecoin payments cannot be disputed`);
  const value = amount ?? charge.amount;
  if (!Number.isSafeInteger(value) || value < 1 || value > charge.amount) throw new Error(`dispute amount must be 1..${charge.amount}, got ${value}`);
  const created = state.nowSeconds();
  const card = charge.payment_method_details?.card;
  const dispute: Stripe.Dispute = {
    id: newId("dp_"),
    object: "dispute",
    amount: value,
    balance_transactions: [],
    charge: charge.id,
    created,
    currency: charge.currency,
    enhanced_eligibility_types: [],
    evidence: {
      access_activity_log: null,
      billing_address: null,
      cancellation_policy: null,
      cancellation_policy_disclosure: null,
      cancellation_rebuttal: null,
      customer_communication: null,
      customer_email_address: null,
      customer_name: null,
      customer_purchase_ip: null,
      customer_signature: null,
      duplicate_charge_documentation: null,
      duplicate_charge_explanation: null,
      duplicate_charge_id: null,
      enhanced_evidence: {},
      product_description: null,
      receipt: null,
      refund_policy: null,
      refund_policy_disclosure: null,
      refund_refusal_explanation: null,
      service_date: null,
      service_documentation: null,
      shipping_address: null,
      shipping_carrier: null,
      shipping_date: null,
      shipping_documentation: null,
      shipping_tracking_number: null,
      uncategorized_file: null,
      uncategorized_text: null,
    },
    evidence_details: {
      due_by: created + 7 * 24 * 60 * 60,
      enhanced_eligibility: {},
      has_evidence: false,
      past_due: false,
      submission_count: 0,
      submission_method: "not_submitted",
    },
    intended_submission_method: null,
    is_charge_refundable: false,
    livemode: false,
    metadata: {},
    payment_intent: charge.payment_intent,
    payment_method_details: {
      card: { brand: card?.brand ?? "visa", case_type: opts.inquiry ? "inquiry" : "chargeback", network: "visa", network_reason_code: "10.4" },
      type: "card",
    },
    reason: "fraudulent",
    status: opts.inquiry ? "warning_needs_response" : "needs_response",
  };
  state.disputes.set(dispute.id, dispute);
  charge.disputed = true;
  state.emit("charge.dispute.created", dispute, undefined, StripeState.noRequest);
  if (!opts.inquiry) withdraw(state, dispute, charge.id);
  return clone(dispute);
}

function withdraw(state: StripeState, dispute: Stripe.Dispute, chargeId: string): void {
  const previous: Partial<Stripe.Dispute> = { balance_transactions: clone(dispute.balance_transactions) };
  dispute.balance_transactions.push(disputeTransaction(state, dispute, -dispute.amount, DISPUTE_FEE, `Chargeback withdrawal for ${chargeId}`));
  state.emit("charge.dispute.funds_withdrawn", dispute, previous, StripeState.noRequest);
}

/** Where each status may go next (an inquiry escalates to a chargeback; a loss may be appealed). */
const NEXT: Record<string, readonly Stripe.Dispute.Status[]> = {
  warning_needs_response: ["warning_under_review", "warning_closed", "needs_response"],
  warning_under_review: ["warning_closed", "needs_response"],
  needs_response: ["under_review", "won", "lost", "prevented"],
  under_review: ["won", "lost"],
  lost: ["appeal_needs_response"],
  appeal_needs_response: ["appeal_under_review", "won", "lost"],
  appeal_under_review: ["won", "lost"],
};
const CLOSED = new Set(["won", "lost", "prevented", "warning_closed"]);

/**
 * Moves a dispute to `status`: `charge.dispute.closed` for won, lost, prevented and
 * warning_closed, `charge.dispute.updated` otherwise; an escalated inquiry then has its funds
 * withdrawn (`funds_withdrawn`), a win with funds withdrawn reinstates them (`funds_reinstated`).
 */
export function moveDispute(state: StripeState, disputeId: string, status: Stripe.Dispute.Status): Stripe.Dispute {
  const dispute = state.disputes.get(disputeId);
  if (!dispute) throw new Error(`no such dispute ${disputeId}`);
  if (!NEXT[dispute.status]?.includes(status)) throw new Error(`dispute ${disputeId} is ${dispute.status}: it cannot become ${status}`);
  const previous: Partial<Stripe.Dispute> = { status: dispute.status };
  const withdrawn = dispute.balance_transactions.reduce((sum, t) => sum + t.amount, 0) < 0;
  dispute.status = status;
  state.emit(CLOSED.has(status) ? "charge.dispute.closed" : "charge.dispute.updated", dispute, previous, StripeState.noRequest);
  if (status === "needs_response") withdraw(state, dispute, String(dispute.charge));
  if (status === "won" && withdrawn) {
    const before: Partial<Stripe.Dispute> = { balance_transactions: clone(dispute.balance_transactions) };
    dispute.balance_transactions.push(disputeTransaction(state, dispute, dispute.amount, 0, `Chargeback reversal for ${String(dispute.charge)}`));
    state.emit("charge.dispute.funds_reinstated", dispute, before, StripeState.noRequest);
  }
  return clone(dispute);
}

/** Closes a dispute as won or lost (moveDispute). */
export function closeDispute(state: StripeState, disputeId: string, outcome: "won" | "lost"): Stripe.Dispute {
  return moveDispute(state, disputeId, outcome);
}

export function apiRetrieveDispute(state: StripeState, id: string, params: Params): Stripe.Dispute {
  checkKnown(params, RETRIEVE_PARAMS);
  const expand = readExpand(params, ["charge", "payment_intent"]);
  const dispute = state.disputes.get(id);
  if (!dispute) throw noSuch("dispute", id, "dispute", 404);
  const view = clone(dispute);
  if (expand.has("charge") && typeof dispute.charge === "string") view.charge = chargeView(state.charges.get(dispute.charge)!);
  if (expand.has("payment_intent") && typeof dispute.payment_intent === "string") view.payment_intent = clone(state.paymentIntents.get(dispute.payment_intent)!);
  return view;
}
