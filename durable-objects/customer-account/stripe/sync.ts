import { log } from "../../../src/lib/log";
import type { Room } from "../core/context";
import { reconcile } from "./reconcile";

/**
 * The Stripe work of one customer, under the object's lock (from the cron's cycle or the stripe
 * timer): sends the reports whose backoff has passed, then reconciles when a balance change asked
 * for it or the periodic reconcile is due, but only with every balance report settled, so
 * Stripe's number is never ambiguous about what it already holds. A balance change in Stripe (a
 * credit given in the Dashboard) does not wait out a report's backoff: the pending reports are
 * settled first (settleBalanceReports), then the credit applies.
 */
export async function syncWithStripe(room: Room, now: number): Promise<{ sent: number; errors: number; pending: number }> {
  if (!room.config.stripeEnabled || !room.account.exists) return { sent: 0, errors: 0, pending: 0 };
  const flushed = await room.reports.flush(now);
  const periodic = room.periodicReconcileAt();
  const needed = room.account.row.reconcile_needed === 1;
  const due = needed || (periodic !== null && periodic <= now);
  if (needed && room.reports.pendingBalanceCount() > 0) await room.reports.settleBalanceReports(now);
  if (due && room.reports.pendingBalanceCount() === 0) {
    // Recorded first: a customer Stripe cannot reconcile is tried again an interval later, not every run.
    room.account.set({ reconcile_attempted_at: now });
    await reconcile(room).catch((error) => log.error(`reconcile of ${room.account.row.customer_id} failed`, error));
  }
  return { ...flushed, pending: room.reports.pendingCount() };
}

/** Sends queued reports now (after a grant, deduction, void or expiry); what fails stays queued for the cron. */
export async function pushToStripe(room: Room): Promise<void> {
  if (!room.config.stripeEnabled) return;
  const flushed = await room.reports.flush(Date.now()).catch((error) => {
    log.error("stripe push failed", error);
    return { pending: 1 };
  });
  // Not pushed yet: make sure the cron comes back for it.
  if (flushed.pending > 0) room.directory.schedule();
}
