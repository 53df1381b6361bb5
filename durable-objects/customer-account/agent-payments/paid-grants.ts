import { log } from "../../../src/lib/log";
import type { AuthorizeResult } from "../contract";
import type { AccountContext } from "../core/context";
import { createGrant } from "../credit/credits";
import { type AuthorizeInput, authorize } from "../request/authorize";
import { PaymentLog } from "./payment-log";

/** A payment an agent made on a 402, settled by the worker before it is handed here. */
export interface PaidGrantInput {
  /**
   * The payment's own id, the same however often it is presented: for x402 the EIP-3009
   * authorization (network, asset, payer, nonce: a nonce is used once on chain), for MPP the
   * challenge id.
   */
  id: string;
  rail: "x402" | "mpp";
  customerId: string;
  /** Whole cents, > 0. */
  amountCents: number;
  payer: string | null;
  /** The transaction hash (x402) or PaymentIntent (MPP); null when a lost settle answer was confirmed on chain. */
  transaction: string | null;
  /** A Stripe PaymentIntent the payment is recorded as: refunds and disputes of it claw the grant back. */
  paymentIntent?: string | null;
  /** What the client is told, the same on every replay (x402: the SettlementResponse JSON; MPP: the receipt). */
  receipt: string;
}

export interface PaidAuthorizeResult {
  decision: AuthorizeResult;
  /** The receipt of the payment's first settlement. */
  receipt: string;
  /** The payment was credited before (a retry): nothing was credited now. */
  replayed: boolean;
  /** Credited: false only when the balance limit refused it (logged). */
  credited: boolean;
}

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
