import type { AuthorizeResult } from "../../durable-objects/customer-account/contract";
import type { Config } from "../lib/config";
import { formatMoney, MICROS_PER_CENT } from "../lib/money";
import { issueChallenge } from "./mpp/challenge";
import { type Challenge, serializeChallenge, WWW_AUTHENTICATE } from "./mpp/wire";
import { railState } from "./x402/facilitator";
import { encodeHeader, PAYMENT_REQUIRED, type PaymentRequired, requirementsFor } from "./x402/wire";

/*
 * What a payable refusal offers (docs/concepts/agent-payments.md): a top-up pack the agent can
 * pay on its own, rendered for each configured rail. Only `insufficient_credit` is payable; an
 * overdue invoice, a key's cap or a currency mismatch is not something a top-up fixes.
 */

type CreditRefusal = Extract<AuthorizeResult, { outcome: "insufficient_credit" | "payment_overdue" }>;

/**
 * The pack for a request of `priceMicros`: PAYMENTS.topup_cents (default the Checkout minimum),
 * never less than the request's price; null when no rail is configured or the pack would pass
 * GOVERNANCE.checkout_max_cents. The same request always gets the same pack, so the retry's
 * payment is checked against exactly what was offered.
 */
export function packCents(config: Config, priceMicros: number): number | null {
  const payments = config.PAYMENTS;
  if (!payments?.x402 && !payments?.mpp) return null;
  const cents = Math.max(payments.topup_cents ?? config.GOVERNANCE.checkout_min_cents, Math.ceil(priceMicros / MICROS_PER_CENT));
  return cents <= config.GOVERNANCE.checkout_max_cents ? cents : null;
}

export interface Offer {
  cents: number;
  x402?: PaymentRequired;
  /** The Payment HTTP authentication scheme's challenge (Stripe method, charge intent). */
  mpp?: Challenge;
}

/** What a pack buys, in words: the x402 resource description and the MPP request's. */
export function packDescription(config: Config, cents: number, customerId: string): string {
  return `Adds ${formatMoney(cents * MICROS_PER_CENT, config.PRICING.currency)} of API credit to ${customerId}`;
}

/** A fresh MPP challenge for a pack, when the rail is configured. */
export async function mppOffer(config: Config, cents: number, customerId: string): Promise<Challenge | undefined> {
  if (!config.PAYMENTS?.mpp) return undefined;
  return await issueChallenge(config, cents, customerId, packDescription(config, cents, customerId));
}

/** The x402 PaymentRequired for a pack, when the rail is configured and its facilitator settles it. */
export async function x402Offer(config: Config, cents: number, customerId: string, url: string, error?: string): Promise<PaymentRequired | undefined> {
  const x402 = config.PAYMENTS?.x402;
  if (!x402 || !(await railState(x402)).on) return undefined;
  return {
    x402Version: 2,
    ...(error ? { error } : {}),
    resource: { url, description: packDescription(config, cents, customerId), mimeType: "application/json" },
    accepts: [requirementsFor(x402, cents)],
  };
}

export async function offerFor(config: Config, decision: CreditRefusal, url: string): Promise<Offer | null> {
  const cents = packCents(config, decision.priceMicros);
  if (cents === null) return null;
  const [x402, mpp] = await Promise.all([x402Offer(config, cents, decision.customer.id, url), mppOffer(config, cents, decision.customer.id)]);
  if (!x402 && !mpp) return null;
  return { cents, ...(x402 ? { x402 } : {}), ...(mpp ? { mpp } : {}) };
}

/** The offer's headers on a 402 (which no cache may keep). */
export function offerHeaders(offer: Offer | null): Record<string, string> {
  if (!offer) return {};
  return {
    "cache-control": "no-store",
    ...(offer.x402 ? { [PAYMENT_REQUIRED]: encodeHeader(offer.x402) } : {}),
    ...(offer.mpp ? { [WWW_AUTHENTICATE]: serializeChallenge(offer.mpp) } : {}),
  };
}

/** The offer in the JSON body, for an agent that reads the body first. */
export function offerBody(offer: Offer | null): Record<string, unknown> {
  if (!offer) return {};
  return { payment: { topup_cents: offer.cents, ...(offer.x402 ? { x402: offer.x402 } : {}), ...(offer.mpp ? { mpp: offer.mpp } : {}) } };
}

/** What /admin/status shows of the rails: on, off with the reason, or not configured (null). */
export async function paymentsStatus(config: Config): Promise<{ x402: string | null; mpp: string | null }> {
  const x402 = config.PAYMENTS?.x402;
  const mpp = config.PAYMENTS?.mpp ? "on" : null;
  if (!x402) return { x402: null, mpp };
  const state = await railState(x402);
  return { x402: state.on ? "on" : `off: ${state.reason}`, mpp };
}
