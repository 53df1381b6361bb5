import type { Cohort } from "../../src/lib/config";
import type { Plan } from "../../src/lib/customer";
import { formatCents, microsToWholeCents } from "../../src/lib/money";
import { HOUR_MS } from "../../src/lib/time";

/** What a customer object pushes to the directory at most once a minute, when something changed. */
export interface CustomerRollup {
  customerId: string;
  seq: number;
  plan: Plan;
  deleted: boolean;
  balanceMicros: number;
  lastActivityAt: number | null;
  reports: { pending: number; failed: number };
  emails: { sent: number; failed: number; unknown: number; retrying: number };
  /** Absolute totals for the hours that changed since the last push. */
  usage: { meter: string; hour: number; requests: number; micros: number }[];
}

/** The overview charts 7 days; a day more is kept so a late push never loses an edge hour. */
const KEEP_MS = 8 * 24 * HOUR_MS;

export const ROLLUP_SCHEMA = `
CREATE TABLE IF NOT EXISTS customer_rollup (
  customer_id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  plan TEXT NOT NULL,
  deleted INTEGER NOT NULL,
  balance INTEGER NOT NULL,
  last_activity_at INTEGER,
  reports_pending INTEGER NOT NULL, reports_failed INTEGER NOT NULL,
  emails_sent INTEGER NOT NULL, emails_failed INTEGER NOT NULL, emails_unknown INTEGER NOT NULL, emails_retrying INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS usage_hourly (
  customer_id TEXT NOT NULL, meter TEXT NOT NULL, hour INTEGER NOT NULL,
  requests INTEGER NOT NULL, micros INTEGER NOT NULL,
  PRIMARY KEY (customer_id, meter, hour)
);
CREATE INDEX IF NOT EXISTS usage_hourly_hour ON usage_hourly(hour);
`;

/** Stores one customer's rollup; an older push (lower seq) than the stored one is ignored. */
export function applyRollup(sql: SqlStorage, r: CustomerRollup, now: number): { applied: boolean } {
  const current = sql.exec("SELECT seq FROM customer_rollup WHERE customer_id = ?", r.customerId).toArray()[0];
  if (current && (current.seq as number) >= r.seq) return { applied: false };
  sql.exec(
    `INSERT INTO customer_rollup (customer_id, seq, plan, deleted, balance, last_activity_at, reports_pending, reports_failed,
       emails_sent, emails_failed, emails_unknown, emails_retrying, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (customer_id) DO UPDATE SET seq = excluded.seq, plan = excluded.plan, deleted = excluded.deleted,
       balance = excluded.balance, last_activity_at = excluded.last_activity_at, reports_pending = excluded.reports_pending,
       reports_failed = excluded.reports_failed, emails_sent = excluded.emails_sent, emails_failed = excluded.emails_failed,
       emails_unknown = excluded.emails_unknown, emails_retrying = excluded.emails_retrying, updated_at = excluded.updated_at`,
    r.customerId,
    r.seq,
    r.plan,
    r.deleted ? 1 : 0,
    r.balanceMicros,
    r.lastActivityAt,
    r.reports.pending,
    r.reports.failed,
    r.emails.sent,
    r.emails.failed,
    r.emails.unknown,
    r.emails.retrying,
    now,
  );
  for (const u of r.usage) {
    if (u.hour < now - KEEP_MS) continue;
    sql.exec(
      `INSERT INTO usage_hourly (customer_id, meter, hour, requests, micros) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (customer_id, meter, hour) DO UPDATE SET requests = excluded.requests, micros = excluded.micros`,
      r.customerId,
      u.meter,
      u.hour,
      u.requests,
      u.micros,
    );
  }
  sql.exec("DELETE FROM usage_hourly WHERE hour < ?", now - KEEP_MS);
  return { applied: true };
}

export interface Overview {
  customers: number;
  cohorts: Record<string, number>;
  outstandingMicros: number;
  customersWithCredit: number;
  overdrawnMicros: number;
  reports: { pending: number; failed: number; customersWithFailed: number };
  emails: { sent: number; failed: number; unknown: number; retrying: number };
  /** Requests and micro-cents per meter per hour, oldest first, for the last 7 days. */
  usage: { meter: string; hour: number; requests: number; micros: number }[];
  rolledUpAt: number | null;
}

