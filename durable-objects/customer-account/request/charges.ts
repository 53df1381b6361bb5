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
  // v24 (docs/design/one-row-per-batch.md): a group-commit batch's journaled charges in one row,
  // the first in the columns, the others (each a whole journaled charge) in `batch`, a JSON array.
  v24: `
ALTER TABLE charges ADD COLUMN batch TEXT;`,
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

/** A journaled charge with its place in the journal, as held for a batch row and kept in its `batch`. */
export type BatchedCharge = Omit<ChargeRow, "status" | "refunded_at"> & { seq: number; pendingUsage: number };

/** What the primary key says of an id charged twice: authorize's catch replays the first result on it. */
const DUPLICATE = "UNIQUE constraint failed: charges.request_id";

/**
 * Recent charges by the gateway's request id: a retried authorize (its reply lost) replays the
 * first result instead of charging again, and a refund is applied at most once, exactly where the
 * money came from. Rows live as long as a refund can still come (the origin timeout plus a
 * margin), and refunded rows an hour, for the refund limit.
 */
export class ChargeLog {
  /** Charges of the group-commit batch running now, not written yet (writeHeld writes them as one row). */
  private readonly held = new Map<string, BatchedCharge>();
  /** Request id of every charge kept in a batch row's `batch` → that row's key (the first charge's id). */
  private batchOf = new Map<string, string>();

  constructor(private readonly sql: SqlStorage) {}

  /** (Re)builds the index of batched request ids from the rows kept (after a load or a prune). */
  load(): void {
    this.batchOf = new Map();
    const members = this.sql.exec<{ key: string; id: string }>(
      "SELECT c.request_id AS key, json_extract(m.value, '$.request_id') AS id FROM charges c, json_each(c.batch) m WHERE c.batch IS NOT NULL",
    );
    for (const { key, id } of members) this.batchOf.set(id, key);
  }

  get(requestId: string): ChargeRow | undefined {
    const held = this.held.get(requestId) ?? this.member(requestId);
    if (held) return { ...stripJournal(held), status: "charged", refunded_at: null };
    const row = this.sql.exec("SELECT * FROM charges WHERE request_id = ?", requestId).toArray()[0];
    return row ? (rowToCharge(row) as ChargeRow) : undefined;
  }

  /** `journal`: the charge's place in the journal (journal.ts); a charge written with its effects has none. */
  insert(row: Omit<ChargeRow, "status" | "refunded_at">, journal: { seq: number; pendingUsage: number } | null = null, batch: BatchedCharge[] = []): void {
    // The primary key knows only the first charge of a batch row: the others are refused here.
    if (this.held.has(row.request_id) || this.batchOf.has(row.request_id)) throw new Error(DUPLICATE);
    this.sql.exec(
      "INSERT INTO charges (request_id, meter, bucket, plan, amount, receipt, key_id, status, created_at, seq, pending_usage, idem_key, idem_fingerprint, batch) VALUES (?, ?, ?, ?, ?, ?, ?, 'charged', ?, ?, ?, ?, ?, ?)",
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
      batch.length ? JSON.stringify(batch) : null,
    );
  }

  /** A journaled charge of the batch running now, held for its batch row; refused if its id was charged. */
  hold(charge: BatchedCharge): void {
    if (
      this.held.has(charge.request_id) ||
      this.batchOf.has(charge.request_id) ||
      this.sql.exec("SELECT 1 FROM charges WHERE request_id = ?", charge.request_id).toArray().length
    ) {
      throw new Error(DUPLICATE);
    }
    this.held.set(charge.request_id, charge);
  }

  /** The last held charge given up (its step failed after holding it). */
  unhold(requestId: string): void {
    this.held.delete(requestId);
  }

  get heldCount(): number {
    return this.held.size;
  }

  /** The charges held and not written, in journal order. */
  get holding(): BatchedCharge[] {
    return [...this.held.values()];
  }

  /** Drops the held charges (their batch row could not be written). */
  dropHeld(): void {
    this.held.clear();
  }

  /** Writes the held charges as one row (a batch of one is a plain row); on failure they stay held. */
  writeHeld(): void {
    const [first, ...rest] = this.holding;
    if (!first) return;
    this.held.clear();
    try {
      this.insert(first, first, rest);
    } catch (error) {
      for (const charge of [first, ...rest]) this.held.set(charge.request_id, charge);
      throw error;
    }
    for (const charge of rest) this.batchOf.set(charge.request_id, first.request_id);
  }

  /** Every charge of the rows past `seq`, batch members too, in journal order (the journal's replay). */
  journaledAfter(seq: number): BatchedCharge[] {
    const rows = this.sql.exec("SELECT * FROM charges WHERE seq > ? ORDER BY seq", seq).toArray();
    return rows
      .flatMap((row) => [{ ...rowToCharge(row), seq: row.seq as number, pendingUsage: row.pending_usage as number } as BatchedCharge, ...membersOf(row)])
      .sort((a, b) => a.seq - b.seq);
  }

