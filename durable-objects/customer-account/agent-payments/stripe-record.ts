import type Stripe from "stripe";
import { log } from "../../../src/lib/log";
import { ENDPOINTS } from "../../../src/lib/stripe-budget";
import { describeError, IDEMPOTENCY_SAFE_MS, isBudgetSpent, isTransientStripeError, stripeClient } from "../../../src/lib/stripe-client";
import { backoffMs } from "../core/backoff";
import type { AccountContext } from "../core/context";
import { settleDisputes } from "../credit/disputes";
import { settleRefunds } from "../credit/refunds";
import { stripePermit } from "../stripe/budget";
import { PaymentLog, type RecordingRow } from "./payment-log";

/*
 * PAYMENTS.x402.record_in_stripe: an x402 payment to a Stripe crypto deposit address, recorded as
 * the PaymentIntent Stripe's own x402 sample creates (stripe-samples/machine-payments,
 * x402/server/node-typescript/main.ts), after the payment was credited. Design:
 * docs/design/x402-stripe-recording.md. The PaymentIntent is the money received; the credit
 * reaches the customer's Stripe balance as a balance transaction (the top-up report), as every
 * top-up's does, so recording it never moves that balance.
 */

/** Runs the pending recordings, under the object's lock. */
export const RECORD_TIMER = "x402_stripe";

/** The API version of Stripe's sample: crypto PaymentIntents in `transaction_verification` mode are a preview. */
export const CRYPTO_API_VERSION = "2026-05-27.preview";

/** Sends Stripe could not answer (5xx, 429, timeouts) before a recording counts as failed. */
const MAX_ATTEMPTS = 20;

/** Queued in the step that credits the payment; the timer sends it. No hash (a lost settle answer the chain confirmed): nothing to verify. */
export function queueRecording(context: AccountContext, id: string, network: string, transaction: string | null, now: number): void {
  const payments = new PaymentLog(context.sql);
  if (transaction) {
    payments.queueRecording(id, "pending", network, transaction, now);
    context.timers.at(RECORD_TIMER, now);
  } else {
    payments.queueRecording(id, "no_transaction", network, null, now);
    log.error(`x402 payment ${id}: credited, but its settle answer was lost and the chain confirmed it without a transaction hash; record it in Stripe by hand`);
  }
}

/** The pending recordings whose backoff has passed, each its own PaymentIntent; the timer is set again for what is left. */
export async function recordPaymentsInStripe(context: AccountContext, now: number): Promise<void> {
  const payments = new PaymentLog(context.sql);
  const due = payments.dueRecordings(now);
  if (!due.length || !context.config.stripeEnabled) return void rearm(context, payments);
  const lookups = due.filter((row) => lookupFirst(row, now)).length;
  const permit = stripePermit(context);
  try {
    await permit.reserve({ [ENDPOINTS.paymentIntentCreate]: due.length, [ENDPOINTS.paymentIntentList]: lookups });
  } catch (error) {
    log.warn("stripe budget: the directory shard did not answer; x402 recordings wait", error);
    return void context.timers.at(RECORD_TIMER, Date.now() + 5_000);
  }
  const stripe = stripeClient(context.config, permit);
  for (const row of due) {
    if (!permit.has(ENDPOINTS.paymentIntentCreate) || (lookupFirst(row, now) && !permit.has(ENDPOINTS.paymentIntentList))) {
      context.timers.at(RECORD_TIMER, Date.now() + Math.max(1000, permit.retryAfterMs));
      return;
    }
    if ((await send(context, stripe, payments, row, now)) === "rate_limited") break;
  }
  rearm(context, payments);
}

function rearm(context: AccountContext, payments: PaymentLog): void {
  const next = payments.nextRecordingAt();
  if (next !== null) context.timers.at(RECORD_TIMER, next);
}

/** After a 5xx (saved and replayed under its key) or once the key may have expired, the PaymentIntent is looked up before anything is sent. */
function lookupFirst(row: RecordingRow, now: number): boolean {
  return row.stripe_verify === 1 || now - row.created_at > IDEMPOTENCY_SAFE_MS;
}

