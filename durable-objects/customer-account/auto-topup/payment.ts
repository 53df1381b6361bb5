import Stripe from "stripe";
import { log } from "../../../src/lib/log";
import { ENDPOINTS } from "../../../src/lib/stripe-budget";
import { describeError, IDEMPOTENCY_SAFE_MS, isBudgetSpent, isTransientStripeError, stripeClient } from "../../../src/lib/stripe-client";
import { HOUR_MS } from "../../../src/lib/time";
import { backoffMs } from "../core/backoff";
import type { AccountContext } from "../core/context";
import { stripePermit } from "../stripe/budget";
import { AUTO_TOPUP_TIMER, type TopUpRow } from "./auto-topup";
import { failureReason, topUpFailed, topUpSucceeded } from "./charge";

/** Sends of one top-up that Stripe could not answer (5xx, 429, timeouts) before it counts as failed. */
const MAX_ATTEMPTS = 8;

/**
 * The auto top-up timer, under the object's lock: creates the pending top-up's off-session
 * PaymentIntent. The idempotency key is derived from the top-up id, so a retry after a lost
 * response replays Stripe's first answer instead of charging again. After Stripe answered 5xx
 * (it replays a saved 500 for that key), or once the key may have expired, the payment is first
 * looked up by `metadata[payg_auto_topup]`, and only sent again, under a fresh key, if it is not
 * there. With none pending, it is the top-up a rate limit held back: the plan runs again and
 * starts it if it is still needed. Returns true when credit landed (the caller sends it on to
 * Stripe's balance).
 */
export async function runAutoTopUp(context: AccountContext, now: number): Promise<boolean> {
  if (!context.account.exists) return false;
  if (!context.autoTopUp.pending()) context.atomically(() => context.changed(now));
  const row = context.autoTopUp.pending();
  if (!row) return false;
  if (row.next_attempt_at !== null && row.next_attempt_at > now) {
    context.timers.at(AUTO_TOPUP_TIMER, row.next_attempt_at);
    return false;
  }
  // Off, paused, inactive or without a saved card: a top-up not sent yet is canceled.
  const on = context.autoTopUp.on;
  if (!on && row.attempts === 0) {
    context.atomically(() => {
      context.autoTopUp.finish(row.id, { status: "canceled", reason: canceledBecause(context) }, now);
      context.changed(now);
    });
    return false;
  }
  // Its calls come from the budget like every Stripe call, ahead of background work (a payment
  // keeps a customer's credit from running out); with none free it waits, no attempt counted.
  const permit = stripePermit(context, "interactive");
  const lookup = row.attempts > 0 && (row.verify === 1 || !on || now - row.created_at > IDEMPOTENCY_SAFE_MS);
  await permit.reserve({ [ENDPOINTS.paymentIntentList]: lookup ? 1 : 0, [ENDPOINTS.paymentIntentCreate]: 1 });
  if (!permit.has(ENDPOINTS.paymentIntentCreate) || (lookup && !permit.has(ENDPOINTS.paymentIntentList))) {
    context.timers.at(AUTO_TOPUP_TIMER, Date.now() + Math.max(1000, permit.retryAfterMs));
    return false;
  }
  const stripe = stripeClient(context.config, permit);
  const customer = context.account.row.customer_id;
  try {
    if (lookup) {
      const found = await lookUp(stripe, customer, row);
      if (found) return settle(context, row.id, found);
      // Never sent, and no longer wanted: nothing was charged.
      if (!on) {
        context.atomically(() => context.autoTopUp.finish(row.id, { status: "canceled", reason: canceledBecause(context) }, now));
        return false;
      }
      if (row.verify === 1) context.autoTopUp.update(row.id, { verify: 0, idempotency_key: `${row.idempotency_key.replace(/_r\d+$/, "")}_r${row.attempts}` });
    }
    // Fixed when the top-up started (a row from before that: the saved card now), and kept for
    // every retry: the same key must carry the same parameters. Never the default card.
    const paymentMethod = row.payment_method ?? context.autoTopUp.savedPaymentMethod!;
    if (!row.payment_method) context.autoTopUp.update(row.id, { payment_method: paymentMethod });
    const current = context.autoTopUp.get(row.id)!;
    context.autoTopUp.update(row.id, { attempts: current.attempts + 1 });
    const pi = await stripe.paymentIntents.create(
      {
        amount: current.amount_cents,
        currency: current.currency,
        customer,
        payment_method: paymentMethod,
        off_session: true,
        confirm: true,
        description: "Automatic API credit top-up",
        metadata: { payg_auto_topup: current.id, payg_customer_id: customer },
        // Stripe emails its receipt (an off-session payment has no Checkout invoice); fixed with the row, as the key needs.
        ...(current.receipt_email ? { receipt_email: current.receipt_email } : {}),
      },
      { idempotencyKey: current.idempotency_key },
    );
    return settle(context, row.id, pi);
  } catch (error) {
    if (error instanceof Stripe.errors.StripeCardError) {
      return fail(context, row.id, error.code ?? "card_declined", error.payment_intent?.id ?? null);
    }
    const latest = context.autoTopUp.get(row.id)!;
    if (isBudgetSpent(error)) {
      // It never reached Stripe (a lookup's further page): the attempt is not counted.
      context.autoTopUp.update(row.id, { attempts: Math.max(row.attempts, latest.attempts - (latest.attempts > row.attempts ? 1 : 0)) });
      context.timers.at(AUTO_TOPUP_TIMER, Date.now() + Math.max(1000, permit.retryAfterMs));
      return false;
    }
    if (!isTransientStripeError(error)) {
      log.error(`auto top-up ${row.id}: Stripe refused it`, describeError(error));
      return fail(context, row.id, (error as Stripe.errors.StripeError).code ?? "stripe_error", null, describeError(error));
    }
    if (latest.attempts >= MAX_ATTEMPTS) return fail(context, row.id, "stripe_unavailable", null, describeError(error));
    const at = Date.now() + backoffMs(Math.max(1, latest.attempts));
    const statusCode = error instanceof Stripe.errors.StripeError ? error.statusCode : undefined;
    context.autoTopUp.update(row.id, { next_attempt_at: at, last_error: describeError(error), ...(statusCode !== undefined && statusCode >= 500 ? { verify: 1 } : {}) });
    context.timers.at(AUTO_TOPUP_TIMER, at);
    log.warn(`auto top-up ${row.id}: Stripe did not answer; retrying at ${new Date(at).toISOString()}`, describeError(error));
    return false;
  }
}

