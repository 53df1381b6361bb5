/**
 * Shared Payment Tokens (`spt_…`), the seller's side: a token an agent was granted for a payment
 * method, with usage limits, that a PaymentIntent spends (Stripe preview APIs; shapes from
 * stripe/openapi `openapi/fixtures3.private_preview.json` `shared_payment.granted_token`, the
 * create and revoke test helpers from docs.stripe.com/agentic-commerce/testing, and the MPP Stripe
 * method, tempoxyz/mpp-specs specs/methods/stripe/draft-stripe-charge-00.md).
 *
 * - `POST /v1/test_helpers/shared_payment/granted_tokens` (`payment_method` and
 *   `usage_limits[currency|max_amount]` required, `usage_limits[expires_at]` optional) grants one;
 *   `POST /v1/test_helpers/shared_payment/granted_tokens/:id/revoke` revokes it;
 *   `GET /v1/shared_payment/granted_tokens/:id` reads it.
 * - `POST /v1/payment_intents` spends one given as `shared_payment_granted_token` (the MPP spec and
 *   mppx) or `payment_method_data[shared_payment_granted_token]` (Stripe's 2026-04-22.preview
 *   changelog and beta typings): the two placements disagree between sources, the double takes both.
 *
 * Choices of the double (Stripe documents no error codes for these): a token granted with
 * `settlesLater` stands for an asynchronous payment method (a bank debit, say): its PaymentIntent
 * is `processing` (`payment_intent.processing`) until the test settles it, and its amount counts
 * against the token's limit once it succeeds. An unknown token is 400
 * `resource_missing`; a revoked or expired one, a currency other than its limit's, or an amount
 * past what is left of `max_amount` is 400 `shared_payment_granted_token_invalid`
 * (`invalid_request_error`, not saved under an idempotency key, as validation errors are not).
 */
import type Stripe from "stripe";
import { invalid, newId, noSuch, type Params, readInt, readString } from "./common";
import type { StripeState } from "./core";
import { resolvePaymentMethod } from "./payments";

export interface GrantedToken {
  id: string;
  object: "shared_payment.granted_token";
  agent_details: { network_business_profile: string | null };
  created: number;
  deactivated_at: number | null;
  deactivated_reason: "consumed" | "expired" | "resolved" | "revoked" | null;
  livemode: false;
  payment_method_details: { type: string; billing_details: Stripe.PaymentMethod.BillingDetails };
  shared_metadata: Record<string, string> | null;
  usage_details: { amount_captured: { currency: string; value: number } };
  usage_limits: { currency: string; expires_at: number | null; max_amount: number };
}

/** The test payment method behind each token (a `pm_card_*` test token or a `pm_…`). */
const paymentMethodOf = new WeakMap<GrantedToken, string>();
const settlesLater = new WeakSet<GrantedToken>();
/** The token a `processing` PaymentIntent spends, counted against its limit when it succeeds. */
const pendingSpend = new WeakMap<Stripe.PaymentIntent, GrantedToken>();

export function grantToken(
  state: StripeState,
  input: { paymentMethod: string; currency: string; maxAmount: number; expiresAt?: number | null; networkBusinessProfile?: string | null; settlesLater?: boolean },
): GrantedToken {
  const pm = resolvePaymentMethod(state, input.paymentMethod, "payment_method");
  const token: GrantedToken = {
    id: newId("spt_"),
    object: "shared_payment.granted_token",
    agent_details: { network_business_profile: input.networkBusinessProfile ?? null },
    created: Math.floor(state.nowMs() / 1000),
    deactivated_at: null,
    deactivated_reason: null,
    livemode: false,
    payment_method_details: { type: pm.type, billing_details: pm.billing_details },
    shared_metadata: null,
    usage_details: { amount_captured: { currency: input.currency, value: 0 } },
    usage_limits: { currency: input.currency, expires_at: input.expiresAt ?? null, max_amount: input.maxAmount },
  };
  paymentMethodOf.set(token, input.paymentMethod);
  if (input.settlesLater) settlesLater.add(token);
  state.grantedTokens.set(token.id, token);
  return token;
}

