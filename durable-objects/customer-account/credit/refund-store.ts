import { centsToMicros } from "../../../src/lib/money";
import type { ChargeRefunds } from "../contract";

/**
 * Refunds of top-up payments, owner of the `refunds` table (and of `payment_refunds`, which holds
 * refunds recorded before they were tracked one by one): each refund by id, its status only
 * moving forward, and what its clawback took.
 */
export const REFUND_TABLES = {
  v3: `CREATE TABLE IF NOT EXISTS payment_refunds (payment_intent TEXT PRIMARY KEY, refunded_cents INTEGER NOT NULL, updated_at INTEGER NOT NULL);`,
  // Refunds one by one (a refund can fail after charge.refunded); disputes (disputes.ts) keep Stripe's own
  // status, the `created` of the event that set it, whether the funds were reinstated, and the
  // effect applied to the grant (none, frozen, taken) with what it took. The statuses of v3 map
  // onto Stripe's: open was needs_response; a lost dispute already applied took what its ledger
  // entry says. payment_refunds stays for refunds recorded before; the first refund list of a
  // payment replaces its row (adoptLegacy).
  v14: `
CREATE TABLE IF NOT EXISTS refunds (
  id TEXT PRIMARY KEY,
  payment_intent TEXT NOT NULL,
  amount INTEGER NOT NULL,
  status TEXT NOT NULL,
  created INTEGER NOT NULL,
  applied TEXT NOT NULL DEFAULT 'no',
  taken INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS refunds_payment_intent ON refunds(payment_intent);`,
};

export interface RefundRow {
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
export const VOID_REFUND = new Set(["failed", "canceled"]);

/** The refunds of each top-up payment: every SQL statement on `refunds` and `payment_refunds`. */
export class RefundStore {
  constructor(private readonly sql: SqlStorage) {}

  /** Records a refund as Stripe lists it now; its status only moves forward (REFUND_RANK). */
  record(pi: string, refund: ChargeRefunds["refunds"][number], now: number): void {
    const status = refund.status ?? "pending";
    const row = this.sql.exec("SELECT status FROM refunds WHERE id = ?", refund.id).toArray()[0];
    if (!row) {
      this.sql.exec(
        "INSERT INTO refunds (id, payment_intent, amount, status, created, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        refund.id,
        pi,
        refund.amount,
        status,
        refund.created,
        now,
      );
    } else if ((REFUND_RANK[status] ?? 0) > (REFUND_RANK[row.status as string] ?? 0)) {
      this.sql.exec("UPDATE refunds SET status = ?, updated_at = ? WHERE id = ?", status, now, refund.id);
    }
  }

  rows(pi: string): RefundRow[] {
    return this.sql.exec("SELECT * FROM refunds WHERE payment_intent = ? ORDER BY created, id", pi).toArray() as unknown as RefundRow[];
  }

  applied(id: string, applied: RefundRow["applied"], taken?: number): void {
    if (taken === undefined) this.sql.exec("UPDATE refunds SET applied = ? WHERE id = ?", applied, id);
    else this.sql.exec("UPDATE refunds SET applied = ?, taken = ? WHERE id = ?", applied, taken, id);
  }

  /** Micro-cents the payment's refunds took back and still hold. */
  takenTotal(pi: string): number {
    return this.sql.exec("SELECT COALESCE(SUM(taken), 0) AS t FROM refunds WHERE payment_intent = ? AND applied = 'taken'", pi).one().t as number;
  }

  /** A payment's cumulative refunded cents, as recorded before refunds were tracked one by one. */
  legacyCents(pi: string): number | null {
    return (this.sql.exec("SELECT refunded_cents FROM payment_refunds WHERE payment_intent = ?", pi).toArray()[0]?.refunded_cents as number | undefined) ?? null;
  }

  /**
   * The first list of a legacy payment's refunds takes over: what its clawbacks took (`taken`) is
   * attributed to the oldest refunds, which then count as taken (and are given back if they fail).
   */
  adoptLegacy(pi: string, taken: number): void {
    let left = taken;
    for (const row of this.rows(pi)) {
      if (left <= 0) break;
      const part = Math.min(left, centsToMicros(row.amount));
      this.applied(row.id, "taken", part);
      left -= part;
    }
    this.sql.exec("DELETE FROM payment_refunds WHERE payment_intent = ?", pi);
  }
}
