export const AGENT_PAYMENT_TABLES = {
  v18: `CREATE TABLE IF NOT EXISTS agent_payments (
  id TEXT PRIMARY KEY,
  rail TEXT NOT NULL,
  grant_id TEXT,
  amount_cents INTEGER NOT NULL,
  payer TEXT,
  transaction_id TEXT,
  receipt TEXT NOT NULL,
  created_at INTEGER NOT NULL
);`,
  // v20: an x402 payment to a Stripe crypto deposit address, recorded as a Stripe PaymentIntent (stripe-record.ts) after it is credited.
  v20: `ALTER TABLE agent_payments ADD COLUMN stripe_status TEXT;
ALTER TABLE agent_payments ADD COLUMN stripe_network TEXT;
ALTER TABLE agent_payments ADD COLUMN stripe_key TEXT;
ALTER TABLE agent_payments ADD COLUMN stripe_verify INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agent_payments ADD COLUMN stripe_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agent_payments ADD COLUMN stripe_next_at INTEGER;
ALTER TABLE agent_payments ADD COLUMN stripe_error TEXT;
ALTER TABLE agent_payments ADD COLUMN stripe_payment_intent TEXT;
CREATE INDEX IF NOT EXISTS agent_payments_stripe ON agent_payments(stripe_status, stripe_next_at) WHERE stripe_status = 'pending';`,
};

export type PaymentRow = {
  id: string;
  rail: string;
  grant_id: string | null;
  amount_cents: number;
  payer: string | null;
  transaction_id: string | null;
  receipt: string;
  created_at: number;
};

/**
 * The recording of an x402 payment as a Stripe PaymentIntent: `pending` until Stripe answers,
 * `recorded` with its PaymentIntent, `failed` when Stripe refused it for good (the operator is
 * told), `no_transaction` when the settle answer was lost and only the chain confirmed it (no
 * hash to verify). Null: not recorded (the rail has record_in_stripe off, or another rail).
 */
export type RecordingStatus = "pending" | "recorded" | "failed" | "no_transaction";

export type RecordingRow = PaymentRow & {
  stripe_status: RecordingStatus | null;
  /** Stripe's name of the payment's network ("base"). */
  stripe_network: string | null;
  /** The Idempotency-Key of the next attempt: the transaction hash, then `<hash>_r<n>` once a lookup proved a saved 500 left nothing. */
  stripe_key: string | null;
  /** 1: the next attempt looks the PaymentIntent up first (Stripe answered 5xx, which it replays under the key). */
  stripe_verify: number;
  stripe_attempts: number;
  stripe_next_at: number | null;
  stripe_error: string | null;
  stripe_payment_intent: string | null;
};

/** The payments agents made on a 402 (one row each, kept like grants), with the receipt replays get. */
export class PaymentLog {
  constructor(private readonly sql: SqlStorage) {}

  get(id: string): PaymentRow | undefined {
    return this.sql.exec<PaymentRow>("SELECT * FROM agent_payments WHERE id = ?", id).toArray()[0];
  }

  /** The first row for an id stays: a second insert of the same payment changes nothing. */
  insert(row: PaymentRow): void {
    this.sql.exec(
      "INSERT INTO agent_payments (id, rail, grant_id, amount_cents, payer, transaction_id, receipt, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
      row.id,
      row.rail,
      row.grant_id,
      row.amount_cents,
      row.payer,
      row.transaction_id,
      row.receipt,
      row.created_at,
    );
  }

  /** Queues the payment's recording in Stripe, in the step that credits it (a second call changes nothing). */
  queueRecording(id: string, status: "pending" | "no_transaction", network: string, key: string | null, now: number): void {
    this.sql.exec(
      "UPDATE agent_payments SET stripe_status = ?, stripe_network = ?, stripe_key = ?, stripe_next_at = ? WHERE id = ? AND stripe_status IS NULL",
      status,
      network,
      key,
      status === "pending" ? now : null,
      id,
    );
  }

  recording(id: string): RecordingRow | undefined {
    return this.sql.exec<RecordingRow>("SELECT * FROM agent_payments WHERE id = ?", id).toArray()[0];
  }

  /** Pending recordings whose backoff has passed, oldest first. */
  dueRecordings(now: number, limit = 25): RecordingRow[] {
    return this.sql
      .exec<RecordingRow>("SELECT * FROM agent_payments WHERE stripe_status = 'pending' AND COALESCE(stripe_next_at, 0) <= ? ORDER BY created_at LIMIT ?", now, limit)
      .toArray();
  }

  /** When the next pending recording is due, or null. */
  nextRecordingAt(): number | null {
    return this.sql.exec("SELECT MIN(COALESCE(stripe_next_at, 0)) AS t FROM agent_payments WHERE stripe_status = 'pending'").one().t as number | null;
  }

  /** An attempt begins: counted before the call, so a crash mid-call still counts it. */
  attempted(id: string, n = 1): void {
    this.sql.exec("UPDATE agent_payments SET stripe_attempts = MAX(0, stripe_attempts + ?) WHERE id = ?", n, id);
  }

  retryLater(id: string, verify: boolean, at: number, error: string): void {
    this.sql.exec("UPDATE agent_payments SET stripe_verify = ?, stripe_next_at = ?, stripe_error = ? WHERE id = ?", verify ? 1 : 0, at, error, id);
  }

  /** A fresh key after a lookup proved the last one's saved 500 left no PaymentIntent. */
  rotateKey(row: RecordingRow): string {
    const key = `${row.transaction_id}_r${row.stripe_attempts}`;
    this.sql.exec("UPDATE agent_payments SET stripe_key = ?, stripe_verify = 0 WHERE id = ?", key, row.id);
    return key;
  }

  recorded(id: string, paymentIntent: string): void {
    this.sql.exec("UPDATE agent_payments SET stripe_status = 'recorded', stripe_payment_intent = ?, stripe_error = NULL, stripe_next_at = NULL WHERE id = ?", paymentIntent, id);
  }

  failed(id: string, error: string): void {
    this.sql.exec("UPDATE agent_payments SET stripe_status = 'failed', stripe_error = ?, stripe_next_at = NULL WHERE id = ?", error, id);
  }

  /**
   * The admin view: payments per rail, their Stripe recordings per status, and the latest recordings
   * an operator must look at (Stripe refused them for good, or no transaction hash to record).
   */
  view(limit = 10) {
    const count = (query: string) =>
      Object.fromEntries(
        this.sql
          .exec<{ k: string; n: number }>(query)
          .toArray()
          .map((r) => [r.k, r.n]),
      );
    return {
      by_rail: count("SELECT rail AS k, COUNT(*) AS n FROM agent_payments GROUP BY rail"),
      stripe_recordings: count("SELECT stripe_status AS k, COUNT(*) AS n FROM agent_payments WHERE stripe_status IS NOT NULL GROUP BY stripe_status"),
      needs_attention: this.sql
        .exec(
          "SELECT id, amount_cents, transaction_id, stripe_status, stripe_error, stripe_attempts, created_at FROM agent_payments WHERE stripe_status IN ('failed', 'no_transaction') ORDER BY created_at DESC LIMIT ?",
          limit,
        )
        .toArray(),
    };
  }
}
