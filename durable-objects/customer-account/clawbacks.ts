import type Stripe from "stripe";
import { centsToMicros, formatCents } from "../../src/money";
import type { Grant } from "./grants";
import type { Room } from "./room";

export const DISPUTE_TABLES = {
  v3: `
CREATE TABLE IF NOT EXISTS disputes (
  id TEXT PRIMARY KEY,
  grant_id TEXT,
  payment_intent TEXT,
  amount INTEGER NOT NULL,
  status TEXT NOT NULL,
  frozen INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  closed_at INTEGER
);`,
};

interface DisputeRow {
  id: string;
  grant_id: string | null;
  amount: number;
  status: "open" | "won" | "lost";
  frozen: number;
}

function paymentIntentOf(value: string | { id: string } | null | undefined): string | null {
  return typeof value === "string" ? value : (value?.id ?? null);
}

/**
 * A refund of a top-up's payment takes its credit back. Stripe reports the cumulative
 * `amount_refunded`, so each delivery takes only what is new: duplicates and late, reordered
 * deliveries change nothing. What was already spent becomes debt, and the customer is refused
 * until it is paid.
 */
export function applyRefund(room: Room, charge: Stripe.Charge, now: number): "applied" | "ignored" {
  const pi = paymentIntentOf(charge.payment_intent);
  const grant = pi ? room.grants.byPaymentIntent(pi) : undefined;
  if (!grant || charge.currency !== room.config.PRICING.currency) return "ignored";
  const target = Math.min(centsToMicros(charge.amount_refunded), grant.amount);
  const delta = target - grant.refunded;
  if (delta <= 0) return "ignored";
  room.atomically(() => {
    room.grants.setRefunded(grant, target);
    takeBack(room, grant, delta, `refund of ${charge.id} (${formatCents(target)} of ${formatCents(grant.amount)} refunded)`, `refund_${charge.id}_${charge.amount_refunded}`, now);
  });
  return "applied";
}

/**
 * Disputes, each step applied once in any delivery order: opening freezes the disputed credit
 * (it cannot be spent, and nothing is taken yet); won releases it; lost releases it and takes the
 * disputed amount back. A `closed` that arrives before `created` settles the dispute, and the
 * late `created` is then ignored.
 */
export function applyDispute(room: Room, dispute: Stripe.Dispute, closing: boolean, now: number): "applied" | "ignored" {
  const pi = paymentIntentOf(dispute.payment_intent);
  const grant = pi ? room.grants.byPaymentIntent(pi) : undefined;
  if (!grant || dispute.currency !== room.config.PRICING.currency) return "ignored";
  const row = room.sql.exec("SELECT * FROM disputes WHERE id = ?", dispute.id).toArray()[0] as unknown as DisputeRow | undefined;
  const amount = Math.min(centsToMicros(dispute.amount), grant.amount);
  // Inquiries closed without a chargeback, and prevented disputes, release like a win.
  const outcome = dispute.status === "lost" ? "lost" : ["won", "warning_closed", "prevented"].includes(dispute.status) ? "won" : null;
  if (row && row.status !== "open") return "ignored";
  if (!closing || !outcome) {
    if (row) return "ignored";
    room.atomically(() => {
      const live = liveGrant(room, grant);
      const frozen = live ? Math.min(amount, Math.max(0, live.remaining - live.frozen)) : 0;
      if (live && frozen > 0) room.grants.setFrozen(live, live.frozen + frozen);
      room.sql.exec(
        "INSERT INTO disputes (id, grant_id, payment_intent, amount, status, frozen, created_at) VALUES (?, ?, ?, ?, 'open', ?, ?)",
        dispute.id,
        grant.id,
        pi,
        amount,
        frozen,
        now,
      );
      room.ledger.entry({ kind: "note", amount: 0, reason: `dispute ${dispute.id} opened: ${formatCents(frozen)} cents of ${grant.id} frozen`, now, grant: grant.id });
      room.changed(now);
    });
    return "applied";
  }
  room.atomically(() => {
    const live = liveGrant(room, grant);
    if (row && live && row.frozen > 0) room.grants.setFrozen(live, Math.max(0, live.frozen - row.frozen));
    room.sql.exec(
      `INSERT INTO disputes (id, grant_id, payment_intent, amount, status, frozen, created_at, closed_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)
       ON CONFLICT (id) DO UPDATE SET status = excluded.status, frozen = 0, closed_at = excluded.closed_at`,
      dispute.id,
      grant.id,
      pi,
      amount,
      outcome,
      now,
      now,
    );
    if (outcome === "lost") takeBack(room, grant, amount, `dispute ${dispute.id} lost`, `dispute_${dispute.id}`, now);
    else room.ledger.entry({ kind: "note", amount: 0, reason: `dispute ${dispute.id} won: credit released`, now, grant: grant.id });
    room.changed(now);
  });
  return "applied";
}

/** The grant as it is now (the in-memory copy if it is still open). */
function liveGrant(room: Room, grant: Grant): Grant | undefined {
  return room.grants.all.find((g) => g.id === grant.id);
}

function takeBack(room: Room, grant: Grant, micros: number, reason: string, reference: string, now: number): void {
  const customer = room.account.row.customer_id;
  const fields = room.reports.queueDebit("clawback", `payg_clawback_${customer}_${reference}`, micros);
  room.wallet.takeFrom(liveGrant(room, grant), micros, "clawback", reason, now, reference, fields);
  room.changed(now);
}
