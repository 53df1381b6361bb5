import type { ChargeRefunds } from "../contract";
import type Stripe from "stripe";
import { log } from "../../../src/lib/log";
import { centsToMicros, formatCents } from "../../../src/lib/money";
import type { Grant } from "./grants";
import type { AccountContext } from "../core/context";
import { idOf } from "../../../src/lib/stripe-ids";


interface RefundRow {
  id: string;
  payment_intent: string;
  /** Whole cents. */
  amount: number;
  status: string;
  created: number;
  /** What was done to the grant: no (not yet), taken, given_back (the refund failed after), none (it failed first). */
  applied: "no" | "taken" | "given_back" | "none";
  /** Micro-cents its clawback took. */
  taken: number;
}

/** A refund moves forward only: pending (or requires_action), succeeded, then failed or canceled, which are final. */
const REFUND_RANK: Record<string, number> = { pending: 0, requires_action: 0, succeeded: 1, failed: 2, canceled: 2 };
/** Refunds whose money never reached the customer. */
const VOID_REFUND = new Set(["failed", "canceled"]);

type Effect = "none" | "frozen" | "taken";

interface DisputeRow {
  id: string;
  payment_intent: string | null;
  /** Whole cents disputed. */
  amount: number;
  /** Stripe's status, as of the latest event applied (`event_at`, its `created`). */
  status: Stripe.Dispute.Status;
  event_at: number;
  /** 1 once Stripe reinstated the withdrawn funds (charge.dispute.funds_reinstated). */
  reinstated: number;
  /** What is applied to the grant now, and the micro-cents it took when `taken`. */
  effect: Effect;
  taken: number;
  /** Clawbacks and reversals written so far (each needs its own ledger reference). */
  moves: number;
}

/**
 * Stripe's dispute statuses in the order a dispute moves through them (events with the same
 * `created` second are ordered by it). Inquiries (warning_*) withdraw no funds and freeze
 * nothing: a question from the bank is not a chargeback, and the customer keeps paying with
 * credit they paid for. A chargeback (needs_response, under_review) freezes the disputed credit;
 * won, prevented and a closed inquiry take nothing; lost and its appeals take it back until the
 * funds are reinstated.
 */
const DISPUTE_ORDER: readonly string[] = [
  "warning_needs_response",
  "warning_under_review",
  "warning_closed",
  "needs_response",
  "under_review",
  "prevented",
  "won",
  "lost",
  "appeal_needs_response",
  "appeal_under_review",
];
const FREEZES = new Set(["needs_response", "under_review"]);
const TAKES = new Set(["lost", "appeal_needs_response", "appeal_under_review"]);

function effectOf(row: Pick<DisputeRow, "status" | "reinstated">): Effect {
  if (row.reinstated) return "none";
  return FREEZES.has(row.status) ? "frozen" : TAKES.has(row.status) ? "taken" : "none";
}


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
    for (const refund of facts.refunds) recordRefund(context, pi, refund, now);
    adoptLegacyRefunds(context, pi);
    const grant = context.grants.byPaymentIntent(pi);
    if (grant) settleRefunds(context, grant, now);
  });
  return "applied";
}

function recordRefund(context: AccountContext, pi: string, refund: ChargeRefunds["refunds"][number], now: number): void {
  const status = refund.status ?? "pending";
  const row = context.sql.exec("SELECT status FROM refunds WHERE id = ?", refund.id).toArray()[0];
  if (!row) {
    context.sql.exec(
      "INSERT INTO refunds (id, payment_intent, amount, status, created, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
      refund.id,
      pi,
      refund.amount,
      status,
      refund.created,
      now,
    );
  } else if ((REFUND_RANK[status] ?? 0) > (REFUND_RANK[row.status as string] ?? 0)) {
    context.sql.exec("UPDATE refunds SET status = ?, updated_at = ? WHERE id = ?", status, now, refund.id);
  }
}

