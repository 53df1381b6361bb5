import type Stripe from "stripe";
import { log } from "../../../src/lib/log";
import type { PaidAuthorizeResult, PaidGrantInput } from "../contract";
import type { AccountContext } from "../core/context";
import { createGrant } from "../credit/credits";
import { type AuthorizeInput, authorize } from "../request/authorize";
import { PaymentLog } from "./payment-log";
import { queueRecording } from "./stripe-record";

/** A payment already credited: its receipt, or null. */
export function paymentReceipt(context: AccountContext, id: string): string | null {
  if (!context.account.exists) return null;
  return new PaymentLog(context.sql).get(id)?.receipt ?? null;
}

/** Credits the payment's paid grant once per payment id; a payment known already credits nothing and keeps its first receipt. */
function credit(context: AccountContext, payment: PaidGrantInput): { receipt: string; replayed: boolean; credited: boolean } {
  const known = paymentReceipt(context, payment.id);
  if (known !== null) return { receipt: known, replayed: true, credited: true };
  // The grant's reference makes it idempotent on its own: a grant written just before a crash is found again here.
  const grant = createGrant(context, {
    customerId: payment.customerId,
    amountCents: payment.amountCents,
    reason: `${payment.rail} payment ${payment.transaction ?? payment.id}`,
    reference: `${payment.rail}_${payment.id}`,
    source: payment.rail,
    paymentIntent: payment.paymentIntent ?? null,
  });
  const credited = grant.status === "created" || grant.status === "existing";
  if (!credited) log.error(`${payment.rail} payment ${payment.id} of ${payment.amountCents} cents was paid but not credited (${grant.status}): refund it`);
  new PaymentLog(context.sql).insert({
    id: payment.id,
    rail: payment.rail,
    grant_id: grant.grant?.id ?? null,
    amount_cents: payment.amountCents,
    payer: payment.payer,
    transaction_id: payment.transaction,
    receipt: payment.receipt,
    created_at: Date.now(),
  });
  // Money received whether or not it was credited: it is recorded all the same (the operator refunds what was not credited).
  if (payment.stripeNetwork && context.config.stripeEnabled) queueRecording(context, payment.id, payment.stripeNetwork, payment.transaction, Date.now());
  return { receipt: payment.receipt, replayed: false, credited };
}

/**
 * Credits a paid grant for the payment (at most once per payment id) and authorizes the request
 * from it, in one synchronous step: no other request can spend the pack in between, and a retry
 * with the same payment credits nothing again. The grant reaches Stripe's balance the way a
 * Checkout top-up does (createGrant queues it).
 */
export function payAndAuthorize(context: AccountContext, input: { payment: PaidGrantInput; authorize: AuthorizeInput }): PaidAuthorizeResult {
  const credited = credit(context, input.payment);
  return { decision: authorize(context, input.authorize), ...credited };
}

/**
 * `payment_intent.succeeded` of a Payment-auth-scheme charge (metadata `payg_mpp_challenge`): the
 * pack is credited here if the request that charged it never got to (Stripe's answer lost, the
 * worker gone, the challenge expired before the credential was retried). Same payment id and grant
 * reference as the request's credit, so whichever comes second credits nothing.
 */
export function creditMppPaymentIntent(context: AccountContext, customerId: string, pi: Stripe.PaymentIntent): "applied" | "ignored" {
  const challenge = pi.metadata?.payg_mpp_challenge;
  if (!challenge || pi.status !== "succeeded" || pi.metadata.payg_customer_id !== customerId || String(pi.amount) !== pi.metadata.payg_credit_cents) return "ignored";
  const receipt = { status: "success", method: "stripe", timestamp: new Date(pi.created * 1000).toISOString().replace(/\.\d{3}Z$/, "Z"), reference: pi.id };
  const result = credit(context, {
    id: challenge,
    rail: "mpp",
    customerId,
    amountCents: pi.amount,
    payer: null,
    transaction: pi.id,
    paymentIntent: pi.id,
    receipt: JSON.stringify(receipt),
  });
  return result.replayed ? "ignored" : "applied";
}
