import { centsToMicros, formatCents } from "../../../src/lib/money";
import type { ChargeRefunds } from "../contract";
import type { AccountContext } from "../core/context";
import { creditShare } from "../stripe/receipts";
import { giveBack, takeBack } from "./clawbacks";
import type { Grant } from "./grants";
import { VOID_REFUND } from "./refund-store";

/**
 * A refund of a top-up's payment takes its credit back; a refund that then fails gives it back
 * (its own ledger entry). Each refund is recorded by id and its status only moves forward, so
 * duplicates and reordered events change nothing. What was already spent becomes debt, and the
 * customer is refused until it is paid. Refunds that arrive before their top-up are applied when
 * it lands.
 */
export function applyRefund(context: AccountContext, facts: ChargeRefunds, now: number): "applied" | "ignored" {
  const pi = facts.payment_intent;
  if (!pi || facts.currency !== context.config.PRICING.currency) return "ignored";
  context.atomically(() => {
    for (const refund of facts.refunds) context.refunds.record(pi, refund, now);
    if (context.refunds.legacyCents(pi) !== null) context.refunds.adoptLegacy(pi, context.ledger.clawedBack(`refund_${pi}_`));
    const grant = context.grants.byPaymentIntent(pi);
    if (grant) settleRefunds(context, grant, now);
  });
  return "applied";
}

export function settleRefunds(context: AccountContext, grant: Grant, now: number): void {
  const rows = context.refunds.rows(grant.payment_intent!);
  if (!rows.length) {
    settleLegacyRefunds(context, grant, now);
    return;
  }
  for (const row of rows) {
    const failed = VOID_REFUND.has(row.status);
    if (!failed && row.applied === "no") {
      const micros = creditShare(context.sql, grant.payment_intent!, row.amount);
      const taken = takeBack(context, grant, micros, `refund ${row.id} of ${grant.payment_intent} (${formatCents(micros)} cents)`, `refund_${row.id}`, now);
      context.refunds.applied(row.id, "taken", taken);
    } else if (failed && row.applied === "taken") {
      giveBack(
        context,
        grant,
        row.taken,
        `refund ${row.id} of ${grant.payment_intent} ${row.status}: the credit it took back is given back`,
        `refund_${row.id}_${row.status}`,
        now,
      );
      context.refunds.applied(row.id, "given_back");
    } else if (failed && row.applied === "no") {
      context.refunds.applied(row.id, "none");
    }
  }
  const refunded = context.refunds.takenTotal(grant.payment_intent!);
  if (refunded !== grant.refunded) context.grants.setRefunded(grant, refunded);
  context.changed(now);
}

/** A refund recorded before refunds were tracked one by one: its cumulative cents. */
function settleLegacyRefunds(context: AccountContext, grant: Grant, now: number): void {
  const cents = context.refunds.legacyCents(grant.payment_intent!);
  if (cents === null) return;
  const target = Math.min(centsToMicros(cents), grant.amount);
  const delta = target - grant.refunded;
  if (delta <= 0) return;
  context.grants.setRefunded(grant, target);
  takeBack(
    context,
    grant,
    delta,
    `refund of ${grant.payment_intent} (${formatCents(target)} of ${formatCents(grant.amount)} refunded)`,
    `refund_${grant.payment_intent}_${cents}`,
    now,
  );
}
