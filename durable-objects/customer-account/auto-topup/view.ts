import type { AutoTopUp, TopUpRow } from "./auto-topup";
import { liftedByNewCard, pausedBecause } from "./notice";
import { monthOf } from "./plan";

export type AutoTopUpState = "off" | "paused" | "inactive" | "no_card" | "pending" | "capped" | "waiting" | "active";

/** The admin API's view (also the portal's): settings, state and why, this month's and today's top-ups, the pending and last one. */
export function autoTopUpView(autoTopUp: AutoTopUp, now: number) {
  const r = autoTopUp.stored;
  const terms = autoTopUp.lastSet;
  if (!r || !terms) return null;
  const month = monthOf(now);
  const total = autoTopUp.monthTotal(month);
  const inactive = autoTopUp.inactive();
  const plan = autoTopUp.plan(now);
  const pending = autoTopUp.pending();
  const { dayCount } = autoTopUp.recentStarts(now, terms.min_interval_seconds);
  const state: AutoTopUpState = !r.enabled
    ? "off"
    : r.paused_reason !== null
      ? "paused"
      : inactive
        ? "inactive"
        : r.saved_payment_method === null
          ? "no_card"
          : pending
            ? "pending"
            : plan?.kind === "capped"
              ? "capped"
              : plan?.kind === "wait"
                ? "waiting"
                : "active";
  const reason = r.paused_reason ?? "";
  const why = {
    off: null,
    paused: `paused because ${pausedBecause(reason)}${r.paused_topup_id ? ` (top-up ${r.paused_topup_id})` : ""}: set auto_topup again${liftedByNewCard(reason) ? ", or save a card with a Checkout top-up," : ""} to resume`,
    inactive,
    no_card: "no card is saved for auto top-up: a Checkout top-up with save_payment_method saves one",
    pending: null,
    capped: `another top-up would take this month's top-ups past monthly_cap_cents (${total} of ${r.monthly_cap_cents} used)`,
    waiting:
      plan?.kind === "wait"
        ? `the next top-up waits until ${new Date(plan.at).toISOString()}: at most one every ${terms.min_interval_seconds} s (min_interval_seconds) and ${terms.max_per_day} a UTC day (max_per_day; ${dayCount} today)`
        : null,
    active: null,
  }[state];
  return {
    enabled: r.enabled === 1,
    ...terms,
    state,
    why,
    paused: r.paused_reason !== null,
    paused_at: r.paused_at,
    paused_reason: r.paused_reason,
    paused_topup_id: r.paused_topup_id,
    /** Whether a card saved by a Checkout top-up lifts the pause (a card failure), or only setting auto_topup again. */
    resumed_by_new_card: r.paused_reason !== null && liftedByNewCard(r.paused_reason),
    month,
    month_total_cents: total,
    month_remaining_cents: Math.max(0, terms.monthly_cap_cents - total),
    today_count: dayCount,
    next_topup_at: plan?.kind === "wait" ? plan.at : null,
    saved_payment_method: r.saved_payment_method,
    pending: pending ? topUpView(pending) : null,
    last: autoTopUp.recent(1).map(topUpView)[0] ?? null,
  };
}

export function topUpView(t: TopUpRow) {
  return {
    id: t.id,
    amount_cents: t.amount_cents,
    currency: t.currency,
    status: t.status,
    reason: t.reason,
    payment_intent: t.payment_intent,
    attempts: t.attempts,
    last_error: t.last_error,
    created_at: t.created_at,
    settled_at: t.settled_at,
  };
}
