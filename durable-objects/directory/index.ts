import { DurableObject } from "cloudflare:workers";
import { type Cohort, getConfig } from "../../src/lib/config";
import type { BudgetAsk, BudgetGrant } from "../../src/lib/stripe-budget";
import { ENDED_SESSION_TABLES, EndedSessions } from "../shared/ended-sessions";
import { migrate } from "../shared/migrations";
import { type BudgetStatus, ShardBudget } from "./budget";
import type { Claim, DirectorySnapshot } from "./contract";
import type { Placement } from "./placement";
import { applyRollup, type CustomerRollup, type Overview, overview, ROLLUP_SCHEMA, searchCustomers } from "./rollup";
import { type ReportDelay, SHARD_TABLES, Shard } from "./shard";
import { visitDue } from "./sweep";

const DIRECTORY_TABLES = `
CREATE TABLE IF NOT EXISTS customers (
  id TEXT PRIMARY KEY,
  email TEXT, name TEXT,
  deleted INTEGER NOT NULL DEFAULT 0,
  due_at INTEGER,
  lease_until INTEGER NOT NULL DEFAULT 0,
  seq INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS customers_due ON customers(due_at) WHERE due_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS cohort_members (
  cohort TEXT NOT NULL,
  customer_id TEXT NOT NULL,
  entered_at INTEGER NOT NULL,
  PRIMARY KEY (cohort, customer_id)
);
CREATE TABLE IF NOT EXISTS sweep (id INTEGER PRIMARY KEY CHECK (id = 1), now INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS test_outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  to_email TEXT NOT NULL, subject TEXT NOT NULL, text TEXT NOT NULL, html TEXT,
  created_at INTEGER NOT NULL
);
`;

/**
 * The directory's schema, versioned (shared/migrations.ts): append only. Version 1 is what the
 * object created at every start before versions existed.
 */
export const DIRECTORY_MIGRATIONS: readonly string[] = [
  [DIRECTORY_TABLES, ROLLUP_SCHEMA, ENDED_SESSION_TABLES.v1].join("\n"),
  // v2: shards (which one this is, the move after DIRECTORY_SHARDS changed), the Stripe budget's
  // shrink and share, report batching, and which customers hold usage back while it is on.
  SHARD_TABLES.v2,
];

/** A claimed customer is left alone by overlapping cron runs until its lease ends. */
const LEASE_MS = 120_000;
/** One paced alarm run visits what the budget answers in this long. */
const SWEEP_SLICE_SECONDS = 30;
/** Test emails kept in the local outbox: as many as its admin route lists at most. */
export const TEST_OUTBOX_KEPT = 500;

/**
 * One shard of the index across customers (DIRECTORY_SHARDS of them, placement.ts): who exists,
 * who is in which cohort, and who has work for the cron (usage to report, emails due), plus this
 * shard's part of the Stripe call budget. Customer objects push a snapshot here only when one of
 * those changes (never per request), so the cron visits only customers with something to do.
 */
