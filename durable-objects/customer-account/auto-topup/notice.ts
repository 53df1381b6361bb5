import { centsToMicros, formatMoney } from "../../../src/lib/money";

/**
 * Why auto top-up is paused, and what a customer is told about a change to it. Pure: the admin
 * view, the portal and the `auto_topup_changed` email all word it from here.
 */

/** Pauses a card saved by a Checkout top-up does not lift: only setting `auto_topup` again does. */
export const SETTINGS_PAUSES = ["dispute", "refund", "below_threshold", "no_saved_card", "invalid_settings"] as const;

/** Whether saving a card with a Checkout top-up lifts this pause: only a card failure (Stripe's code). */
export function liftedByNewCard(reason: string | null): boolean {
  return reason !== null && !(SETTINGS_PAUSES as readonly string[]).includes(reason);
}

const PAUSED_BECAUSE: Record<(typeof SETTINGS_PAUSES)[number], string> = {
  dispute: "a payment made with the card saved for it was disputed",
  refund: "a payment made with the card saved for it was refunded",
  below_threshold: "a top-up left the credit still below the threshold",
  no_saved_card: "it used to charge the account's default card, and now charges only a card saved for it with a top-up",
  invalid_settings: "its threshold was not below the top-up amount",
};

/** Why it is paused, as a clause ("a payment made with … was disputed"). */
export function pausedBecause(reason: string): string {
  return (PAUSED_BECAUSE as Record<string, string>)[reason] ?? `its last payment failed (${reason})`;
}

/** The settings a change is described by (whole cents, seconds). */
export interface AutoTopUpTerms {
  threshold_cents: number;
  amount_cents: number;
  monthly_cap_cents: number;
  min_interval_seconds: number;
  max_per_day: number;
}

/**
 * What the customer is emailed about (`auto_topup_changed`): auto top-up turned on (also resumed
 * from a pause) or charging more (`raised`), or paused for a reason a new card does not lift.
 */
export type AutoTopUpNotice = { type: "updated"; turned_on: boolean; previous: AutoTopUpTerms | null; current: AutoTopUpTerms } | { type: "paused"; reason: string };

/** The changes from `previous` to `current` that let more be charged, in words; empty when none does. */
export function raised(previous: AutoTopUpTerms, current: AutoTopUpTerms, currency: string): string[] {
  const money = (cents: number) => formatMoney(centsToMicros(cents), currency);
  const changes: string[] = [];
  if (current.threshold_cents > previous.threshold_cents) changes.push(`threshold ${money(previous.threshold_cents)} → ${money(current.threshold_cents)}`);
  if (current.amount_cents > previous.amount_cents) changes.push(`amount ${money(previous.amount_cents)} → ${money(current.amount_cents)}`);
  if (current.monthly_cap_cents > previous.monthly_cap_cents) changes.push(`monthly limit ${money(previous.monthly_cap_cents)} → ${money(current.monthly_cap_cents)}`);
  if (current.max_per_day > previous.max_per_day) changes.push(`top-ups a day ${previous.max_per_day} → ${current.max_per_day}`);
  if (current.min_interval_seconds < previous.min_interval_seconds) {
    changes.push(`time between top-ups ${duration(previous.min_interval_seconds)} → ${duration(current.min_interval_seconds)}`);
  }
  return changes;
}

function duration(seconds: number): string {
  const [n, unit] = seconds % 3600 === 0 ? [seconds / 3600, "hour"] : seconds % 60 === 0 ? [seconds / 60, "minute"] : [seconds, "second"];
  return `${n} ${unit}${n === 1 ? "" : "s"}`;
}

/** The terms in one sentence's worth of words. */
export function describeTerms(t: AutoTopUpTerms, currency: string): string {
  const money = (cents: number) => formatMoney(centsToMicros(cents), currency);
  return (
    `when your credit falls below ${money(t.threshold_cents)}, ${money(t.amount_cents)} is charged to your saved card, ` +
    `at most ${money(t.monthly_cap_cents)} a month, ${t.max_per_day} a day, and at most one top-up every ${duration(t.min_interval_seconds)}`
  );
}

/** The `{{auto_topup.change}}` merge tag: what changed, in a sentence or two. */
export function describeNotice(notice: AutoTopUpNotice, currency: string): string {
  if (notice.type === "paused") {
    return `Automatic top-up is paused because ${pausedBecause(notice.reason)}. Nothing more will be charged to your card until automatic top-up is set again in the portal.`;
  }
  const terms = describeTerms(notice.current, currency);
  if (notice.turned_on || !notice.previous) return `Automatic top-up was turned on: ${terms}.`;
  return `Automatic top-up was changed (${raised(notice.previous, notice.current, currency).join("; ")}). Now ${terms}.`;
}
