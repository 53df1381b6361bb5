import { HOUR_MS } from "../../../src/lib/time";
/** Backoff for retried sends (Stripe reports, emails): 30 s doubling, at most an hour. */
export function backoffMs(attempts: number): number {
  return Math.min(30_000 * 2 ** Math.max(0, attempts - 1), HOUR_MS);
}