/**
 * Before refunds were tracked one by one, a payment kept only its cumulative refunded cents. The
 * first list of its refunds takes over: what those clawbacks took is attributed to the oldest
 * refunds, which then count as taken (and are given back if they fail).
 */
function adoptLegacyRefunds(context: AccountContext, pi: string): void {
  if (!context.sql.exec("SELECT 1 FROM payment_refunds WHERE payment_intent = ?", pi).toArray().length) return;
  const taken = context.sql.exec("SELECT COALESCE(-SUM(amount), 0) AS t FROM ledger WHERE kind = 'clawback' AND reference LIKE ? ESCAPE '\\'", `refund\\_${pi}\\_%`).one();
  let left = taken.t as number;
  for (const row of refundRows(context, pi)) {
    if (left <= 0) break;
    const part = Math.min(left, centsToMicros(row.amount));
    context.sql.exec("UPDATE refunds SET applied = 'taken', taken = ? WHERE id = ?", part, row.id);
    left -= part;
  }
  context.sql.exec("DELETE FROM payment_refunds WHERE payment_intent = ?", pi);
}

function refundRows(context: AccountContext, pi: string): RefundRow[] {
  return context.sql.exec("SELECT * FROM refunds WHERE payment_intent = ? ORDER BY created, id", pi).toArray() as unknown as RefundRow[];
}

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
  const row = context.sql.exec("SELECT * FROM disputes WHERE id = ?", dispute.id).toArray()[0] as unknown as DisputeRow | undefined;
  const reinstated = event.type === "charge.dispute.funds_reinstated" || (dispute.balance_transactions ?? []).some((t) => t.amount > 0) ? 1 : 0;
  const newer =
    !row || event.created > row.event_at || (event.created === row.event_at && DISPUTE_ORDER.indexOf(dispute.status) > DISPUTE_ORDER.indexOf(row.status));
  if (!newer && (reinstated === 0 || row!.reinstated === 1)) return "ignored";
  context.atomically(() => {
    context.sql.exec(
      `INSERT INTO disputes (id, payment_intent, amount, status, event_at, reinstated, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET amount = excluded.amount, status = excluded.status, event_at = excluded.event_at, reinstated = excluded.reinstated`,
      dispute.id,
      pi,
      newer ? dispute.amount : row!.amount,
      newer ? dispute.status : row!.status,
      newer ? event.created : row!.event_at,
      Math.max(reinstated, row?.reinstated ?? 0),
      now,
    );
    const grant = context.grants.byPaymentIntent(pi);
    if (grant) settleDisputes(context, grant, now);
  });
  return "applied";
}

/** Applies to a top-up's grant what its payment's refunds and disputes say (also when it lands late). */
export function settleClawbacks(context: AccountContext, grant: Grant, now: number): void {
  settleRefunds(context, grant, now);
  settleDisputes(context, grant, now);
}

function settleRefunds(context: AccountContext, grant: Grant, now: number): void {
  const rows = refundRows(context, grant.payment_intent!);
  if (!rows.length) return settleLegacyRefunds(context, grant, now);
  for (const row of rows) {
    const failed = VOID_REFUND.has(row.status);
    if (!failed && row.applied === "no") {
      const micros = centsToMicros(row.amount);
      const taken = takeBack(context, grant, micros, `refund ${row.id} of ${grant.payment_intent} (${formatCents(micros)} cents)`, `refund_${row.id}`, now);
      context.sql.exec("UPDATE refunds SET applied = 'taken', taken = ? WHERE id = ?", taken, row.id);
    } else if (failed && row.applied === "taken") {
      giveBack(context, grant, row.taken, `refund ${row.id} of ${grant.payment_intent} ${row.status}: the credit it took back is given back`, `refund_${row.id}_${row.status}`, now);
      context.sql.exec("UPDATE refunds SET applied = 'given_back' WHERE id = ?", row.id);
    } else if (failed && row.applied === "no") {
      context.sql.exec("UPDATE refunds SET applied = 'none' WHERE id = ?", row.id);
    }
  }
  const refunded = context.sql.exec("SELECT COALESCE(SUM(taken), 0) AS t FROM refunds WHERE payment_intent = ? AND applied = 'taken'", grant.payment_intent).one().t as number;
  if (refunded !== grant.refunded) context.grants.setRefunded(grant, refunded);
  context.changed(now);
}

