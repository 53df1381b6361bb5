import type Stripe from "stripe";
import { MICROS_PER_CENT } from "../../../src/lib/money";
import { stripeClient } from "../../../src/lib/stripe-client";
import { markDeleted } from "../access/profile";
import type { Room } from "../core/context";

/**
 * The edge balance Stripe's numbers imply, with no I/O: Stripe credit (−balance), less usage not
 * yet reported, less credit reports Stripe refused (the edge holds those, Stripe does not).
 */
export function expectedBalanceMicros(stripeBalanceCents: number, pendingUsageMicros: number, failedBalanceCents: number): number {
  return -stripeBalanceCents * MICROS_PER_CENT - pendingUsageMicros - failedBalanceCents * MICROS_PER_CENT;
}

/**
 * Sets the edge balance from Stripe's, recording any difference as a `stripe_sync` ledger entry.
 * Only run with every report settled, so Stripe's number is never ambiguous about what it
 * already contains.
 */
export async function reconcile(room: Room, reason = "stripe reconcile"): Promise<void> {
  const customer = await stripeClient(room.config).customers.retrieve(room.account.row.customer_id);
  const now = Date.now();
  // A report queued while we waited (a webhook's top-up, a clawback) is not in Stripe's number yet.
  if (room.reports.pendingBalanceCount() > 0) {
    room.account.set({ reconcile_needed: 1 });
    return;
  }
  if ("deleted" in customer && customer.deleted) {
    markDeleted(room);
    room.account.set({ reconcile_needed: 0 });
    return;
  }
  const { balance: stripeBalance, currency } = customer as Stripe.Customer;
  room.account.set({ stripe_balance: stripeBalance, stripe_balance_at: now, stripe_currency: currency ?? null, reconcile_needed: 0, last_reconciled_at: now });
  const a = room.account.row;
  if (a.plan !== "prepaid" || room.currencyMismatch()) return;
  const delta = expectedBalanceMicros(stripeBalance, a.pending_usage, room.reports.failedBalanceCents()) - a.balance;
  if (delta === 0) return;
  room.atomically(() => {
    // Credit added in Stripe (the Dashboard, an invoice credit) becomes a grant; credit removed
    // there comes out of the grants in drain order. Neither goes back to Stripe.
    if (delta > 0) room.wallet.grant({ amount: delta, source: "stripe", reason: `Stripe balance: ${reason}` }, now);
    else room.wallet.deduct(-delta, "stripe_sync", `Stripe balance: ${reason}`, now);
    room.changed(now);
  });
}
