import type { Plan } from "../../../src/lib/customer";
import { HOUR_MS } from "../../../src/lib/time";
import type { Receipt } from "../credit/grants";

/** The columns of v3's table, which v22 keeps (v3's text, and so its pinned hash, unchanged). */
const V3_COLUMNS = `
  request_id TEXT PRIMARY KEY,
  meter TEXT NOT NULL,
  bucket INTEGER NOT NULL,
  plan TEXT NOT NULL,
  amount INTEGER NOT NULL,
  receipt TEXT NOT NULL,
  key_id TEXT,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  refunded_at INTEGER`;

export const CHARGE_TABLES = {
  v3: `
CREATE TABLE IF NOT EXISTS charges (${V3_COLUMNS}
);
CREATE INDEX IF NOT EXISTS charges_created ON charges(created_at);
CREATE INDEX IF NOT EXISTS charges_refunded ON charges(refunded_at) WHERE refunded_at IS NOT NULL;`,
  // v22 (docs/design/one-row-per-charge.md): the same columns in a table clustered on its key, a
  // request id (a UUIDv7, so in time order), with no index but the partial one on refunds: a
  // charge's INSERT writes one row instead of three (table, key index, charges_created).
  v22: `
CREATE TABLE charges_v22 (${V3_COLUMNS},
  seq INTEGER,
  pending_usage INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO charges_v22 (request_id, meter, bucket, plan, amount, receipt, key_id, status, created_at, refunded_at, seq, pending_usage)
  SELECT request_id, meter, bucket, plan, amount, receipt, key_id, status, created_at, refunded_at, seq, pending_usage FROM charges;
DROP TABLE charges;
ALTER TABLE charges_v22 RENAME TO charges;
CREATE INDEX charges_refunded ON charges(refunded_at) WHERE refunded_at IS NOT NULL;`,
};

export interface ChargeRow {
  request_id: string;
  meter: string;
  bucket: number;
  plan: Plan;
  amount: number;
  receipt: Receipt;
  key_id: string | null;
  status: "charged" | "refunded";
  created_at: number;
  refunded_at: number | null;
  /** Since v23: the client's scoped Idempotency-Key and its fingerprint (request/idempotency.ts), cleared if the charge is given back. */
  idem_key?: string | null;
  idem_fingerprint?: string | null;
}

/**
 * Recent charges by the gateway's request id: a retried authorize (its reply lost) replays the
 * first result instead of charging again, and a refund is applied at most once, exactly where the
 * money came from. Rows live as long as a refund can still come (the origin timeout plus a
 * margin), and refunded rows an hour, for the refund limit.
 */
export class ChargeLog {
  constructor(private readonly sql: SqlStorage) {}

  get(requestId: string): ChargeRow | undefined {
    const row = this.sql.exec("SELECT * FROM charges WHERE request_id = ?", requestId).toArray()[0];
    return row ? ({ ...row, receipt: JSON.parse(row.receipt as string) } as unknown as ChargeRow) : undefined;
  }

  /** `journal`: the charge's place in the journal (journal.ts); a charge written with its effects has none. */
  insert(row: Omit<ChargeRow, "status" | "refunded_at">, journal: { seq: number; pendingUsage: number } | null = null): void {
    this.sql.exec(
      "INSERT INTO charges (request_id, meter, bucket, plan, amount, receipt, key_id, status, created_at, seq, pending_usage, idem_key, idem_fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, 'charged', ?, ?, ?, ?, ?)",
      row.request_id,
      row.meter,
      row.bucket,
      row.plan,
      row.amount,
      JSON.stringify(row.receipt),
      row.key_id,
      row.created_at,
      journal?.seq ?? null,
      journal?.pendingUsage ?? 0,
      row.idem_key ?? null,
      row.idem_fingerprint ?? null,
    );
  }

  /** Given back: its Idempotency-Key, if any, is forgotten with it (a retry is a new request). */
  markRefunded(requestId: string, now: number): void {
    this.sql.exec("UPDATE charges SET status = 'refunded', refunded_at = ?, idem_key = NULL, idem_fingerprint = NULL WHERE request_id = ?", now, requestId);
  }

  refundsSince(since: number): number {
    return this.sql.exec("SELECT COUNT(*) AS n FROM charges WHERE refunded_at > ?", since).one().n as number;
  }

  /**
   * Deletes what can no longer be refunded or counted; returns whether rows are left. Since v22
   * there is no index on created_at (it cost a row written per charge): the delete reads the table,
   * which holds only the last minutes of charges, and a row read costs a thousandth of a row written.
   */
  prune(now: number, keepChargedMs: number): boolean {
    this.sql.exec("DELETE FROM charges WHERE status = 'charged' AND created_at < ?", now - keepChargedMs);
    this.sql.exec("DELETE FROM charges WHERE status = 'refunded' AND refunded_at < ?", now - HOUR_MS);
    return this.sql.exec("SELECT 1 FROM charges LIMIT 1").toArray().length > 0;
  }
}
