import Stripe from "stripe";
import type { Config } from "../../lib/config";
import { log } from "../../lib/log";
import { ENDPOINTS } from "../../lib/stripe-budget";
import { describeError, isTransientStripeError, stripeClient } from "../../lib/stripe-client";
import { checkoutPermit } from "../../stripe-permit";

/**
 * Shared Payment Tokens are a Stripe preview: the PaymentIntent that spends one is created under
 * a preview API version (mppx's stripe method sends this one: dist/stripe/internal/constants.js).
 */
export const SPT_API_VERSION = "2026-07-29.preview";

export interface SptCharge {
  customerId: string;
  challengeId: string;
  cents: number;
  currency: string;
  spt: string;
  description: string;
}

export type SptChargeResult =
  | { status: "succeeded"; paymentIntent: string }
  /** Confirmed but not (yet) paid: `processing`, or `requires_action` the agent cannot take. */
  | { status: "pending"; paymentIntent: string; reason: string }
  | { status: "declined"; reason: string }
  | { status: "unavailable"; reason: string };

/** The Stripe idempotency key of a challenge's charge: one PaymentIntent per challenge, whatever is retried. */
export const chargeKey = (challengeId: string) => `payg_mpp_${challengeId}`;

/**
 * The one Stripe call of the rail (draft-stripe-charge-00 §Settlement): a confirmed PaymentIntent
 * spending the token, on the customer (so its refunds and disputes reach the account like a
 * top-up's), idempotent by the challenge id, taking its call from the Stripe budget like Checkout.
 * A lost answer is retried by the SDK under the same key; a retry of the credential repeats it.
 */
export async function chargeSharedPaymentToken(env: Env, config: Config, charge: SptCharge): Promise<SptChargeResult> {
  const permit = await checkoutPermit(env, config, charge.customerId, ENDPOINTS.paymentIntentCreate);
  // Not in the GA typings: SPTs are in preview.
  const params = {
    amount: charge.cents,
    currency: charge.currency,
    customer: charge.customerId,
    shared_payment_granted_token: charge.spt,
    confirm: true,
    automatic_payment_methods: { enabled: true, allow_redirects: "never" },
    description: charge.description,
    metadata: { payg_customer_id: charge.customerId, payg_mpp_challenge: charge.challengeId, payg_credit_cents: String(charge.cents) },
  } as unknown as Stripe.PaymentIntentCreateParams;
  try {
    const pi = await stripeClient(config, permit).paymentIntents.create(params, { idempotencyKey: chargeKey(charge.challengeId), apiVersion: SPT_API_VERSION });
    if (pi.status === "succeeded") return { status: "succeeded", paymentIntent: pi.id };
    if (pi.status === "processing" || pi.status === "requires_action")
      return { status: "pending", paymentIntent: pi.id, reason: pi.status === "processing" ? "the payment is processing" : "the payment needs the payer's action" };
    return { status: "declined", reason: `the PaymentIntent is ${pi.status}` };
  } catch (error) {
    if (error instanceof Stripe.errors.StripeCardError) return { status: "declined", reason: error.decline_code ?? error.code ?? "card_declined" };
    if (isTransientStripeError(error)) {
      log.warn(`mpp charge for challenge ${charge.challengeId} got no answer`, describeError(error));
      return { status: "unavailable", reason: describeError(error) };
    }
    return { status: "declined", reason: error instanceof Stripe.errors.StripeError ? (error.code ?? error.message) : String(error) };
  }
}
