import type Stripe from "stripe";
import { MICROS_PER_CENT } from "../../../src/lib/money";
import type { StripePermit } from "../../../src/lib/stripe-budget";
import { stripeClient } from "../../../src/lib/stripe-client";
import { markDeleted } from "../access/profile";
import type { AccountContext } from "../core/context";

/**
 * The one equation between the two balances, with no I/O: the edge balance (micro-cents) that
 * Stripe's balance (cents) implies is Stripe's credit (−balance), less usage not yet reported,
 * less the balance reports Stripe refused for good or has not received yet (the edge moved by
 * them, Stripe's balance did not).
 */
export function impliedEdgeBalance(s: { stripeBalanceCents: number; pendingUsageMicros: number; failedCents: number; unsentCents: number }): number {
  return -(s.stripeBalanceCents + s.failedCents + s.unsentCents) * MICROS_PER_CENT - s.pendingUsageMicros;
}

/** Whether Stripe's balance is exactly what the edge's books say it should be (our own echo, say). */
export function stripeAgrees(context: AccountContext, stripeBalanceCents: number): boolean {
  const a = context.account.row;
  return (
    impliedEdgeBalance({
      stripeBalanceCents,
      pendingUsageMicros: a.pending_usage,
      failedCents: context.reports.failedBalanceCents(),
      unsentCents: context.reports.unsentBalanceCents(),
    }) === a.balance
  );
}

/**
 * Sets the edge balance from Stripe's, recording any difference as a `stripe_sync` ledger entry.
 * Only run with every report settled, so Stripe's number is never ambiguous about what it
 * already contains.
 */
export async function reconcile(context: AccountContext, permit: StripePermit, reason = "stripe reconcile"): Promise<void> {
  const customer = await stripeClient(context.config, permit).customers.retrieve(context.account.row.customer_id);
  const now = Date.now();
  // A report queued while we waited (a webhook's top-up, a clawback) is not in Stripe's number yet.
  if (context.reports.pendingBalanceCount() > 0) {
    context.account.set({ reconcile_needed: 1 });
    return;
  }
  if ("deleted" in customer && customer.deleted) {
    markDeleted(context);
    context.account.set({ reconcile_needed: 0 });
    return;
  }
  const { balance: stripeBalance, currency } = customer as Stripe.Customer;
  context.account.set({ stripe_balance: stripeBalance, stripe_balance_at: now, stripe_currency: currency ?? null, reconcile_needed: 0, last_reconciled_at: now });
  const a = context.account.row;
  if (a.plan !== "prepaid" || context.currencyMismatch()) return;
  const delta =
    impliedEdgeBalance({ stripeBalanceCents: stripeBalance, pendingUsageMicros: a.pending_usage, failedCents: context.reports.failedBalanceCents(), unsentCents: 0 }) - a.balance;
  if (delta === 0) return;
  context.atomically(() => {
    // Credit added in Stripe (the Dashboard, an invoice credit) becomes a grant; credit removed
    // there comes out of the grants in drain order. Neither goes back to Stripe.
    if (delta > 0) context.wallet.grant({ amount: delta, source: "stripe", reason: `Stripe balance: ${reason}` }, now);
    else context.wallet.deduct(-delta, "stripe_sync", `Stripe balance: ${reason}`, now);
    context.changed(now);
  });
}
