import { formatCents } from "../../../src/lib/money";
import type { AccountContext } from "../core/context";
import type { Grant } from "./grants";

/*
 * Clawbacks: a top-up's credit taken back (a refund, a lost dispute) and given back (a refund
 * that failed, a dispute won on appeal). Refunds (refunds.ts) and disputes (disputes.ts) decide
 * when; these two steps move the money, never the same credit twice.
 */

/** Takes back up to `wanted` of a grant's credit; what was spent becomes debt (wallet.takeFrom). Returns what it took. */
export function takeBack(context: AccountContext, grant: Grant, wanted: number, reason: string, reference: string, now: number): number {
  const micros = Math.min(wanted, Math.max(0, grant.amount - context.ledger.takenOut(grant.id)));
  const already = wanted - micros;
  const note = already > 0 ? `${reason}; ${formatCents(already)} cents of it were already voided, expired or taken back` : reason;
  if (micros === 0) {
    context.ledger.entry({ kind: "note", amount: 0, reason: `${note}: nothing taken`, now, grant: grant.id });
    return 0;
  }
  const customer = context.account.row.customer_id;
  const fields = context.reports.queueDebit("clawback", `payg_clawback_${customer}_${reference}`, micros);
  context.wallet.takeFrom(
    context.grants.all.find((g) => g.id === grant.id),
    micros,
    "clawback",
    note,
    now,
    reference,
    fields,
  );
  context.changed(now);
  return micros;
}

/** Gives back what a clawback took (wallet.reverseClawback); Stripe's balance gets the same cents back. */
export function giveBack(context: AccountContext, grant: Grant, micros: number, reason: string, reference: string, now: number): void {
  if (micros === 0) {
    context.ledger.entry({ kind: "note", amount: 0, reason: `${reason}: it had taken nothing`, now, grant: grant.id });
    return;
  }
  const customer = context.account.row.customer_id;
  context.wallet.reverseClawback(context.grants.all.find((g) => g.id === grant.id) ?? grant, micros, reason, now, reference, (given) =>
    context.reports.queueDebit("clawback_reversal", `payg_clawback_reversal_${customer}_${reference}`, -given),
  );
  context.changed(now);
}