/** A top-up paid by a method that settles later (processing) is looked up this often should its webhook be lost. */
const PROCESSING_RECHECK_MS = HOUR_MS;

/**
 * What a PaymentIntent says about the top-up (read afresh: a webhook may have settled it
 * meanwhile). Only `processing` settles by itself later: its webhook settles it, and the timer
 * looks it up again should that be lost. Every other status is a payment that did not happen and
 * will not happen by itself (requires_payment_method: declined; requires_action: the customer
 * must act; requires_confirmation, requires_capture: never confirmed or captured; canceled): the
 * top-up fails, so it never holds the pending slot that later top-ups need.
 */
function settle(context: AccountContext, id: string, pi: Stripe.PaymentIntent): boolean {
  const row = context.autoTopUp.get(id)!;
  const now = Date.now();
  if (pi.status === "succeeded") return topUpSucceeded(context, row, pi, now);
  if (pi.status === "processing") {
    const at = now + PROCESSING_RECHECK_MS;
    context.autoTopUp.update(id, { payment_intent: pi.id, next_attempt_at: at, verify: 1 });
    context.timers.at(AUTO_TOPUP_TIMER, at);
    return false;
  }
  fail(context, id, failureReason(pi), pi.id);
  return false;
}

function fail(context: AccountContext, id: string, reason: string, paymentIntent: string | null, detail?: string): false {
  if (detail) context.autoTopUp.update(id, { last_error: detail });
  topUpFailed(context, context.autoTopUp.get(id)!, reason, paymentIntent, Date.now());
  return false;
}

function canceledBecause(context: AccountContext): string {
  const t = context.autoTopUp;
  if (!t.settings) return "auto top-up turned off";
  if (t.settings.paused) return `auto top-up paused (${t.pausedReason})`;
  return t.inactive() ?? "no card is saved for auto top-up";
}

/** This top-up's PaymentIntent at Stripe, if one was created (listed by customer since the top-up began). */
async function lookUp(stripe: Stripe, customer: string, row: TopUpRow): Promise<Stripe.PaymentIntent | null> {
  const since = Math.floor(row.created_at / 1000) - 300;
  for await (const pi of stripe.paymentIntents.list({ customer, created: { gte: since }, limit: 100 })) {
    if (pi.metadata?.payg_auto_topup === row.id) return pi;
  }
  return null;
}
