import type Stripe from "stripe";
import { centsToMicros, formatCents } from "../../src/money";
import type { Grant } from "./grants";
import type { Room } from "./room";

interface DisputeRow {
  id: string;
  grant_id: string | null;
  payment_intent: string | null;
  /** Whole cents disputed. */
  amount: number;
  status: "open" | "won" | "lost";
  /** Micro-cents of the grant this dispute froze. */
  frozen: number;
  /** When its outcome was applied to the grant. */
  closed_at: number | null;
}

function paymentIntentOf(value: string | { id: string } | null | undefined): string | null {
  return typeof value === "string" ? value : (value?.id ?? null);
}

/**
 * A refund of a top-up's payment takes its credit back. Stripe reports the cumulative
 * `amount_refunded`, so each delivery takes only what is new: duplicates and late, reordered
 * deliveries change nothing. What was already spent becomes debt, and the customer is refused
 * until it is paid. A refund that arrives before its top-up is kept and applied when it lands.
 */
export function applyRefund(room: Room, charge: Stripe.Charge, now: number): "applied" | "ignored" {
  const pi = paymentIntentOf(charge.payment_intent);
  if (!pi || charge.currency !== room.config.PRICING.currency) return "ignored";
  room.sql.exec(
    `INSERT INTO payment_refunds (payment_intent, refunded_cents, updated_at) VALUES (?, ?, ?)
     ON CONFLICT (payment_intent) DO UPDATE SET refunded_cents = MAX(refunded_cents, excluded.refunded_cents), updated_at = excluded.updated_at`,
    pi,
    charge.amount_refunded,
    now,
  );
  const grant = room.grants.byPaymentIntent(pi);
  if (grant) room.atomically(() => settleRefunds(room, grant, now));
  return "applied";
}

/**
 * Disputes, each step applied once in any delivery order: opening freezes the disputed credit
 * (it cannot be spent, and nothing is taken yet); won releases it; lost releases it and takes the
 * disputed amount back. A `closed` that arrives before `created` settles the dispute, and the
 * late `created` is then ignored; either before the top-up itself waits for it.
 */
export function applyDispute(room: Room, dispute: Stripe.Dispute, closing: boolean, now: number): "applied" | "ignored" {
  const pi = paymentIntentOf(dispute.payment_intent);
  if (!pi || dispute.currency !== room.config.PRICING.currency) return "ignored";
  const row = room.sql.exec("SELECT * FROM disputes WHERE id = ?", dispute.id).toArray()[0] as unknown as DisputeRow | undefined;
  // Inquiries closed without a chargeback, and prevented disputes, release like a win.
  const outcome = dispute.status === "lost" ? "lost" : ["won", "warning_closed", "prevented"].includes(dispute.status) ? "won" : null;
  const status = closing && outcome ? outcome : "open";
  if (row && (row.status !== "open" || status === "open")) return "ignored";
  room.atomically(() => {
    room.sql.exec(
      `INSERT INTO disputes (id, grant_id, payment_intent, amount, status, created_at) VALUES (?, NULL, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET status = excluded.status`,
      dispute.id,
      pi,
      dispute.amount,
      status,
      now,
    );
    const grant = room.grants.byPaymentIntent(pi);
    if (grant) settleDisputes(room, grant, now);
  });
  return "applied";
}

/** Applies to a top-up's grant what its payment's refunds and disputes say (also when it lands late). */
export function settleClawbacks(room: Room, grant: Grant, now: number): void {
  settleRefunds(room, grant, now);
  settleDisputes(room, grant, now);
}

function settleRefunds(room: Room, grant: Grant, now: number): void {
  const row = room.sql.exec("SELECT refunded_cents FROM payment_refunds WHERE payment_intent = ?", grant.payment_intent).toArray()[0];
  if (!row) return;
  const target = Math.min(centsToMicros(row.refunded_cents as number), grant.amount);
  const delta = target - grant.refunded;
  if (delta <= 0) return;
  room.grants.setRefunded(grant, target);
  takeBack(room, grant, delta, `refund of ${grant.payment_intent} (${formatCents(target)} of ${formatCents(grant.amount)} refunded)`, `refund_${grant.payment_intent}_${row.refunded_cents}`, now);
}

/**
 * Micro-cents of the grant already out of the balance other than by spending: what closing it
 * (a void, an expiry) removed, and what refunds and lost disputes took back. A clawback never
 * takes those again: a voided or expired top-up that is then refunded takes back only what was
 * spent of it.
 */
function takenOut(room: Room, grantId: string): number {
  const row = room.sql.exec("SELECT COALESCE(SUM(amount), 0) AS total FROM ledger WHERE grant_id = ? AND kind IN ('void', 'expiry', 'clawback')", grantId).one();
  return -(row.total as number);
}

function settleDisputes(room: Room, grant: Grant, now: number): void {
  const rows = room.sql.exec("SELECT * FROM disputes WHERE payment_intent = ?", grant.payment_intent).toArray() as unknown as DisputeRow[];
  for (const row of rows) {
    const live = room.grants.all.find((g) => g.id === grant.id);
    const amount = Math.min(centsToMicros(row.amount), grant.amount);
    if (row.status === "open") {
      if (row.grant_id !== null) continue;
      // Freeze what is left of the disputed amount; what was spent already cannot be frozen.
      const frozen = live ? Math.min(amount, Math.max(0, live.remaining - live.frozen)) : 0;
      if (live && frozen > 0) room.grants.setFrozen(live, live.frozen + frozen);
      room.sql.exec("UPDATE disputes SET grant_id = ?, frozen = ? WHERE id = ?", grant.id, frozen, row.id);
      room.ledger.entry({ kind: "note", amount: 0, reason: `dispute ${row.id} opened: ${formatCents(frozen)} cents of ${grant.id} frozen`, now, grant: grant.id });
      continue;
    }
    if (row.closed_at !== null) continue;
    if (live && row.frozen > 0) room.grants.setFrozen(live, Math.max(0, live.frozen - row.frozen));
    room.sql.exec("UPDATE disputes SET grant_id = ?, frozen = 0, closed_at = ? WHERE id = ?", grant.id, now, row.id);
    if (row.status === "lost") takeBack(room, grant, amount, `dispute ${row.id} lost`, `dispute_${row.id}`, now);
    else room.ledger.entry({ kind: "note", amount: 0, reason: `dispute ${row.id} won: credit released`, now, grant: grant.id });
  }
  room.changed(now);
}

/** Takes back up to `wanted` of a grant's credit; what was spent becomes debt (wallet.takeFrom). */
function takeBack(room: Room, grant: Grant, wanted: number, reason: string, reference: string, now: number): void {
  const micros = Math.min(wanted, Math.max(0, grant.amount - takenOut(room, grant.id)));
  const already = wanted - micros;
  const note = already > 0 ? `${reason}; ${formatCents(already)} cents of it were already voided, expired or taken back` : reason;
  if (micros === 0) {
    room.ledger.entry({ kind: "note", amount: 0, reason: `${note}: nothing taken`, now, grant: grant.id });
    return;
  }
  const customer = room.account.row.customer_id;
  const fields = room.reports.queueDebit("clawback", `payg_clawback_${customer}_${reference}`, micros);
  room.wallet.takeFrom(
    room.grants.all.find((g) => g.id === grant.id),
    micros,
    "clawback",
    note,
    now,
    reference,
    fields,
  );
  room.changed(now);
}