export class Directory extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly endedSessions: EndedSessions;
  private readonly budget: ShardBudget;
  private readonly shard: Shard;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.endedSessions = new EndedSessions(this.sql);
    const config = () => getConfig(this.env);
    this.budget = new ShardBudget(this.sql, config);
    this.shard = new Shard(this.sql, env, config, this.budget);
    ctx.blockConcurrencyWhile(async () => void migrate(ctx.storage, DIRECTORY_MIGRATIONS));
  }

  /** A dashboard session signed out: its cookie no longer signs anyone in, even if a copy was kept. */
  endAdminSession(sid: string, expiresAt: number): void {
    this.endedSessions.end(sid, expiresAt, Date.now());
  }

  adminSessionEnded(sid: string): boolean {
    return this.endedSessions.has(sid);
  }

  /** Snapshots may arrive out of order; a lower seq than the stored one is ignored. */
  /** `fresh`: this shard did not list the customer before (new, or moved here): it wants the whole rollup. */
  sync(snapshot: DirectorySnapshot): { applied: boolean; fresh?: boolean } {
    const current = this.sql.exec("SELECT seq FROM customers WHERE id = ?", snapshot.customerId).toArray()[0];
    if (current && (current.seq as number) >= snapshot.seq) return { applied: false };
    const now = Date.now();
    // Usage held back while this shard no longer batches (its customer has not heard yet): due now.
    const heldDue = snapshot.heldSince != null && !this.shard.batchingAt(now);
    const dueAt = heldDue ? Math.min(snapshot.dueAt ?? now, now) : snapshot.dueAt;
    const work = snapshot.workAt === undefined ? snapshot.dueAt : snapshot.workAt;
    const workAt = heldDue ? Math.min(work ?? now, now) : work;
    this.sql.exec(
      `INSERT INTO customers (id, email, name, deleted, due_at, work_at, lease_until, seq, updated_at, held_since) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET email = excluded.email, name = excluded.name, deleted = excluded.deleted,
         due_at = excluded.due_at, work_at = excluded.work_at, lease_until = 0, seq = excluded.seq, updated_at = excluded.updated_at, held_since = excluded.held_since`,
      snapshot.customerId,
      snapshot.email,
      snapshot.name,
      snapshot.deleted ? 1 : 0,
      dueAt,
      workAt,
      snapshot.seq,
      now,
      snapshot.heldSince ?? null,
    );
    const keep = new Map(snapshot.cohorts.map((c) => [c.cohort, c.entered_at]));
    for (const row of this.sql.exec("SELECT cohort FROM cohort_members WHERE customer_id = ?", snapshot.customerId).toArray()) {
      if (!keep.has(row.cohort as Cohort)) {
        this.sql.exec("DELETE FROM cohort_members WHERE cohort = ? AND customer_id = ?", row.cohort, snapshot.customerId);
      }
    }
    for (const [cohort, enteredAt] of keep) {
      this.sql.exec(
        `INSERT INTO cohort_members (cohort, customer_id, entered_at) VALUES (?, ?, ?)
         ON CONFLICT (cohort, customer_id) DO UPDATE SET entered_at = excluded.entered_at`,
        cohort,
        snapshot.customerId,
        enteredAt,
      );
    }
    return { applied: true, fresh: !current };
  }

  /**
   * Customers due at `now`, leased so an overlapping run skips them: those with reports, emails
   * or expiring credit first, then those due only for the periodic reconcile. With Stripe on, no
   * more are claimed than the budget has calls for now (the rest wait, in due order, for this
   * shard's alarm, which visits them at the budget's pace). With `placement` (the cron), the shard
   * learns where it stands.
   */
  claimDue(now: number, limit: number, placement?: Placement): Claim {
    const widest = placement ? this.shard.place(placement) : 1;
    const wallNow = Date.now();
    const batching = this.shard.batching(Math.max(now, wallNow));
    if (placement && getConfig(this.env).stripeEnabled) limit = Math.min(limit, Math.max(1, this.budget.available(wallNow)));
    const rows = this.sql.exec("SELECT id FROM customers WHERE work_at IS NOT NULL AND work_at <= ? AND lease_until <= ? ORDER BY work_at LIMIT ?", now, now, limit + 1).toArray();
    if (rows.length <= limit) {
      const reconcileOnly = this.sql
        .exec(
          "SELECT id FROM customers WHERE due_at IS NOT NULL AND due_at <= ? AND lease_until <= ? AND (work_at IS NULL OR work_at > ?) ORDER BY due_at LIMIT ?",
          now,
          now,
          now,
          limit + 1 - rows.length,
        )
        .toArray();
      rows.push(...reconcileOnly);
    }
    const customerIds = rows.slice(0, limit).map((r) => r.id as string);
    for (const id of customerIds) this.sql.exec("UPDATE customers SET lease_until = ? WHERE id = ?", now + LEASE_MS, id);
    return { customerIds, more: rows.length > limit || this.shard.moving(), batching: batching !== null, widest };
  }

  /** More customers were due than one cron run visits (or some must move shard): keep going from this object's alarm. */
  async continueSweep(now: number, placement?: Placement): Promise<void> {
    if (placement) this.shard.place(placement);
    this.sql.exec("INSERT INTO sweep (id, now) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET now = MAX(now, excluded.now)", now);
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now());
  }

  override async alarm(): Promise<void> {
    const row = this.sql.exec("SELECT now FROM sweep WHERE id = 1").toArray()[0];
    if (!row) return;
    // The sweep's clock is the cron's scheduled time, advanced by the time spent sweeping.
    const now = Math.max(row.now as number, Date.now());
    const config = getConfig(this.env);
    const moving = this.shard.moving() && (await this.shard.moveSome(config.CRON_BATCH_SIZE));
    // With Stripe on, visits start at the pace the budget can answer (one a call), in slices of
    // at most SWEEP_SLICE_SECONDS, well inside the customers' lease.
    const pace = config.stripeEnabled ? this.budget.visitsPerSecond(Date.now()) : null;
    const limit = pace === null ? config.CRON_BATCH_SIZE : Math.min(config.CRON_BATCH_SIZE, Math.max(1, Math.floor(pace * SWEEP_SLICE_SECONDS)));
    const result = await visitDue(this.env, config, now, (at) => this.claimDue(at, limit), pace);
    // Paced, a visit the budget still had no call for comes back due within seconds: the sweep waits for it, not for the next cron.
    const again =
      pace !== null &&
      this.sql.exec("SELECT 1 FROM customers WHERE due_at IS NOT NULL AND due_at <= ? AND lease_until <= ? LIMIT 1", Date.now() + 2000, Date.now()).toArray().length > 0;
    if (result.more || moving || again) await this.ctx.storage.setAlarm(Date.now() + (pace === null ? 1000 : 100));
    else this.sql.exec("DELETE FROM sweep");
  }

  /** Stripe calls for one caller's batch, from this shard's buckets (budget.ts); with the report batching in force here. */
  takeStripeCalls(ask: BudgetAsk): BudgetGrant {
    const now = Date.now();
    return { ...this.budget.take(ask, now), batching: this.shard.batching(now) };
  }

  /** Stripe answered 429 to one of this shard's callers. */
  stripeRateLimited(): void {
    this.budget.rateLimited(Date.now());
  }

  /** Calls asked for in the last minute: the cron shares the budget among shards by it. */
  stripeDemand(): number {
    return this.budget.demand(Date.now());
  }

  /** For /admin/status: this shard's budget and how far behind its reports are. */
  status(): { budget: BudgetStatus; reports: ReportDelay } {
    const now = Date.now();
    return { budget: this.budget.status(now), reports: this.shard.reportDelay(now) };
  }

  cohortCounts(): Record<string, number> {
    return Object.fromEntries(
      this.sql
        .exec("SELECT cohort, COUNT(*) AS n FROM cohort_members GROUP BY cohort")
        .toArray()
        .map((r) => [r.cohort, r.n]),
    );
  }

  cohortMembers(cohort: Cohort, after: string | null, limit: number) {
    const rows = this.sql
      .exec(
        `SELECT m.customer_id, m.entered_at, c.email, c.name FROM cohort_members m LEFT JOIN customers c ON c.id = m.customer_id
         WHERE m.cohort = ? AND m.customer_id > ? ORDER BY m.customer_id LIMIT ?`,
        cohort,
        after ?? "",
        limit + 1,
      )
      .toArray();
    const members = rows.slice(0, limit);
    return { members, next_cursor: rows.length > limit ? (members.at(-1)!.customer_id as string) : null };
  }

  /** Customers whose id, email or name contains `q`, with balance, plan, cohorts and last activity. */
  customers(after: string | null, limit: number, q: string | null = null) {
    return searchCustomers(this.sql, q, after, limit);
  }

  /** A customer's rollup for the overview (pushed at most once a minute, when something changed). */
  rollup(rollup: CustomerRollup): { applied: boolean } {
    return applyRollup(this.sql, rollup, Date.now());
  }

  /** The dashboard's overview across customers, in one read. */
  overview(): Overview {
    return overview(this.sql, Date.now());
  }

  /** Keeps the newest TEST_OUTBOX_KEPT (bounded by construction; the delete walks the primary key). */
  recordTestEmail(email: { to: string; subject: string; text: string; html: string | null }): number {
    const id = this.sql
      .exec("INSERT INTO test_outbox (to_email, subject, text, html, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id", email.to, email.subject, email.text, email.html, Date.now())
      .one().id as number;
    this.sql.exec("DELETE FROM test_outbox WHERE id <= ?", id - TEST_OUTBOX_KEPT);
    return id;
  }

  testOutbox(limit: number) {
    return this.sql.exec("SELECT * FROM test_outbox ORDER BY id DESC LIMIT ?", limit).toArray();
  }
}
