import { formatCents } from "../../../src/lib/money";
import { HOUR_MS } from "../../../src/lib/time";
import type { AccountRow, AccountStore } from "../core/account";

export const LEDGER_TABLES = {
  v3: `ALTER TABLE ledger ADD COLUMN grant_id TEXT;`,
  v1: `
CREATE TABLE IF NOT EXISTS ledger (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  meter TEXT,
  bucket INTEGER,
  amount INTEGER NOT NULL,
  count INTEGER NOT NULL DEFAULT 1,
  reference TEXT UNIQUE,
  reason TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_aggregate ON ledger(kind, meter, bucket) WHERE kind IN ('usage', 'refund');`,
};

/**
 * grant: new credit; void/expiry: what a grant still held when closed; clawback: a refunded or
 * lost-dispute top-up taken back; clawback_reversal: what a clawback took, given back (the refund
 * failed, the lost dispute's funds were reinstated); deduction: credit removed by the operator; stripe_sync: the
 * difference Stripe's balance implied; note: a step that moves no money (freeze, release,
 * report retry or resolve), kept for the record. (`topup` entries predate grants.) Credit leases
 * (leases/): lease: a lease's reserve, out of the grants until it is spent (usage) or returned;
 * lease_expired: an expired lease's reserve settled as spent; lease_refund: its unspent part,
 * given back by a late final report. One row of each per lease, updated in place.
 */
export type EntryKind =
  | "grant"
  | "topup"
  | "void"
  | "expiry"
  | "clawback"
  | "clawback_reversal"
  | "deduction"
  | "stripe_sync"
  | "note"
  | "lease"
  | "lease_expired"
  | "lease_refund";

/**
 * The oldest usage buckets. INDEXED BY: without statistics SQLite would rather walk every usage
 * row of ledger_aggregate and sort. Exported so a test can show its query plan.
 */
export const OLD_USAGE_BUCKETS = `SELECT id, kind, meter, bucket, amount, count, created_at, updated_at FROM ledger INDEXED BY ledger_usage_bucket
  WHERE kind IN ('usage', 'refund') AND bucket > ? AND bucket < ? ORDER BY bucket LIMIT ?`;

export interface OldUsageRow {
  id: number;
  kind: string;
  meter: string;
  bucket: number;
  amount: number;
  count: number;
  created_at: number;
  updated_at: number;
}

export interface UsageEntry {
  meter: string;
  bucket: number;
  /** Micro-cents: < 0 with count 1 is a charge, > 0 with count -1 is its refund. */
  amount: number;
  count: number;
  now: number;
}

/** The start of the usage bucket `now` falls in (usage is aggregated per meter per bucket). */
export function bucketOf(now: number, bucketSeconds: number): number {
  const size = bucketSeconds * 1000;
  return Math.floor(now / size) * size;
}

/**
 * Every credit and debit, and the balance that is always their sum. Usage and refunds are
 * aggregated per meter per bucket, so storage grows with meters × time, not with requests.
 * Each write moves the balance in the same statement batch; callers wrap it in a transaction.
 */
export class Ledger {
  /** Usage summed per row while deferring (journaled charges), written by flush(). */
  private readonly pending = new Map<string, { kind: string; meter: string; bucket: number; amount: number; count: number; now: number }>();
  private deferring = false;
  /** Runs before any write goes through: the context folds the journal first (journal.ts). */
  beforeWrite: () => void = () => {};

  constructor(
    private readonly sql: SqlStorage,
    private readonly account: AccountStore,
  ) {}

  /** A charge or a refund; `alsoSet` lets the caller update other account fields in the same write. */
  usage(entry: UsageEntry, alsoSet: Partial<AccountRow> = {}): void {
    // Charges (and free requests) are usage; money given back (a refund, a hold's unused part) is refund.
    const kind = entry.amount < 0 || (entry.amount === 0 && entry.count > 0) ? "usage" : "refund";
    if (this.deferring) {
      const id = `${kind}\n${entry.meter}\n${entry.bucket}`;
      const row = this.pending.get(id);
      if (row) {
        row.amount += entry.amount;
        row.count += Math.abs(entry.count);
        row.now = entry.now;
      } else this.pending.set(id, { kind, meter: entry.meter, bucket: entry.bucket, amount: entry.amount, count: Math.abs(entry.count), now: entry.now });
    } else {
      this.beforeWrite();
      this.upsertUsage(kind, entry.meter, entry.bucket, entry.amount, Math.abs(entry.count), entry.now);
    }
    this.account.set({ ...alsoSet, balance: this.account.row.balance + entry.amount });
  }

  /** While on, usage is summed in memory until flush(). */
  defer(on: boolean): void {
    this.deferring = on;
  }

  /** Writes each kept-back usage row's sum once. */
  flush(): void {
    for (const row of this.pending.values()) this.upsertUsage(row.kind, row.meter, row.bucket, row.amount, row.count, row.now);
    this.pending.clear();
  }

  /** Forgets what was kept back (the context reloads from SQLite and replays the journal). */
  reset(): void {
    this.pending.clear();
    this.deferring = false;
  }

