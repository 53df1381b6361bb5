import type { KeyCapState } from "../../durable-objects/customer-account/contract";

/**
 * The RateLimit header fields for a key's spend cap, as draft-ietf-httpapi-ratelimit-headers-10
 * writes them (https://github.com/ietf-wg-httpapi/ratelimit-headers, Structured Fields lists of
 * RFC 9651): `RateLimit-Policy: "key_cap";q=<cap>;w=<period>;payg-unit="cents"` and
 * `RateLimit: "key_cap";r=<remaining>;t=<seconds to reset>`.
 * - q is the cap and r what remains of it, in whole cents (r rounded down). Cents are not in the
 *   draft's quota-unit registry, so the unit is a service-specific parameter, not `qu`.
 * - w is the length of the current UTC day or month in seconds; t the seconds until it ends.
 */
export const KEY_CAP_POLICY = "key_cap";

const DAY_SECONDS = 86_400;

function periodSeconds(cap: KeyCapState): number {
  if (cap.period === "day") return DAY_SECONDS;
  const last = new Date(cap.resetsAt - 1);
  return (cap.resetsAt - Date.UTC(last.getUTCFullYear(), last.getUTCMonth(), 1)) / 1000;
}

/** Seconds until the cap's period ends (never negative). */
export function secondsToReset(cap: KeyCapState, now: number): number {
  return Math.max(0, Math.ceil((cap.resetsAt - now) / 1000));
}

export function keyCapFields(cap: KeyCapState, now: number): { policy: string; limit: string } {
  const remaining = Math.max(0, Math.floor((cap.capCents * 1_000_000 - cap.spentMicros) / 1_000_000));
  return {
    policy: `"${KEY_CAP_POLICY}";q=${cap.capCents};w=${periodSeconds(cap)};payg-unit="cents"`,
    limit: `"${KEY_CAP_POLICY}";r=${remaining};t=${secondsToReset(cap, now)}`,
  };
}

/**
 * Adds the key cap's item to the response's RateLimit-Policy and RateLimit fields. Fields the
 * origin sent stay: a Structured Fields list may be split over several field lines, and
 * `Headers.append` joins them into one list ("a, b"), so the origin's items come first.
 */
export function addKeyCapFields(headers: Headers, cap: KeyCapState | undefined, now = Date.now()): void {
  if (!cap) return;
  const { policy, limit } = keyCapFields(cap, now);
  headers.append("ratelimit-policy", policy);
  headers.append("ratelimit", limit);
}
