import type Stripe from "stripe";
import { MICROS_PER_CENT } from "../../src/money";
import { stripeClient } from "../../src/stripe/client";
import { markDeleted } from "./profile";
import type { Room } from "./room";

/**
 * The edge balance Stripe's numbers imply, with no I/O: Stripe credit (−balance), less usage not
 * yet reported, less credit reports Stripe refused (the edge holds those, Stripe does not).
 */
export function expectedBalanceMicros(stripeBalanceCents: number, pendingUsageMicros: number, failedCreditCents: number): number {
  return -stripeBalanceCents * MICROS_PER_CENT - pendingUsageMicros - failedCreditCents * MICROS_PER_CENT;
}

/**
 * Sets the edge balance from Stripe's, recording any difference as a `stripe_sync` ledger entry.
 * Only run with every report settled, so Stripe's number is never ambiguous about what it
 * already contains.
 */
export async function reconcile(room: Room, reason = "stripe reconcile"): Promise<void> {
  const customer = await stripeClient(room.config).customers.retrieve(room.account.row.customer_id);
  const now = Date.now();
  if ("deleted" in customer && customer.deleted) {
    markDeleted(room);
    room.account.set({ reconcile_needed: 0 });
    return;
  }
  const stripeBalance = (customer as Stripe.Customer).balance;
  room.account.set({ stripe_balance: stripeBalance, stripe_balance_at: now, reconcile_needed: 0 });
  const a = room.account.row;
  if (a.plan !== "prepaid") return;
  const delta = expectedBalanceMicros(stripeBalance, a.pending_usage, room.reports.failedCreditCents()) - a.balance;
  if (delta !== 0) {
    room.ledger.entry({ kind: "stripe_sync", amount: delta, reason, now });
    room.changed();
  }
}
