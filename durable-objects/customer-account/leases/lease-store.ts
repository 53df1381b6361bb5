import type { BucketCounter } from "./protocol";

export const LEASE_TABLES = {
  v21: `
CREATE TABLE IF NOT EXISTS leases (
  id TEXT PRIMARY KEY,
  isolate TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'live',
  seq INTEGER NOT NULL,
  granted INTEGER NOT NULL,
  spent INTEGER NOT NULL,
  want INTEGER NOT NULL,
  receipt TEXT NOT NULL,
  counters TEXT NOT NULL,
  rtt_ms INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  synced_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_expiry ON leases(status, expires_at);
CREATE TABLE IF NOT EXISTS lease_epoch (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  epoch INTEGER NOT NULL,
  fingerprint TEXT NOT NULL
);`,
};

/**
 * A lease at the object. `live`: its reserve (granted − spent) is drained from the grants and
 * set aside. `expired`: the alarm settled the reserve as spent; kept a day so a late final report
 * can give the unspent part back.
 */
export interface LeaseRow {
  id: string;
  isolate: string;
  status: "live" | "expired";
  seq: number;
  /** Cumulative micro-cents granted (gᵢ). */
  granted: number;
  /** Net spending settled so far (sᵢ). */
  spent: number;
  want: number;
  /** Where the reserve's money came from, in drain order: [grant id, micro-cents] (merged per grant). */
  receipt: [string, number][];
  /** Settled cumulative counters, by `meter\tbucket`. */
  counters: Record<string, BucketCounter>;
  rtt_ms: number;
  created_at: number;
  synced_at: number;
  expires_at: number;
}

interface StoredRow extends Omit<LeaseRow, "receipt" | "counters"> {
  receipt: string;
  counters: string;
}

const parse = (row: StoredRow): LeaseRow => ({ ...row, receipt: JSON.parse(row.receipt), counters: JSON.parse(row.counters) });

/** The `leases` and `lease_epoch` tables: every SQL statement on them. */
export class LeaseStore {
  constructor(private readonly sql: SqlStorage) {}

  get(id: string): LeaseRow | null {
    const row = this.sql.exec("SELECT * FROM leases WHERE id = ?", id).toArray()[0] as unknown as StoredRow | undefined;
    return row ? parse(row) : null;
  }

  live(): LeaseRow[] {
    return (this.sql.exec("SELECT * FROM leases WHERE status = 'live' ORDER BY created_at").toArray() as unknown as StoredRow[]).map(parse);
  }

  /** Live leases past their expiry at the object. */
  expiredBy(now: number): LeaseRow[] {
    return (this.sql.exec("SELECT * FROM leases WHERE status = 'live' AND expires_at <= ?", now).toArray() as unknown as StoredRow[]).map(parse);
  }

  /** The reserves of all live leases (R). */
  reserved(): number {
    return (this.sql.exec("SELECT COALESCE(SUM(granted - spent), 0) AS r FROM leases WHERE status = 'live'").one().r as number) ?? 0;
  }

  /** When the next live lease expires, or an expired one may be forgotten. */
  nextDue(forgetAfterMs: number): number | null {
    const live = this.sql.exec("SELECT MIN(expires_at) AS t FROM leases WHERE status = 'live'").one().t as number | null;
    const dead = this.sql.exec("SELECT MIN(expires_at) AS t FROM leases WHERE status = 'expired'").one().t as number | null;
    const times = [live, dead === null ? null : dead + forgetAfterMs].filter((t): t is number => t !== null);
    return times.length ? Math.min(...times) : null;
  }

  put(row: LeaseRow): void {
    this.sql.exec(
      `INSERT INTO leases (id, isolate, status, seq, granted, spent, want, receipt, counters, rtt_ms, created_at, synced_at, expires_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET status = excluded.status, seq = excluded.seq, granted = excluded.granted, spent = excluded.spent,
         want = excluded.want, receipt = excluded.receipt, counters = excluded.counters, rtt_ms = excluded.rtt_ms,
         synced_at = excluded.synced_at, expires_at = excluded.expires_at`,
      row.id,
      row.isolate,
      row.status,
      row.seq,
      row.granted,
      row.spent,
      row.want,
      JSON.stringify(row.receipt),
      JSON.stringify(row.counters),
      row.rtt_ms,
      row.created_at,
      row.synced_at,
      row.expires_at,
    );
  }

  delete(id: string): void {
    this.sql.exec("DELETE FROM leases WHERE id = ?", id);
  }

  /** Expired leases no late report can need any more. */
  forget(before: number): void {
    this.sql.exec("DELETE FROM leases WHERE status = 'expired' AND expires_at <= ?", before);
  }

  /** The epoch, bumped when `fingerprint` (keys, account state, disputes) differs from the last one seen. */
  epoch(fingerprint: string): number {
    const row = this.sql.exec("SELECT epoch, fingerprint FROM lease_epoch WHERE id = 1").toArray()[0] as { epoch: number; fingerprint: string } | undefined;
    if (row && row.fingerprint === fingerprint) return row.epoch;
    const epoch = (row?.epoch ?? 0) + 1;
    this.sql.exec(
      "INSERT INTO lease_epoch (id, epoch, fingerprint) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch, fingerprint = excluded.fingerprint",
      epoch,
      fingerprint,
    );
    return epoch;
  }
}
