import { DAY_MS, HOUR_MS } from "../../src/lib/time";

/** Waits after the 1st, 2nd, … failed attempt; past the list, hourly. */
export const RETRY_DELAYS_MS = [5_000, 30_000, 120_000, 600_000, HOUR_MS] as const;
/** Retries stop once the next one would fall more than this after the first attempt. */
export const RETRY_WINDOW_MS = DAY_MS;

/**
 * When to try again after `failures` failed attempts in a round that started at `roundStartedAt`
 * (the first attempt, or a manual redeliver), or null: give up and mark the delivery failed.
 * 5 s, 30 s, 2 min, 10 min, 1 h, then hourly: 28 attempts over about 23 h 13 min.
 */
export function nextAttemptAt(failures: number, roundStartedAt: number, now: number): number | null {
  const at = now + (RETRY_DELAYS_MS[failures - 1] ?? HOUR_MS);
  return at - roundStartedAt <= RETRY_WINDOW_MS ? at : null;
}
