import { log } from "../../../src/lib/log";
import type { AccountContext } from "../core/context";
import { reconcile } from "./reconcile";
import { flushReports, settleBalanceReports } from "./report-sender";

/**
 * The Stripe work of one customer, under the object's lock (from the cron's cycle or the stripe
 * timer): sends the reports whose backoff has passed, then reconciles when a balance change asked
 * for it or the periodic reconcile is due, but only with every balance report settled, so
 * Stripe's number is never ambiguous about what it already holds. A balance change in Stripe (a
 * credit given in the Dashboard) does not wait out a report's backoff: the pending reports are
 * settled first (settleBalanceReports), then the credit applies.
 */
export async function syncWithStripe(context: AccountContext, now: number): Promise<{ sent: number; errors: number; pending: number }> {
  if (!context.config.stripeEnabled || !context.account.exists) return { sent: 0, errors: 0, pending: 0 };
  const flushed = await flushReports(context.reports, now);
  const periodic = context.periodicReconcileAt();
  const needed = context.account.row.reconcile_needed === 1;
  const due = needed || (periodic !== null && periodic <= now);
  if (needed && context.reports.pendingBalanceCount() > 0) await settleBalanceReports(context.reports, now);
  if (due && context.reports.pendingBalanceCount() === 0) {
    // Recorded first: a customer Stripe cannot reconcile is tried again an interval later, not every run.
    context.account.set({ reconcile_attempted_at: now });
    await reconcile(context).catch((error) => log.error(`reconcile of ${context.account.row.customer_id} failed`, error));
  }
  return { ...flushed, pending: context.reports.pendingCount() };
}

/** Sends queued reports now (after a grant, deduction, void or expiry); what fails stays queued for the cron. */
export async function pushToStripe(context: AccountContext): Promise<void> {
  if (!context.config.stripeEnabled) return;
  const flushed = await flushReports(context.reports, Date.now()).catch((error) => {
    log.error("stripe push failed", error);
    return { pending: 1 };
  });
  // Not pushed yet: make sure the cron comes back for it.
  if (flushed.pending > 0) context.directory.schedule();
}
