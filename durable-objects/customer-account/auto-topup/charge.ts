import type Stripe from "stripe";
import { log } from "../../../src/lib/log";
import { centsToMicros } from "../../../src/lib/money";
import { idOf } from "../../../src/lib/stripe-ids";
import type { AccountContext } from "../core/context";
import { createGrant } from "../credit/credits";
import { recordTopUpPayment } from "../stripe/receipts";
import type { TopUpRow } from "./auto-topup";

/**
 * Stripe confirmed a top-up's payment (its `payment_intent.succeeded` webhook, or the create
 * response already `succeeded`): the credit lands once, as a paid `auto_topup` grant that
 * remembers its PaymentIntent (so a refund or dispute of it takes the credit back), with
 * `topup.succeeded` in the same step. Whichever comes second changes nothing. The credit never
 * starts the next top-up: if it leaves the credit still below the threshold (a debt larger than
 * the amount), auto top-up pauses (`below_threshold`) instead of charging the card again.
 */
export function topUpSucceeded(context: AccountContext, row: TopUpRow, pi: Pick<Stripe.PaymentIntent, "id" | "amount" | "currency">, now: number): boolean {
  if (row.status === "succeeded") return false;
  if (pi.amount !== row.amount_cents || pi.currency !== row.currency) {
    log.error(`auto top-up ${row.id}: PaymentIntent ${pi.id} is ${pi.amount} ${pi.currency}, expected ${row.amount_cents} ${row.currency}; not credited`);
    return false;
  }
  context.atomically(() => {
    context.autoTopUp.finish(row.id, { status: "succeeded", payment_intent: pi.id }, now);
    // A payment that succeeds after all (its outcome was unknown) lifts the pause it caused.
    context.autoTopUp.resumeAfter(row.id, now);
    context.autoTopUp.quietly(() =>
      createGrant(context, {
        customerId: context.account.row.customer_id,
        amountCents: row.amount_cents,
        reason: `Auto top-up ${row.id} (${pi.id})`,
        reference: `auto_topup_${row.id}`,
        source: "auto_topup",
        paymentIntent: pi.id,
      }),
    );
    recordTopUpPayment(context.sql, {
      paymentIntent: pi.id,
      source: "auto_topup",
      reference: row.id,
      creditCents: row.amount_cents,
      taxCents: 0,
      totalCents: pi.amount,
      currency: pi.currency,
      invoice: null,
      createdAt: now,
    });
    context.outbox.emit("topup.succeeded", { topup_id: row.id, amount_cents: row.amount_cents });
    const settings = context.autoTopUp.settings;
    if (settings && context.wallet.spendableTotal(now) < centsToMicros(settings.threshold_cents)) {
      context.autoTopUp.pause("below_threshold", null, now);
      context.changed(now);
    }
  });
  return true;
}

/**
 * A top-up that cannot be paid (a decline, a card that needs authentication, no payment method,
 * Stripe refusing the request): auto top-up pauses, `topup.failed` and `auto_topup.paused` are
 * sent in the same step, and the customer enters `topup_failed` (its email, once). Nothing
 * retries the card; setting `auto_topup` again, or saving a card with a Checkout top-up, resumes it.
 */
export function topUpFailed(context: AccountContext, row: TopUpRow, reason: string, paymentIntent: string | null, now: number): boolean {
  if (row.status === "succeeded" || row.status === "failed" || row.status === "canceled") return false;
  context.atomically(() => {
    context.autoTopUp.finish(row.id, { status: "failed", reason, payment_intent: paymentIntent }, now);
    context.autoTopUp.pause(reason, row.id, now);
    context.outbox.emit("topup.failed", { topup_id: row.id, amount_cents: row.amount_cents, reason });
    context.changed(now);
  });
  log.warn(`auto top-up ${row.id} of ${context.account.row.customer_id} failed (${reason}); auto top-up paused`);
  return true;
}

/**
 * The reason a failed PaymentIntent gives: Stripe's error code (card_declined,
 * authentication_required, …), else its status (requires_confirmation, canceled, …).
 */
export function failureReason(pi: Pick<Stripe.PaymentIntent, "status" | "last_payment_error">): string {
  if (pi.status === "requires_action") return "authentication_required";
  return pi.last_payment_error?.code ?? (pi.status === "requires_payment_method" ? "payment_failed" : pi.status);
}

/**
 * `payment_intent.succeeded` / `payment_intent.payment_failed`, with no Stripe call: a top-up's
 * PaymentIntent (metadata `payg_auto_topup`) settles it; a Checkout top-up that saved its card
 * (metadata `payg_save_payment_method`) makes that card the one auto top-up charges, and is kept
 * as the payment that saved it (a refund or dispute of it pauses auto top-up).
 */
export function applyPaymentIntentEvent(
  context: AccountContext,
  event: Stripe.PaymentIntentSucceededEvent | Stripe.PaymentIntentPaymentFailedEvent,
  now: number,
): "applied" | "ignored" {
  const pi = event.data.object;
  const topUpId = pi.metadata?.payg_auto_topup;
  if (topUpId) {
    const row = context.autoTopUp.get(topUpId);
    if (!row) return "ignored";
    if (event.type === "payment_intent.succeeded") topUpSucceeded(context, row, pi, now);
    else topUpFailed(context, row, failureReason(pi), pi.id, now);
    return "applied";
  }
  const card = idOf(pi.payment_method);
  if (event.type !== "payment_intent.succeeded" || pi.setup_future_usage !== "off_session" || pi.metadata?.payg_save_payment_method !== "true" || !card) {
    return "ignored";
  }
  context.atomically(() => {
    if (context.autoTopUp.saveCard(card, pi.id, event.created, now)) context.changed(now);
  });
  return "applied";
}
