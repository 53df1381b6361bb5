import { centsToMicros } from "../../../src/lib/money";
import { DAY_MS } from "../../../src/lib/time";
import type { AutoTopUpTerms } from "./notice";

/** What the admin API sets (`auto_topup` in `PUT /admin/customers/{id}`): whole cents and seconds. */
export type AutoTopUpSettings = AutoTopUpTerms;

/** Just the settings' fields (a snapshot or a view may carry more). */
export function termsOf(s: AutoTopUpSettings): AutoTopUpSettings {
  const { threshold_cents, amount_cents, monthly_cap_cents, min_interval_seconds, max_per_day } = s;
  return { threshold_cents, amount_cents, monthly_cap_cents, min_interval_seconds, max_per_day };
}

export function monthOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 7);
}

/** The start of the UTC day after the one `ms` is in. */
export function nextUtcDay(ms: number): number {
  return (Math.floor(ms / DAY_MS) + 1) * DAY_MS;
}

/** none: nothing to do; start: a top-up now; capped: the monthly cap stops it; wait: a rate limit holds it until `at`. */
export type TopUpPlan = { kind: "none" | "start" | "capped" } | { kind: "wait"; at: number };

/**
 * Whether a top-up starts now, with no I/O: only with none pending, below the threshold, if it
 * keeps the month's top-ups (pending and succeeded) within the cap (else `capped`, the
 * auto_topup_capped cohort), at least `min_interval_seconds` after the last one started and
 * within `max_per_day` started this UTC day (else `wait` until both allow it).
 */
export function planTopUp(s: {
  settings: AutoTopUpSettings;
  pending: boolean;
  availableMicros: number;
  monthTotalCents: number;
  /** Top-ups started (any status but canceled) this UTC day, and when the latest started (ms). */
  dayCount: number;
  lastStartedAt: number | null;
  now: number;
}): TopUpPlan {
  if (s.pending || s.availableMicros >= centsToMicros(s.settings.threshold_cents)) return { kind: "none" };
  if (s.monthTotalCents + s.settings.amount_cents > s.settings.monthly_cap_cents) return { kind: "capped" };
  let at = s.now;
  if (s.lastStartedAt !== null) at = Math.max(at, s.lastStartedAt + s.settings.min_interval_seconds * 1000);
  if (s.dayCount >= s.settings.max_per_day) at = Math.max(at, nextUtcDay(s.now));
  return at > s.now ? { kind: "wait", at } : { kind: "start" };
}

export type TopUpStatus = "pending" | "succeeded" | "failed" | "canceled";

export interface TopUpRow {
  id: string;
  amount_cents: number;
  currency: string;
  /** The UTC calendar month it started in ("2026-11"): the monthly cap counts by it. */
  month: string;
  status: TopUpStatus;
  idempotency_key: string;
  payment_intent: string | null;
  /** The card it charges, fixed when it starts (the saved card then). */
  payment_method: string | null;
  /** Where Stripe sends the payment's receipt, fixed when it starts (the customer's email then; null: none). */
  receipt_email: string | null;
  attempts: number;
  /** 1 after Stripe answered 5xx: the next attempt looks the PaymentIntent up before sending. */
  verify: number;
  next_attempt_at: number | null;
  reason: string | null;
  last_error: string | null;
  created_at: number;
  settled_at: number | null;
}
