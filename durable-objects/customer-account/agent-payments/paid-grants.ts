import { log } from "../../../src/lib/log";
import type { PaidAuthorizeResult, PaidGrantInput } from "../contract";
import type { AccountContext } from "../core/context";
import { createGrant } from "../credit/credits";
import { type AuthorizeInput, authorize } from "../request/authorize";
import { PaymentLog } from "./payment-log";

/** A payment already credited: its receipt, or null. */
export function paymentReceipt(context: AccountContext, id: string): string | null {
  if (!context.account.exists) return null;
  return new PaymentLog(context.sql).get(id)?.receipt ?? null;
}

/**
 * Credits a paid grant for the payment (at most once per payment id) and authorizes the request
 * from it, in one synchronous step: no other request can spend the pack in between, and a retry
 * with the same payment credits nothing again. The grant reaches Stripe's balance the way a
 * Checkout top-up does (createGrant queues it).
 */
export function payAndAuthorize(context: AccountContext, input: { payment: PaidGrantInput; authorize: AuthorizeInput }): PaidAuthorizeResult {
  const { payment } = input;
  const known = paymentReceipt(context, payment.id);
  if (known !== null) return { decision: authorize(context, input.authorize), receipt: known, replayed: true, credited: true };
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
  return { decision: authorize(context, input.authorize), receipt: payment.receipt, replayed: false, credited };
}
