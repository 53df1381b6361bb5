import { log } from "../../src/log";
import type { Room } from "./room";
import { reconcile } from "./stripe-reconcile";

/**
 * The Stripe work of one customer, under the object's lock (from the cron's cycle or the stripe
 * timer): sends the reports whose backoff has passed, then reconciles when a balance change asked
 * for it or the periodic reconcile is due, but only with every report settled, so Stripe's number
 * is never ambiguous about what it already holds.
 */
export async function syncWithStripe(room: Room, now: number): Promise<{ sent: number; errors: number; pending: number }> {
  if (!room.config.stripeEnabled || !room.account.exists) return { sent: 0, errors: 0, pending: 0 };
  const flushed = await room.reports.flush(now);
  const periodic = room.periodicReconcileAt();
  const due = room.account.row.reconcile_needed === 1 || (periodic !== null && periodic <= now);
  if (due && flushed.pending === 0) {
    // Recorded first: a customer Stripe cannot reconcile is tried again an interval later, not every run.
    room.account.set({ reconcile_attempted_at: now });
    await reconcile(room).catch((error) => log.error(`reconcile of ${room.account.row.customer_id} failed`, error));
  }
  return flushed;
}