export function apiGrantToken(state: StripeState, params: Params): GrantedToken {
  const paymentMethod = readString(params, "payment_method", { required: true })!;
  const limits = params.usage_limits;
  if (typeof limits !== "object" || limits === null || Array.isArray(limits))
    throw invalid("Missing required param: usage_limits.", { code: "parameter_missing", param: "usage_limits" });
  const currency = readString(limits as Params, "currency", { required: true })!;
  const maxAmount = readInt(limits as Params, "max_amount", { required: true })!;
  const expiresAt = readInt(limits as Params, "expires_at") ?? null;
  return grantToken(state, { paymentMethod, currency, maxAmount, expiresAt });
}

export function apiRetrieveToken(state: StripeState, id: string): GrantedToken {
  const token = state.grantedTokens.get(id);
  if (!token) throw noSuch("shared_payment.granted_token", id, "id", 404);
  return structuredClone(token);
}

export function apiRevokeToken(state: StripeState, id: string): GrantedToken {
  const token = state.grantedTokens.get(id);
  if (!token) throw noSuch("shared_payment.granted_token", id, "id", 404);
  if (!token.deactivated_at) [token.deactivated_at, token.deactivated_reason] = [Math.floor(state.nowMs() / 1000), "revoked"];
  return structuredClone(token);
}

/** The token a PaymentIntent create names, in either placement, or undefined. */
export function tokenParam(params: Params): string | undefined {
  const top = readString(params, "shared_payment_granted_token");
  const data = params.payment_method_data;
  const nested = typeof data === "object" && data !== null && !Array.isArray(data) ? readString(data as Params, "shared_payment_granted_token") : undefined;
  if (top !== undefined && nested !== undefined) throw invalid("Pass shared_payment_granted_token once.", { param: "shared_payment_granted_token" });
  return top ?? nested;
}

/** A fresh payment method for a PaymentIntent spending `id`, after checking the token's limits for it. */
export function spendToken(state: StripeState, id: string, amount: number, currency: string): { pm: Stripe.PaymentMethod; token: GrantedToken } {
  const token = state.grantedTokens.get(id);
  if (!token) throw invalid(`No such shared_payment.granted_token: '${id}'`, { code: "resource_missing", param: "shared_payment_granted_token" });
  const refuse = (message: string) => invalid(message, { code: "shared_payment_granted_token_invalid", param: "shared_payment_granted_token" });
  const nowSeconds = Math.floor(state.nowMs() / 1000);
  if (token.deactivated_at) throw refuse(`The shared payment token ${id} is deactivated (${token.deactivated_reason}).`);
  if (token.usage_limits.expires_at !== null && token.usage_limits.expires_at <= nowSeconds) throw refuse(`The shared payment token ${id} has expired.`);
  if (currency !== token.usage_limits.currency) throw refuse(`The shared payment token ${id} is limited to ${token.usage_limits.currency}.`);
  if (token.usage_details.amount_captured.value + amount > token.usage_limits.max_amount)
    throw refuse(`The amount exceeds what is left of the shared payment token ${id}'s usage limit.`);
  const pm = resolvePaymentMethod(state, paymentMethodOf.get(token)!, "shared_payment_granted_token");
  if (settlesLater.has(token)) state.cardBehavior.set(pm.id, "settles_later");
  return { pm, token };
}

/** A PaymentIntent that spent the token succeeded: its amount counts against the limit. */
export function tokenCaptured(token: GrantedToken, amount: number): void {
  token.usage_details.amount_captured.value += amount;
}

export function tokenPending(pi: Stripe.PaymentIntent, token: GrantedToken): void {
  pendingSpend.set(pi, token);
}

/** A `processing` PaymentIntent succeeded: the token it spent counts its amount now. */
export function tokenSettled(pi: Stripe.PaymentIntent): void {
  const token = pendingSpend.get(pi);
  if (token) tokenCaptured(token, pi.amount);
  pendingSpend.delete(pi);
}
