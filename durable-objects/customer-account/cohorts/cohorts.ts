import { COHORTS, type Cohort } from "../../../src/lib/config";
import type { Plan } from "../../../src/lib/customer";

export const COHORT_TABLES = {
  v1: `
CREATE TABLE IF NOT EXISTS cohorts (
  cohort TEXT PRIMARY KEY,
  enrollment INTEGER NOT NULL,
  entered_at INTEGER NOT NULL,
  exited_at INTEGER
);
CREATE TABLE IF NOT EXISTS cohort_history (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  cohort TEXT NOT NULL, enrollment INTEGER NOT NULL, entered_at INTEGER NOT NULL, exited_at INTEGER
);`,
};

const HISTORY_KEPT = 200;

export interface Membership {
  enrollment: number;
  entered_at: number;
}

export interface CohortState {
  deleted: boolean;
  plan: Plan;
  /** Each non-free meter: its price and the credit above the minimum it may use (micro-cents). */
  meters: { priceMicros: number; headroomMicros: number }[];
  /** Spendable credit above the minimum balance, any meter, in micro-cents. */
  headroomMicros: number;
  /** Low-balance warning threshold (the larger of the absolute and the top-up-relative one). */
  lowThresholdMicros: number;
  /** Post-paid: an invoice is unpaid. */
  unpaid: boolean;
  /** Credit that expires within the warning window. */
  expiringSoonMicros: number;
  /** Auto top-up paused by a failed payment, or stopped by its monthly cap. */
  autoTopUp?: "topup_failed" | "auto_topup_capped" | null;
}

/**
 * Which cohorts a customer belongs to, with no I/O. Out of credit means no non-free meter is
 * affordable any more (not merely the default price); low balance warns before that.
 */
export function cohortsFor(s: CohortState): Set<Cohort> {
  const next = new Set<Cohort>();
  if (s.deleted) return next;
  if (s.plan === "prepaid") {
    if (s.meters.length > 0 && s.meters.every((m) => m.headroomMicros < m.priceMicros)) next.add("out_of_credits");
    else if (s.headroomMicros < s.lowThresholdMicros) next.add("low_balance");
  } else if (s.unpaid) next.add("payment_failed");
  if (s.expiringSoonMicros > 0) next.add("credit_expiring");
  if (s.autoTopUp) next.add(s.autoTopUp);
  return next;
}

/**
 * The largest charge after which cohortsFor() is sure to answer the same: a charge of X shrinks
 * every headroom and the expiring credit by at most X, so each threshold not yet crossed is that
 * far away. `autoTopUpSlack` is the same distance for auto top-up (AutoTopUp.slack).
 */
export function chargeSlack(s: CohortState, autoTopUpSlack: number): number {
  let slack = autoTopUpSlack;
  if (s.expiringSoonMicros > 0) slack = Math.min(slack, s.expiringSoonMicros - 1);
  if (s.deleted || s.plan !== "prepaid" || s.meters.length === 0) return slack;
  const best = Math.max(...s.meters.map((m) => m.headroomMicros - m.priceMicros));
  // Out of credit stays out of credit as the balance falls; otherwise the affordable meter closest
  // to its price keeps the customer out of that cohort until the charge passes it.
  if (best < 0) return slack;
  slack = Math.min(slack, best);
  if (s.headroomMicros >= s.lowThresholdMicros) slack = Math.min(slack, s.headroomMicros - s.lowThresholdMicros);
  return slack;
}

/** Current memberships (in memory, mirrored in `cohorts`) and the entry/exit history. */
export class CohortStore {
  readonly current = new Map<Cohort, Membership>();

  constructor(private readonly sql: SqlStorage) {}

  load(): void {
    this.current.clear();
    for (const row of this.sql.exec("SELECT cohort, enrollment, entered_at FROM cohorts WHERE exited_at IS NULL")) {
      this.current.set(row.cohort as Cohort, { enrollment: row.enrollment as number, entered_at: row.entered_at as number });
    }
  }

  /** Enters and leaves cohorts to match `next`; returns the cohorts entered and left. */
  apply(next: Set<Cohort>, now: number): { entered: Cohort[]; left: Cohort[] } {
    const entered: Cohort[] = [];
    const left: Cohort[] = [];
    for (const cohort of COHORTS) {
      const member = this.current.get(cohort);
      if (next.has(cohort) && !member) {
        const previous = this.sql.exec("SELECT enrollment FROM cohorts WHERE cohort = ?", cohort).toArray()[0];
        const enrollment = ((previous?.enrollment as number | undefined) ?? 0) + 1;
        this.sql.exec(
          `INSERT INTO cohorts (cohort, enrollment, entered_at, exited_at) VALUES (?, ?, ?, NULL)
           ON CONFLICT (cohort) DO UPDATE SET enrollment = excluded.enrollment, entered_at = excluded.entered_at, exited_at = NULL`,
          cohort,
          enrollment,
          now,
        );
        this.sql.exec("INSERT INTO cohort_history (cohort, enrollment, entered_at) VALUES (?, ?, ?)", cohort, enrollment, now);
        this.current.set(cohort, { enrollment, entered_at: now });
        entered.push(cohort);
      } else if (!next.has(cohort) && member) {
        this.sql.exec("UPDATE cohorts SET exited_at = ? WHERE cohort = ?", now, cohort);
        this.sql.exec("UPDATE cohort_history SET exited_at = ? WHERE cohort = ? AND enrollment = ?", now, cohort, member.enrollment);
        this.current.delete(cohort);
        left.push(cohort);
      }
    }
    if (entered.length || left.length) this.sql.exec("DELETE FROM cohort_history WHERE id <= (SELECT MAX(id) - ? FROM cohort_history)", HISTORY_KEPT);
    return { entered, left };
  }

  view() {
    const current = [...this.current.entries()].map(([cohort, m]) => ({ cohort, enrollment: m.enrollment, entered_at: m.entered_at }));
    const history = this.sql.exec("SELECT cohort, enrollment, entered_at, exited_at FROM cohort_history ORDER BY id DESC LIMIT 20").toArray();
    return { current, history };
  }
}
