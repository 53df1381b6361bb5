import { log } from "../../../src/lib/log";
import { type BudgetPriority, type BudgetSource, ENDPOINTS, StripePermit } from "../../../src/lib/stripe-budget";
import { directoryFor } from "../../directory/contract";
import type { AccountContext } from "../core/context";

/** A permit on this customer's directory shard, whose buckets hold the calls it may make. */
export function stripePermit(context: AccountContext, priority: BudgetPriority = "background"): StripePermit {
  const shard = directoryFor(context.env, context.account.row.customer_id, context.config.DIRECTORY_SHARDS);
  return new StripePermit(shard as unknown as BudgetSource, priority);
}

/**
 * Asks the shard, in one RPC, for the calls this customer's Stripe work needs now: the due
 * reports (and the usage report about to be cut), their lookups, and a reconcile. The grant also
 * says whether the shard batches reports. A shard that cannot be reached grants nothing: the work
 * waits for the next cycle.
 */
export async function reserveStripeWork(context: AccountContext, permit: StripePermit, now: number, reconcile: boolean): Promise<void> {
  const due = context.reports.callsDue(now);
  try {
    await permit.reserve({
      [ENDPOINTS.balanceTransactionCreate]: due.balance,
      [ENDPOINTS.balanceTransactionList]: due.lookups,
      [ENDPOINTS.meterEventCreate]: due.meter,
      [ENDPOINTS.customerRetrieve]: reconcile ? 1 : 0,
    });
  } catch (error) {
    log.warn(`stripe budget: the directory shard did not answer; ${context.account.row.customer_id}'s Stripe work waits`, error);
    return;
  }
  context.reports.batching.setBatching(permit.batching !== null);
  // Batching just ended: the usage held back is worth its call now; asked for in one more RPC.
  const more = context.reports.callsDue(now).balance - due.balance;
  if (more > 0) await permit.reserve({ [ENDPOINTS.balanceTransactionCreate]: more }).catch(() => undefined);
}
