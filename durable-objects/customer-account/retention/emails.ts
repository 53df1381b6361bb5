import type { Cohort } from "../../../src/lib/config";
import { DAY_MS } from "../../../src/lib/time";
import type { Membership } from "../cohorts/cohorts";
import type { Timers } from "../core/timers";

export const EMAIL_RETENTION_TIMER = "email_retention";

export const EMAIL_RETENTION_TABLES = {
  // The timer row makes an upgraded object prune its old emails once it next runs its alarm.
  v5: `CREATE INDEX IF NOT EXISTS emails_created ON emails(created_at);
CREATE TABLE IF NOT EXISTS email_totals (
  cohort TEXT NOT NULL,
  status TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (cohort, status)
);
INSERT INTO timers (name, due_at) VALUES ('${EMAIL_RETENTION_TIMER}', 0) ON CONFLICT (name) DO NOTHING;`,
};

const BATCH = 500;

/**
 * Old email rows are deleted after `EMAILS.retention_days`, from a timer (never per request).
 * Their counts move to `email_totals`, so the sums the summary shows stay the same. Rows the
 * planner still reads are kept: the latest per cohort (the re-enrollment wait), every row of an
 * enrollment the customer is still in (the cap), and sends not settled yet.
 */
export class EmailRetention {
  constructor(
    private readonly sql: SqlStorage,
    private readonly timers: Timers,
    private readonly current: ReadonlyMap<Cohort, Membership>,
  ) {}

  /** Called when an email row is written: prune it once it is old enough. */
  due(createdAt: number, retentionMs: number): void {
    this.timers.at(EMAIL_RETENTION_TIMER, createdAt + retentionMs);
  }

  /** Deletes one batch of old rows, keeping their counts; sets the timer for the next. Returns rows deleted. */
  prune(now: number, retentionMs: number): number {
    const candidates = this.sql
      .exec(
        `SELECT id, cohort, enrollment, status FROM emails
         WHERE created_at < ? AND status NOT IN ('sending', 'retry') AND id NOT IN (SELECT MAX(id) FROM emails GROUP BY cohort)
         ORDER BY created_at LIMIT ?`,
        now - retentionMs,
        BATCH,
      )
      .toArray()
      .filter((r) => this.current.get(r.cohort as Cohort)?.enrollment !== r.enrollment);
    const counts = new Map<string, { cohort: string; status: string; n: number }>();
    for (const r of candidates) {
      const key = `${r.cohort}\u0000${r.status}`;
      const entry = counts.get(key) ?? { cohort: r.cohort as string, status: r.status as string, n: 0 };
      entry.n++;
      counts.set(key, entry);
    }
    for (const { cohort, status, n } of counts.values()) {
      this.sql.exec(
        "INSERT INTO email_totals (cohort, status, count) VALUES (?, ?, ?) ON CONFLICT (cohort, status) DO UPDATE SET count = count + excluded.count",
        cohort,
        status,
        n,
      );
    }
    if (candidates.length) this.sql.exec("DELETE FROM emails WHERE id IN (SELECT value FROM json_each(?))", JSON.stringify(candidates.map((r) => r.id)));
    this.timers.set(EMAIL_RETENTION_TIMER, this.nextAt(now, retentionMs, candidates.length === BATCH));
    return candidates.length;
  }

  private nextAt(now: number, retentionMs: number, more: boolean): number | null {
    if (more) return now + 1_000;
    const oldest = this.sql.exec("SELECT MIN(created_at) AS t FROM emails WHERE id NOT IN (SELECT MAX(id) FROM emails GROUP BY cohort)").one().t as number | null;
    if (oldest === null) return null;
    // Old rows kept for an enrollment still running are looked at again a day later.
    return oldest + retentionMs > now ? oldest + retentionMs : now + DAY_MS;
  }

  /** Rows deleted so far, per cohort and status. */
  archived(): { cohort: string; status: string; count: number }[] {
    return this.sql.exec("SELECT cohort, status, count FROM email_totals ORDER BY cohort, status").toArray() as unknown as {
      cohort: string;
      status: string;
      count: number;
    }[];
  }
}