/** Everything the dashboard's overview shows, in one read. */
export function overview(sql: SqlStorage, now: number): Overview {
  const one = (query: string, ...args: SqlStorageValue[]) => sql.exec(query, ...args).one();
  const totals = one(
    `SELECT COALESCE(SUM(CASE WHEN balance > 0 THEN balance END), 0) AS outstanding,
            COUNT(CASE WHEN balance > 0 THEN 1 END) AS with_credit,
            COALESCE(SUM(CASE WHEN balance < 0 THEN balance END), 0) AS overdrawn,
            COALESCE(SUM(reports_pending), 0) AS rp, COALESCE(SUM(reports_failed), 0) AS rf,
            COUNT(CASE WHEN reports_failed > 0 THEN 1 END) AS rfc,
            COALESCE(SUM(emails_sent), 0) AS es, COALESCE(SUM(emails_failed), 0) AS ef,
            COALESCE(SUM(emails_unknown), 0) AS eu, COALESCE(SUM(emails_retrying), 0) AS er,
            MAX(updated_at) AS at
     FROM customer_rollup WHERE deleted = 0`,
  );
  const since = Math.floor(now / HOUR_MS) * HOUR_MS - 7 * 24 * HOUR_MS;
  return {
    customers: one("SELECT COUNT(*) AS n FROM customers WHERE deleted = 0").n as number,
    cohorts: Object.fromEntries(
      sql
        .exec("SELECT cohort, COUNT(*) AS n FROM cohort_members GROUP BY cohort")
        .toArray()
        .map((r) => [r.cohort as Cohort, r.n as number]),
    ),
    outstandingMicros: totals.outstanding as number,
    customersWithCredit: totals.with_credit as number,
    overdrawnMicros: totals.overdrawn as number,
    reports: { pending: totals.rp as number, failed: totals.rf as number, customersWithFailed: totals.rfc as number },
    emails: { sent: totals.es as number, failed: totals.ef as number, unknown: totals.eu as number, retrying: totals.er as number },
    usage: sql
      .exec(
        `SELECT meter, hour, SUM(requests) AS requests, SUM(micros) AS micros FROM usage_hourly
         WHERE hour > ? GROUP BY meter, hour ORDER BY hour, meter`,
        since,
      )
      .toArray()
      .map((r) => ({ meter: r.meter as string, hour: r.hour as number, requests: r.requests as number, micros: r.micros as number })),
    rolledUpAt: (totals.at as number | null) ?? null,
  };
}

/** Escapes LIKE wildcards so a search for "a_b" matches that text, not "a?b". */
function likePattern(q: string): string {
  return `%${q.replace(/[\\%_]/g, (m) => `\\${m}`)}%`;
}

/** The customers list: id, email or name containing `q` (case-insensitive), paged by id. */
export function searchCustomers(sql: SqlStorage, q: string | null, after: string | null, limit: number) {
  const pattern = q ? likePattern(q.toLowerCase()) : null;
  const rows = sql
    .exec(
      `SELECT c.id, c.email, c.name, c.deleted, c.due_at, r.plan, r.balance, r.last_activity_at,
              (SELECT GROUP_CONCAT(m.cohort, ',') FROM cohort_members m WHERE m.customer_id = c.id) AS cohorts
       FROM customers c LEFT JOIN customer_rollup r ON r.customer_id = c.id
       WHERE c.id > ? AND (? IS NULL OR LOWER(c.id) LIKE ? ESCAPE '\\' OR LOWER(COALESCE(c.email, '')) LIKE ? ESCAPE '\\'
                           OR LOWER(COALESCE(c.name, '')) LIKE ? ESCAPE '\\')
       ORDER BY c.id LIMIT ?`,
      after ?? "",
      pattern,
      pattern,
      pattern,
      pattern,
      limit + 1,
    )
    .toArray();
  const customers = rows.slice(0, limit).map((r) => ({
    id: r.id as string,
    email: r.email as string | null,
    name: r.name as string | null,
    deleted: r.deleted as number,
    due_at: r.due_at as number | null,
    plan: (r.plan as Plan | null) ?? null,
    balance_cents: r.balance === null ? null : microsToWholeCents(r.balance as number),
    balance_exact_cents: r.balance === null ? null : formatCents(r.balance as number),
    last_activity_at: (r.last_activity_at as number | null) ?? null,
    cohorts: r.cohorts ? (r.cohorts as string).split(",").sort() : [],
  }));
  return { customers, next_cursor: rows.length > limit ? customers.at(-1)!.id : null };
}
