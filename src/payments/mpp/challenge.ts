import { timingSafeEqualStrings } from "../../lib/api-key-format";
import type { Config } from "../../lib/config";
import { purposeMac } from "../../lib/derived-keys";
import type { MppConfig } from "../../lib/payments-config";
import { base64url, type Challenge, decodeJson, encodeJson, rfc3339, type StripeChargeRequest } from "./wire";

/*
 * Challenges are stateless until paid: the `id` is an HMAC over every other parameter (the draft's
 * recommended binding: realm|method|intent|request|expires|digest|opaque, with `header` before
 * opaque as mppx places it), under a key derived from KEY_SIGNING_SECRET for this purpose alone.
 * The customer the pack is for (and a nonce) ride in `opaque`, so the binding covers them too.
 */

export const METHOD = "stripe";
export const INTENT = "charge";

function bindingInput(c: Omit<Challenge, "id">): string {
  return [c.realm, c.method, c.intent, c.request, c.expires ?? "", c.digest ?? "", ...(c.header !== undefined ? [c.header] : []), c.opaque ?? ""].join("|");
}

async function idFor(secret: string, c: Omit<Challenge, "id">): Promise<string> {
  const hex = await purposeMac(secret, "payment-challenge", bindingInput(c));
  return encodeHexAsBase64url(hex);
}

function encodeHexAsBase64url(hex: string): string {
  let binary = "";
  for (let i = 0; i < hex.length; i += 2) binary += String.fromCharCode(Number.parseInt(hex.slice(i, i + 2), 16));
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function chargeRequest(config: Config, mpp: MppConfig, cents: number, description: string): StripeChargeRequest {
  return {
    amount: String(cents),
    currency: config.PRICING.currency,
    description,
    methodDetails: { networkId: mpp.network_id, paymentMethodTypes: mpp.payment_method_types },
  };
}

/** A fresh challenge for a pack of `cents` for `customerId`, answerable until `challenge_seconds` from now. */
export async function issueChallenge(config: Config, cents: number, customerId: string, description: string, now = Date.now()): Promise<Challenge> {
  const mpp = config.PAYMENTS!.mpp!;
  const unsigned: Omit<Challenge, "id"> = {
    realm: mpp.realm,
    method: METHOD,
    intent: INTENT,
    request: encodeJson(chargeRequest(config, mpp, cents, description)),
    description,
    expires: rfc3339(now + mpp.challenge_seconds * 1000),
    header: "Payment-Authorization",
    // The nonce makes each 402's challenge its own: one paid never stands for a later one.
    opaque: encodeJson({ customer: customerId, nonce: base64url(crypto.getRandomValues(new Uint8Array(16))) }),
  };
  return { id: await idFor(config.KEY_SIGNING_SECRET!, unsigned), ...unsigned };
}

export type ChallengeCheck =
  | { ok: true; request: StripeChargeRequest; customerId: string }
  | { ok: false; problem: "invalid-challenge" | "payment-expired" | "method-unsupported"; detail: string };

/**
 * The echoed challenge, checked before the token is touched (the draft's order): issued by this
 * gateway with these exact parameters (HMAC), for this realm, method and customer, not expired.
 */
export async function checkChallenge(config: Config, echo: Challenge, customerId: string, now = Date.now()): Promise<ChallengeCheck> {
  const mpp = config.PAYMENTS!.mpp!;
  if (echo.method !== METHOD || echo.intent !== INTENT) {
    return { ok: false, problem: "method-unsupported", detail: `This gateway takes method "${METHOD}", intent "${INTENT}".` };
  }
  const { id, ...rest } = echo;
  // The draft: a credential echoes every parameter of its challenge unchanged.
  const bound = await timingSafeEqualStrings(await idFor(config.KEY_SIGNING_SECRET!, rest), id);
  if (!bound || echo.realm !== mpp.realm)
    return { ok: false, problem: "invalid-challenge", detail: "The challenge was not issued by this gateway, or one of its parameters was changed." };
  const opaque = echo.opaque === undefined ? undefined : (decodeJson(echo.opaque) as { customer?: unknown } | undefined);
  if (opaque?.customer !== customerId) return { ok: false, problem: "invalid-challenge", detail: "The challenge was issued to another customer." };
  const expires = echo.expires === undefined ? Number.NaN : Date.parse(echo.expires);
  if (!(expires > now)) return { ok: false, problem: "payment-expired", detail: "The challenge has expired; answer the fresh one." };
  const request = decodeJson(echo.request) as StripeChargeRequest | undefined;
  if (!request || typeof request.amount !== "string" || !/^[1-9][0-9]{0,9}$/.test(request.amount)) {
    return { ok: false, problem: "invalid-challenge", detail: "The challenge's request is not one this gateway issues." };
  }
  return { ok: true, request, customerId };
}