  markRefunded(requestId: string, now: number): void {
    const key = this.batchOf.get(requestId);
    if (key !== undefined) {
      // A batch member refunded becomes a row of its own (its status and refunded_at are a row's),
      // taken out of the batch row in the same transaction (refund runs in one).
      const batch = membersOf(this.sql.exec("SELECT batch FROM charges WHERE request_id = ?", key).one());
      const member = batch.find((charge) => charge.request_id === requestId)!;
      const others = batch.filter((charge) => charge !== member);
      this.sql.exec("UPDATE charges SET batch = ? WHERE request_id = ?", others.length ? JSON.stringify(others) : null, key);
      this.batchOf.delete(requestId);
      this.insert(member, member);
    }
    // Given back: its Idempotency-Key, if any, is forgotten with it (a retry is a new request).
    this.sql.exec("UPDATE charges SET status = 'refunded', refunded_at = ?, idem_key = NULL, idem_fingerprint = NULL WHERE request_id = ?", now, requestId);
  }

  /** Every kept charge holding its Idempotency-Key, batch members too (idempotency.ts rebuilds its keys in flight from them). */
  idempotencyKeys(): { key: string; fingerprint: string; requestId: string; createdAt: number }[] {
    const rows = this.sql.exec("SELECT request_id, idem_key, idem_fingerprint, created_at, batch FROM charges WHERE idem_key IS NOT NULL OR batch IS NOT NULL").toArray();
    const charges = rows.flatMap((row) => [row as unknown as Pick<ChargeRow, "request_id" | "idem_key" | "idem_fingerprint" | "created_at">, ...membersOf(row)]);
    return charges.flatMap((c) => (c.idem_key ? [{ key: c.idem_key, fingerprint: c.idem_fingerprint!, requestId: c.request_id, createdAt: c.created_at }] : []));
  }

  /** A charge's Idempotency-Key forgotten (its request charged nothing in the end), in its row or its batch row. */
  forgetIdempotencyKey(requestId: string): void {
    const key = this.batchOf.get(requestId);
    if (key === undefined) {
      this.sql.exec("UPDATE charges SET idem_key = NULL, idem_fingerprint = NULL WHERE request_id = ?", requestId);
      return;
    }
    const batch = membersOf(this.sql.exec("SELECT batch FROM charges WHERE request_id = ?", key).one());
    const forgotten = batch.map((charge) => (charge.request_id === requestId ? { ...charge, idem_key: null, idem_fingerprint: null } : charge));
    this.sql.exec("UPDATE charges SET batch = ? WHERE request_id = ?", JSON.stringify(forgotten), key);
  }

  refundsSince(since: number): number {
    return this.sql.exec("SELECT COUNT(*) AS n FROM charges WHERE refunded_at > ?", since).one().n as number;
  }

  /**
   * Deletes what can no longer be refunded or counted; returns whether rows are left. Since v22
   * there is no index on created_at (it cost a row written per charge): the delete reads the table,
   * which holds only the last minutes of charges, and a row read costs a thousandth of a row written.
   * A batch row goes when its last charge may go.
   */
  prune(now: number, keepChargedMs: number): boolean {
    this.sql.exec(
      "DELETE FROM charges WHERE status = 'charged' AND MAX(created_at, COALESCE((SELECT MAX(json_extract(m.value, '$.created_at')) FROM json_each(charges.batch) m), 0)) < ?",
      now - keepChargedMs,
    );
    this.sql.exec("DELETE FROM charges WHERE status = 'refunded' AND refunded_at < ?", now - HOUR_MS);
    this.load();
    return this.sql.exec("SELECT 1 FROM charges LIMIT 1").toArray().length > 0;
  }

  /** A batch member's charge, read from its batch row. */
  private member(requestId: string): BatchedCharge | undefined {
    const key = this.batchOf.get(requestId);
    if (key === undefined) return undefined;
    const row = this.sql.exec("SELECT batch FROM charges WHERE request_id = ?", key).toArray()[0];
    return row ? membersOf(row).find((charge) => charge.request_id === requestId) : undefined;
  }
}

function rowToCharge(row: Record<string, SqlStorageValue>): Omit<ChargeRow, "receipt"> & { receipt: Receipt } {
  const { seq: _seq, pending_usage: _pending, batch: _batch, ...rest } = row;
  return { ...rest, receipt: JSON.parse(row.receipt as string) } as unknown as ChargeRow;
}

function membersOf(row: Record<string, SqlStorageValue>): BatchedCharge[] {
  return row.batch ? (JSON.parse(row.batch as string) as BatchedCharge[]) : [];
}

function stripJournal(charge: BatchedCharge): Omit<ChargeRow, "status" | "refunded_at"> {
  const { seq: _seq, pendingUsage: _pending, ...rest } = charge;
  return rest;
}