async function send(context: AccountContext, stripe: Stripe, payments: PaymentLog, row: RecordingRow, now: number): Promise<"sent" | "retry" | "rate_limited" | "failed"> {
  const customer = context.account.row.customer_id;
  let key = row.stripe_key!;
  try {
    if (lookupFirst(row, now)) {
      const found = await lookUp(stripe, customer, row);
      if (found) return recorded(context, payments, row, found, now);
      if (row.stripe_verify === 1) key = payments.rotateKey(row);
    }
    payments.attempted(row.id);
    const pi = await stripe.paymentIntents.create(params(context, row), { idempotencyKey: key, apiVersion: CRYPTO_API_VERSION });
    return recorded(context, payments, row, pi, now);
  } catch (error) {
    if (isBudgetSpent(error)) {
      // It never reached Stripe: the attempt it counted is given back.
      payments.attempted(row.id, -1);
      context.timers.at(RECORD_TIMER, Date.now() + 1000);
      return "rate_limited";
    }
    const attempts = payments.recording(row.id)!.stripe_attempts;
    const message = describeError(error);
    const status = (error as { statusCode?: number }).statusCode;
    if (isTransientStripeError(error) && attempts < MAX_ATTEMPTS) {
      // A 5xx is saved under the key and replayed: the next attempt looks first. A timeout or a
      // lost answer retries the same key, which replays whatever Stripe did.
      payments.retryLater(row.id, (status !== undefined && status >= 500) || row.stripe_verify === 1, now + backoffMs(attempts), message);
      return status === 429 ? "rate_limited" : "retry";
    }
    payments.failed(row.id, message);
    log.error(`x402 payment ${row.id} (transaction ${row.transaction_id}): Stripe refused its PaymentIntent for good (${message}); record it by hand`);
    return "failed";
  }
}

/**
 * Stripe's sample, field for field (amount in cents, `currency: "usd"`, confirmed, the crypto
 * payment method in `transaction_verification` mode with the network and the transaction hash),
 * on the customer and with our metadata so a refund of it reaches the account like a top-up's and
 * a lookup finds it. The preview's fields are not in stripe-node's published types.
 */
function params(context: AccountContext, row: RecordingRow): Stripe.PaymentIntentCreateParams {
  const customer = context.account.row.customer_id;
  return {
    amount: row.amount_cents,
    currency: "usd",
    customer,
    confirm: true,
    description: "API credit top-up paid with x402",
    payment_method_data: { type: "crypto" },
    payment_method_types: ["crypto"],
    payment_method_options: {
      crypto: {
        mode: "transaction_verification",
        transaction_verification_options: { network: row.stripe_network, transaction_hash: row.transaction_id },
      },
    },
    metadata: { payg_customer_id: customer, payg_x402_payment: row.id, payg_credit_cents: String(row.amount_cents) },
  } as unknown as Stripe.PaymentIntentCreateParams;
}

/** Recorded: the grant is linked to the PaymentIntent (a refund that came first is applied now). */
function recorded(context: AccountContext, payments: PaymentLog, row: RecordingRow, pi: Stripe.PaymentIntent, now: number): "sent" {
  context.atomically(() => {
    payments.recorded(row.id, pi.id);
    const grant = row.grant_id ? context.grants.get(row.grant_id) : undefined;
    if (grant && grant.payment_intent === null) {
      context.grants.linkPaymentIntent(grant, pi.id);
      settleRefunds(context, grant, now);
      settleDisputes(context, grant, now);
    }
  });
  if (pi.status !== "succeeded" && pi.status !== "processing") log.warn(`x402 payment ${row.id}: its PaymentIntent ${pi.id} is ${pi.status}`);
  return "sent";
}

/** The recording's PaymentIntent, by its metadata, among the customer's since a little before the payment. */
async function lookUp(stripe: Stripe, customer: string, row: RecordingRow): Promise<Stripe.PaymentIntent | null> {
  const since = Math.floor(row.created_at / 1000) - 300;
  for await (const pi of stripe.paymentIntents.list({ customer, created: { gte: since }, limit: 100 })) {
    if (pi.metadata?.payg_x402_payment === row.id) return pi;
  }
  return null;
}
