import type Stripe from "stripe";

/** Disputes of top-up payments, owner of the `disputes` table: Stripe's status and the effect applied to the grant. */
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
);
CREATE INDEX IF NOT EXISTS disputes_payment_intent ON disputes(payment_intent);`,
  v14: `ALTER TABLE disputes ADD COLUMN event_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE disputes ADD COLUMN reinstated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE disputes ADD COLUMN effect TEXT NOT NULL DEFAULT 'none';
ALTER TABLE disputes ADD COLUMN taken INTEGER NOT NULL DEFAULT 0;
ALTER TABLE disputes ADD COLUMN moves INTEGER NOT NULL DEFAULT 0;
UPDATE disputes SET effect = 'frozen' WHERE status = 'open' AND grant_id IS NOT NULL;
UPDATE disputes SET effect = 'taken', moves = 1,
  taken = COALESCE((SELECT -l.amount FROM ledger l WHERE l.reference = 'dispute_' || disputes.id AND l.kind = 'clawback'), 0)
  WHERE status = 'lost' AND closed_at IS NOT NULL;
UPDATE disputes SET status = 'needs_response' WHERE status = 'open';
ALTER TABLE disputes DROP COLUMN grant_id;
ALTER TABLE disputes DROP COLUMN frozen;
ALTER TABLE disputes DROP COLUMN closed_at;`,
};

export type Effect = "none" | "frozen" | "taken";

export interface DisputeRow {
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
export const DISPUTE_ORDER: readonly string[] = [
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

export function effectOf(row: Pick<DisputeRow, "status" | "reinstated">): Effect {
  if (row.reinstated) return "none";
  return FREEZES.has(row.status) ? "frozen" : TAKES.has(row.status) ? "taken" : "none";
}

/** Every SQL statement on `disputes`. */
export class DisputeStore {
  constructor(private readonly sql: SqlStorage) {}

  get(id: string): DisputeRow | undefined {
    return this.sql.exec("SELECT * FROM disputes WHERE id = ?", id).toArray()[0] as unknown as DisputeRow | undefined;
  }

  ofPayment(pi: string): DisputeRow[] {
    return this.sql.exec("SELECT * FROM disputes WHERE payment_intent = ?", pi).toArray() as unknown as DisputeRow[];
  }

  upsert(row: Pick<DisputeRow, "id" | "payment_intent" | "amount" | "status" | "event_at" | "reinstated">, now: number): void {
    this.sql.exec(
      `INSERT INTO disputes (id, payment_intent, amount, status, event_at, reinstated, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET amount = excluded.amount, status = excluded.status, event_at = excluded.event_at, reinstated = excluded.reinstated`,
      row.id,
      row.payment_intent,
      row.amount,
      row.status,
      row.event_at,
      row.reinstated,
      now,
    );
  }

  applied(id: string, effect: Effect, taken: number, moves: number): void {
    this.sql.exec("UPDATE disputes SET effect = ?, taken = ?, moves = ? WHERE id = ?", effect, taken, moves, id);
  }
}
