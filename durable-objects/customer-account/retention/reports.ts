import type { Config } from "../../../src/lib/config";
import { DAY_MS } from "../../../src/lib/time";
import type { Timers } from "../core/timers";

export const REPORT_RETENTION_TIMER = "report_retention";

export const REPORT_RETENTION_TABLES = {
  // Only settled reports are ever deleted, so the index holds only those: old pending or failed
  // rows are never walked again. The timer row makes an upgraded object prune its backlog once.
  v10: `CREATE INDEX IF NOT EXISTS reports_settled ON reports(created_at) WHERE status IN ('sent', 'resolved');
CREATE TABLE IF NOT EXISTS report_totals (
  kind TEXT NOT NULL,
  status TEXT NOT NULL,
  count INTEGER NOT NULL,
  amount INTEGER NOT NULL,
  PRIMARY KEY (kind, status)
);
INSERT INTO timers (name, due_at) VALUES ('${REPORT_RETENTION_TIMER}', 0) ON CONFLICT (name) DO NOTHING;`,
};

const BATCH = 500;
/**
 * The oldest settled reports. INDEXED BY: without statistics SQLite would rather walk
 * reports_status (every settled row) and sort. Exported so a test can show its query plan.
 */
export const OLD_SETTLED_REPORTS =
  "SELECT seq, kind, status, amount FROM reports INDEXED BY reports_settled WHERE status IN ('sent', 'resolved') AND created_at < ? ORDER BY created_at LIMIT ?";

export interface ReportTotal {
  kind: string;
  status: string;
  n: number;
  amount: number;
}

function sumInto(sums: Map<string, ReportTotal>, r: ReportTotal): void {
  const key = `${r.kind}\u0000${r.status}`;
  const sum = sums.get(key) ?? { kind: r.kind, status: r.status, n: 0, amount: 0 };
  sum.n += r.n;
  sum.amount += r.amount;
  sums.set(key, sum);
}

/**
 * Stripe report rows older than `REPORT_RETENTION_DAYS` are deleted from a timer (never per
 * request), a batch at a time, once they are settled (`sent`, or `resolved` by an operator):
 * their count and amount move to `report_totals`, so the sums the summary shows stay the same.
 * Pending and failed reports are never deleted: they are money not yet reported.
 */
export class ReportRetention {
  constructor(
    private readonly sql: SqlStorage,
    private readonly timers: Timers,
    private readonly config: () => Config,
  ) {}

  private get retentionMs(): number {
    return this.config().REPORT_RETENTION_DAYS * DAY_MS;
  }

  /** Called when a report row is written: prune it once it is old enough. */
  due(createdAt: number): void {
    this.timers.at(REPORT_RETENTION_TIMER, createdAt + this.retentionMs);
  }

  /** The timer's handler: deletes one batch of old settled rows, keeping their sums; sets the timer for the next. */
  prune(now: number): number {
    const retentionMs = this.retentionMs;
    const rows = this.sql.exec(OLD_SETTLED_REPORTS, now - retentionMs, BATCH).toArray();
    const sums = new Map<string, ReportTotal>();
    for (const r of rows) sumInto(sums, { kind: r.kind as string, status: r.status as string, n: 1, amount: r.amount as number });
    for (const { kind, status, n, amount } of sums.values()) {
      this.sql.exec(
        `INSERT INTO report_totals (kind, status, count, amount) VALUES (?, ?, ?, ?)
         ON CONFLICT (kind, status) DO UPDATE SET count = count + excluded.count, amount = amount + excluded.amount`,
        kind,
        status,
        n,
        amount,
      );
    }
    if (rows.length) this.sql.exec("DELETE FROM reports WHERE seq IN (SELECT value FROM json_each(?))", JSON.stringify(rows.map((r) => r.seq)));
    const oldest = this.sql.exec("SELECT MIN(created_at) AS t FROM reports INDEXED BY reports_settled WHERE status IN ('sent', 'resolved')").one().t as number | null;
    const next = rows.length === BATCH ? now + 1_000 : oldest === null ? null : Math.max(oldest + retentionMs, now + 1_000);
    this.timers.set(REPORT_RETENTION_TIMER, next);
    return rows.length;
  }

  /** For the summary: reports per kind and status with their amount (cents), deleted rows included, and the row counts. */
  view() {
    const sums = new Map<string, ReportTotal>();
    const live = this.sql.exec("SELECT kind, status, COUNT(*) AS n, SUM(amount) AS amount FROM reports GROUP BY kind, status").toArray();
    const archived = this.sql.exec("SELECT kind, status, count AS n, amount FROM report_totals").toArray();
    for (const r of [...live, ...archived]) sumInto(sums, r as unknown as ReportTotal);
    const count = (rows: Record<string, SqlStorageValue>[]) => rows.reduce((n, r) => n + (r.n as number), 0);
    return {
      report_totals: [...sums.values()].sort((a, b) => a.kind.localeCompare(b.kind) || a.status.localeCompare(b.status)),
      report_rows_kept: count(live),
      report_rows_archived: count(archived),
      report_retention_days: this.config().REPORT_RETENTION_DAYS,
    };
  }
}