  /**
   * Adds to the bucket's usage row. An existing row is updated in place: an UPDATE writes one row
   * where the upsert's conflict path writes two (rowsWritten, what is billed). The INSERT (and its
   * ON CONFLICT) only for the bucket's first entry.
   */
  private upsertUsage(kind: string, meter: string, bucket: number, amount: number, count: number, now: number): void {
    const updated = this.sql.exec(
      "UPDATE ledger SET amount = amount + ?, count = count + ?, updated_at = ? WHERE kind = ? AND meter = ? AND bucket = ? AND kind IN ('usage', 'refund')",
      amount,
      count,
      now,
      kind,
      meter,
      bucket,
    );
    updated.toArray();
    if (updated.rowsWritten > 0) return;
    this.sql.exec(
      `INSERT INTO ledger (kind, meter, bucket, amount, count, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (kind, meter, bucket) WHERE kind IN ('usage', 'refund')
       DO UPDATE SET amount = amount + excluded.amount, count = count + excluded.count, updated_at = excluded.updated_at`,
      kind,
      meter,
      bucket,
      amount,
      count,
      now,
      now,
    );
  }

  /** A single entry (grant, void, clawback, Stripe sync, …); returns its id. */
  entry(input: { kind: EntryKind; amount: number; reference?: string | null; reason: string; now: number; grant?: string | null }, alsoSet: Partial<AccountRow> = {}): number {
    this.beforeWrite();
    const id = this.sql
      .exec(
        "INSERT INTO ledger (kind, amount, count, reference, reason, grant_id, created_at, updated_at) VALUES (?, ?, 1, ?, ?, ?, ?, ?) RETURNING id",
        input.kind,
        input.amount,
        input.reference ?? null,
        input.reason,
        input.grant ?? null,
        input.now,
        input.now,
      )
      .one().id as number;
    this.account.set({ ...alsoSet, balance: this.account.row.balance + input.amount });
    return id;
  }

  /** Adds `amount` to the one entry named `reference` (made on first use): one row per lease, however often it syncs. */
  aggregate(input: { kind: EntryKind; amount: number; reference: string; reason: string; now: number }, alsoSet: Partial<AccountRow> = {}): void {
    this.beforeWrite();
    this.sql.exec(
      `INSERT INTO ledger (kind, amount, count, reference, reason, created_at, updated_at) VALUES (?, ?, 1, ?, ?, ?, ?)
       ON CONFLICT (reference) DO UPDATE SET amount = amount + excluded.amount, updated_at = excluded.updated_at`,
      input.kind,
      input.amount,
      input.reference,
      input.reason,
      input.now,
      input.now,
    );
    this.account.set({ ...alsoSet, balance: this.account.row.balance + input.amount });
  }

  /**
   * Micro-cents of a grant already out of the balance other than by spending: what closing it (a
   * void, an expiry) removed, and what refunds and lost disputes took back and was not given
   * back. A clawback never takes those again: a voided or expired top-up that is then refunded
   * takes back only what was spent of it.
   */
  takenOut(grantId: string): number {
    const row = this.sql
      .exec("SELECT COALESCE(SUM(amount), 0) AS total FROM ledger WHERE grant_id = ? AND kind IN ('void', 'expiry', 'clawback', 'clawback_reversal')", grantId)
      .one();
    return -(row.total as number);
  }

  /** Micro-cents taken back by the clawbacks whose reference starts with `prefix`. */
  clawedBack(prefix: string): number {
    const escaped = prefix.replace(/[\\%_]/g, (c) => `\\${c}`);
    return this.sql.exec("SELECT COALESCE(-SUM(amount), 0) AS t FROM ledger WHERE kind = 'clawback' AND reference LIKE ? ESCAPE '\\'", `${escaped}%`).one().t as number;
  }

  /** Whether the customer has used the API or had credit: a usage row or any credit entry (EXISTS stops at the first). */
  hasActivity(): boolean {
    return this.sql.exec("SELECT EXISTS (SELECT 1 FROM ledger WHERE kind = 'usage' OR amount > 0) AS active").one().active === 1;
  }

  /** When the ledger last changed (a request, a credit), or null. */
  lastActivityAt(): number | null {
    return this.sql.exec("SELECT MAX(updated_at) AS t FROM ledger").one().t as number | null;
  }

  /** Requests and charges (micro-cents) per meter per usage bucket since `since` (ms), oldest first. */
  usageSeries(since: number): { meter: string; bucket: number; requests: number; micros: number }[] {
    return this.sql
      .exec(
        `SELECT meter, bucket, SUM(CASE WHEN kind = 'usage' THEN count ELSE -count END) AS requests, -SUM(amount) AS micros
         FROM ledger WHERE kind IN ('usage', 'refund') AND bucket >= ? GROUP BY meter, bucket ORDER BY bucket, meter`,
        since,
      )
      .toArray()
      .map((r) => ({ meter: r.meter as string, bucket: r.bucket as number, requests: r.requests as number, micros: r.micros as number }));
  }