/** A refund recorded before refunds were tracked one by one: its cumulative cents. */
function settleLegacyRefunds(context: AccountContext, grant: Grant, now: number): void {
  const row = context.sql.exec("SELECT refunded_cents FROM payment_refunds WHERE payment_intent = ?", grant.payment_intent).toArray()[0];
  if (!row) return;
  const target = Math.min(centsToMicros(row.refunded_cents as number), grant.amount);
  const delta = target - grant.refunded;
  if (delta <= 0) return;
  context.grants.setRefunded(grant, target);
  takeBack(context, grant, delta, `refund of ${grant.payment_intent} (${formatCents(target)} of ${formatCents(grant.amount)} refunded)`, `refund_${grant.payment_intent}_${row.refunded_cents}`, now);
}

/**
 * Micro-cents of the grant already out of the balance other than by spending: what closing it
 * (a void, an expiry) removed, and what refunds and lost disputes took back and was not given
 * back. A clawback never takes those again: a voided or expired top-up that is then refunded
 * takes back only what was spent of it.
 */
function takenOut(context: AccountContext, grantId: string): number {
  const row = context.sql
    .exec("SELECT COALESCE(SUM(amount), 0) AS total FROM ledger WHERE grant_id = ? AND kind IN ('void', 'expiry', 'clawback', 'clawback_reversal')", grantId)
    .one();
  return -(row.total as number);
}

/**
 * Moves the grant from the effect each dispute has applied to the one its status wants. The
 * disputed amounts of open chargebacks are the grant's `disputed`: GrantBook keeps what is
 * frozen at min(remaining, disputed) wherever the credit sits when the dispute opens (a hold
 * that settles later, a refund of a request, gives its credit back frozen).
 */
function settleDisputes(context: AccountContext, grant: Grant, now: number): void {
  const rows = context.sql.exec("SELECT * FROM disputes WHERE payment_intent = ?", grant.payment_intent).toArray() as unknown as DisputeRow[];
  const live = context.grants.all.find((g) => g.id === grant.id);
  const disputed = rows.filter((r) => effectOf(r) === "frozen").reduce((sum, r) => sum + centsToMicros(r.amount), 0);
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
    const amount = Math.min(centsToMicros(row.amount), grant.amount);
    if (want === "taken") {
      taken = takeBack(context, grant, amount, `dispute ${row.id} lost`, moves === 0 ? `dispute_${row.id}` : `dispute_${row.id}_${moves}`, now);
      moves++;
    } else if (want === "frozen") {
      context.ledger.entry({ kind: "note", amount: 0, reason: `dispute ${row.id} opened (${row.status}): up to ${formatCents(amount)} cents of ${grant.id} frozen`, now, grant: grant.id });
    } else if (row.effect === "frozen") {
      context.ledger.entry({ kind: "note", amount: 0, reason: `dispute ${row.id} ${row.status}: credit released`, now, grant: grant.id });
    }
    context.sql.exec("UPDATE disputes SET effect = ?, taken = ?, moves = ? WHERE id = ?", want, taken, moves, row.id);
  }
  context.changed(now);
}

/** Takes back up to `wanted` of a grant's credit; what was spent becomes debt (wallet.takeFrom). Returns what it took. */
function takeBack(context: AccountContext, grant: Grant, wanted: number, reason: string, reference: string, now: number): number {
  const micros = Math.min(wanted, Math.max(0, grant.amount - takenOut(context, grant.id)));
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
function giveBack(context: AccountContext, grant: Grant, micros: number, reason: string, reference: string, now: number): void {
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
