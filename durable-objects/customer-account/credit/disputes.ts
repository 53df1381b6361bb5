import type Stripe from "stripe";
import { log } from "../../../src/lib/log";
import { formatCents } from "../../../src/lib/money";
import { idOf } from "../../../src/lib/stripe-ids";
import type { AccountContext } from "../core/context";
import { creditShare } from "../stripe/receipts";
import { giveBack, takeBack } from "./clawbacks";
import { DISPUTE_ORDER, effectOf } from "./dispute-store";
import type { Grant } from "./grants";

/**
 * Disputes, each event applied once and in order of its `created` time, whatever the delivery
 * order: an older event than the one applied changes nothing. The status decides the effect on
 * the grant (effectOf); settleDisputes moves the grant from the effect applied to the one wanted.
 * Either before the top-up itself waits for it.
 */
export function applyDispute(context: AccountContext, dispute: Stripe.Dispute, event: Pick<Stripe.Event, "type" | "created">, now: number): "applied" | "ignored" {
  const pi = idOf(dispute.payment_intent);
  if (!pi || dispute.currency !== context.config.PRICING.currency) return "ignored";
  if (!DISPUTE_ORDER.includes(dispute.status)) {
    log.warn(`dispute ${dispute.id}: unknown status ${dispute.status}; nothing changed`);
    return "ignored";
  }
  const row = context.disputes.get(dispute.id);
  const reinstated = event.type === "charge.dispute.funds_reinstated" || (dispute.balance_transactions ?? []).some((t) => t.amount > 0) ? 1 : 0;
  const newer = !row || event.created > row.event_at || (event.created === row.event_at && DISPUTE_ORDER.indexOf(dispute.status) > DISPUTE_ORDER.indexOf(row.status));
  if (!newer && (reinstated === 0 || row!.reinstated === 1)) return "ignored";
  context.atomically(() => {
    context.disputes.upsert(
      {
        id: dispute.id,
        payment_intent: pi,
        amount: newer ? dispute.amount : row!.amount,
        status: newer ? dispute.status : row!.status,
        event_at: newer ? event.created : row!.event_at,
        reinstated: Math.max(reinstated, row?.reinstated ?? 0),
      },
      now,
    );
    const grant = context.grants.byPaymentIntent(pi);
    if (grant) settleDisputes(context, grant, now);
  });
  return "applied";
}

/**
 * Moves the grant from the effect each dispute has applied to the one its status wants. The
 * disputed amounts of open chargebacks are the grant's `disputed`: GrantBook keeps what is
 * frozen at min(remaining, disputed) wherever the credit sits when the dispute opens (a hold
 * that settles later, a refund of a request, gives its credit back frozen).
 */
export function settleDisputes(context: AccountContext, grant: Grant, now: number): void {
  const rows = context.disputes.ofPayment(grant.payment_intent!);
  const live = context.grants.all.find((g) => g.id === grant.id);
  // A taxed payment's dispute concerns its pre-tax share of the credit only (creditShare).
  const share = (cents: number) => creditShare(context.sql, grant.payment_intent!, cents);
  const disputed = rows.filter((r) => effectOf(r) === "frozen").reduce((sum, r) => sum + share(r.amount), 0);
  if (live && Math.min(disputed, live.amount) !== live.disputed) context.grants.setDisputed(live, disputed);
  for (const row of rows) {
    const want = effectOf(row);
    if (want === row.effect) continue;
    let { taken, moves } = row;
    if (row.effect === "taken") {
      const why = row.reinstated ? "funds reinstated" : row.status;
      giveBack(context, grant, taken, `dispute ${row.id} ${why}: the credit it took back is given back`, `dispute_${row.id}_${moves}`, now);
      taken = 0;
      moves++;
    }
    const amount = Math.min(share(row.amount), grant.amount);
    if (want === "taken") {
      taken = takeBack(context, grant, amount, `dispute ${row.id} lost`, moves === 0 ? `dispute_${row.id}` : `dispute_${row.id}_${moves}`, now);
      moves++;
    } else if (want === "frozen") {
      context.ledger.entry({
        kind: "note",
        amount: 0,
        reason: `dispute ${row.id} opened (${row.status}): up to ${formatCents(amount)} cents of ${grant.id} frozen`,
        now,
        grant: grant.id,
      });
    } else if (row.effect === "frozen") {
      context.ledger.entry({ kind: "note", amount: 0, reason: `dispute ${row.id} ${row.status}: credit released`, now, grant: grant.id });
    }
    context.disputes.applied(row.id, want, taken, moves);
  }
  context.changed(now);
}