  /** Requests and charges per meter per hour since `since`, for the hours with usage rows written since `changedSince`. */
  usageByHour(since: number, changedSince: number): { meter: string; hour: number; requests: number; micros: number }[] {
    return this.sql
      .exec(
        `SELECT meter, (bucket / ${HOUR_MS}) * ${HOUR_MS} AS hour,
                SUM(CASE WHEN kind = 'usage' THEN count ELSE -count END) AS requests, -SUM(amount) AS micros
         FROM ledger WHERE kind IN ('usage', 'refund') AND bucket >= ?
           AND (bucket / ${HOUR_MS}) * ${HOUR_MS} IN
             (SELECT DISTINCT (bucket / ${HOUR_MS}) * ${HOUR_MS} FROM ledger WHERE kind IN ('usage', 'refund') AND updated_at >= ?)
         GROUP BY meter, hour ORDER BY hour`,
        since,
        changedSince,
      )
      .toArray()
      .map((r) => ({ meter: r.meter as string, hour: r.hour as number, requests: r.requests as number, micros: r.micros as number }));
  }

  /** The oldest usage and refund rows, in buckets after `after` and before `before` (retention/usage.ts folds them). */
  oldUsageRows(after: number, before: number, limit: number) {
    return this.sql.exec(OLD_USAGE_BUCKETS, after, before, limit).toArray() as unknown as OldUsageRow[];
  }

  /** Adds folded rows into the carried-forward row of their kind and meter, and deletes them, in one step. */
  carryForward(
    rows: readonly OldUsageRow[],
    bucket: number,
    carried: Iterable<{ kind: string; meter: string; amount: number; count: number; from: number; to: number; through: number }>,
  ): void {
    for (const c of carried) {
      this.sql.exec(
        `INSERT INTO ledger (kind, meter, bucket, amount, count, reason, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (kind, meter, bucket) WHERE kind IN ('usage', 'refund')
         DO UPDATE SET amount = amount + excluded.amount, count = count + excluded.count, reason = excluded.reason,
           created_at = MIN(created_at, excluded.created_at), updated_at = MAX(updated_at, excluded.updated_at)`,
        c.kind,
        c.meter,
        bucket,
        c.amount,
        c.count,
        `carried forward: ${c.kind} of buckets up to ${new Date(c.through).toISOString()}`,
        c.from,
        c.to,
      );
    }
    if (rows.length) this.sql.exec("DELETE FROM ledger WHERE id IN (SELECT value FROM json_each(?))", JSON.stringify(rows.map((r) => r.id)));
  }

  /** The oldest usage bucket after `after`, or null. */
  oldestUsageBucket(after: number): number | null {
    return this.sql.exec("SELECT MIN(bucket) AS b FROM ledger INDEXED BY ledger_usage_bucket WHERE kind IN ('usage', 'refund') AND bucket > ?", after).one().b as number | null;
  }

  byReference(reference: string): { id: number; amount: number } | undefined {
    return this.sql.exec("SELECT id, amount FROM ledger WHERE reference = ?", reference).toArray()[0] as { id: number; amount: number } | undefined;
  }

  sum(): number {
    return this.sql.exec("SELECT COALESCE(SUM(amount), 0) AS s FROM ledger").one().s as number;
  }

  rows(): number {
    return this.sql.exec("SELECT COUNT(*) AS n FROM ledger").one().n as number;
  }

  page(before: number | undefined, limit: number) {
    const rows = this.sql
      .exec(
        "SELECT id, kind, meter, bucket, amount, count, reference, reason, grant_id, created_at, updated_at FROM ledger WHERE id < ? ORDER BY id DESC LIMIT ?",
        before ?? Number.MAX_SAFE_INTEGER,
        limit + 1,
      )
      .toArray();
    const entries: Record<string, SqlStorageValue>[] = rows.slice(0, limit).map((r) => ({ ...r, amount_exact_cents: formatCents(r.amount as number) }));
    return { entries, next_cursor: rows.length > limit ? (entries.at(-1)!.id as number) : null };
  }

  /** Requests and charges per meter since a bucket start. */
  usageSince(bucket: number) {
    return this.sql
      .exec(
        `SELECT meter, SUM(CASE WHEN kind = 'usage' THEN count ELSE -count END) AS requests, -SUM(amount) AS micros
         FROM ledger WHERE kind IN ('usage', 'refund') AND bucket >= ? GROUP BY meter ORDER BY meter`,
        bucket,
      )
      .toArray()
      .map((r) => ({ meter: r.meter, requests: r.requests, charged_cents: formatCents(r.micros as number) }));
  }

  summaryByKind() {
    return this.sql
      .exec("SELECT kind, COUNT(*) AS entries, SUM(amount) AS micros, SUM(count) AS count FROM ledger GROUP BY kind ORDER BY kind")
      .toArray()
      .map((r) => ({ kind: r.kind, entries: r.entries, count: r.count, total_cents: formatCents(r.micros as number) }));
  }
}
