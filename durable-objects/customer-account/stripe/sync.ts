import { log } from "../../../src/lib/log";
import { ENDPOINTS } from "../../../src/lib/stripe-budget";
import type { AccountContext } from "../core/context";
import { reserveStripeWork, stripePermit } from "./budget";
import { reconcile } from "./reconcile";
import { flushReports, settleBalanceReports, waitForBudget } from "./report-sender";

/**
 * The Stripe work of one customer, under the object's lock (from the cron's cycle or the stripe
 * timer): takes the calls it needs from the budget (one RPC to its directory shard), cuts the
 * usage (the cron's cycle only: `cut`), sends the reports whose backoff has passed, then
 * reconciles when a balance change asked for it or the periodic reconcile is due, but only with
 * every balance report settled, so Stripe's number is never ambiguous about what it already
 * holds. A balance change in Stripe (a credit given in the Dashboard) does not wait out a
 * report's backoff: the pending reports are settled first (settleBalanceReports), then the credit
 * applies. What the budget had no calls for waits for a later cycle.
 */
export async function syncWithStripe(context: AccountContext, now: number, options: { cut?: boolean } = {}): Promise<{ sent: number; errors: number; pending: number }> {
  if (!context.config.stripeEnabled || !context.account.exists) return { sent: 0, errors: 0, pending: 0 };
  const periodic = context.periodicReconcileAt();
  const needed = context.account.row.reconcile_needed === 1;
  const due = needed || (periodic !== null && periodic <= now);
  const permit = stripePermit(context);
  await reserveStripeWork(context, permit, now, due);
  // Cut into rows before any call, so a crash loses nothing.
  if (options.cut) context.atomically(() => context.reports.cut(now));
  const flushed = await flushReports(context.reports, permit, now);
  if (needed && context.reports.pendingBalanceCount() > 0) await settleBalanceReports(context.reports, permit, now);
  if (due && context.reports.pendingBalanceCount() === 0) {
    if (!permit.has(ENDPOINTS.customerRetrieve)) waitForBudget(context.reports, permit);
    else {
      // Recorded first: a customer Stripe cannot reconcile is tried again an interval later, not every run.
      context.account.set({ reconcile_attempted_at: now });
      await reconcile(context, permit).catch((error) => log.error(`reconcile of ${context.account.row.customer_id} failed`, error));
    }
  }
  return { ...flushed, pending: context.reports.pendingCount() };
}

/** Sends queued reports now (after a grant, deduction, void or expiry); what fails or waits stays queued for the cron. */
export async function pushToStripe(context: AccountContext): Promise<void> {
  if (!context.config.stripeEnabled) return;
  const permit = stripePermit(context);
  const flushed = await reserveStripeWork(context, permit, Date.now(), false)
    .then(() => flushReports(context.reports, permit, Date.now()))
    .catch((error) => {
      log.error("stripe push failed", error);
      return { pending: 1 };
    });
  // Not pushed yet: make sure the cron comes back for it.
  if (flushed.pending > 0) context.directory.schedule();
}
