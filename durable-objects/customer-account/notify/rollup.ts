import type { Config } from "../../../src/lib/config";
import { HOUR_MS } from "../../../src/lib/time";
import { directoryFor } from "../../directory/contract";
import type { CustomerRollup } from "../../directory/rollup";
import type { AccountStore } from "../core/account";
import type { Timers } from "../core/timers";
import type { Ledger } from "../credit/ledger";

export const ROLLUP_TIMER = "rollup";
/** Hours older than this are not pushed again (the directory keeps 8 days). */
const PUSH_WINDOW_MS = 8 * 24 * HOUR_MS;

export const ROLLUP_TABLES = {
  v7: `CREATE TABLE IF NOT EXISTS rollup_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,
  pushed_at INTEGER NOT NULL,
  watermark INTEGER NOT NULL
);
INSERT INTO rollup_state (id, seq, pushed_at, watermark) VALUES (1, 0, 0, 0) ON CONFLICT (id) DO NOTHING;
INSERT INTO timers (name, due_at) VALUES ('rollup', 0) ON CONFLICT (name) DO NOTHING;`,
};

/**
 * The overview's numbers across customers come from here: balance, plan, last activity, Stripe
 * report and email health, and requests and charges per meter per hour. A change arms a timer;
 * its handler pushes what changed to the directory, at most once a minute (ROLLUP_INTERVAL_SECONDS),
 * never per request.
 */
export class Rollup {
  /** Whether the timer is armed; unknown (null) after a reload. */
  private pending: boolean | null = null;

  constructor(
    private readonly sql: SqlStorage,
    private readonly deps: {
      env: Env;
      timers: Timers;
      account: AccountStore;
      config: () => Config;
      /** Emails per status, deleted (archived) ones included, so the overview's sums survive retention. */
      emailCounts: () => Record<string, number>;
      reportCounts: () => Record<string, number>;
      ledger: Ledger;
      /** Folds journaled charges into the usage rows before they are read (journal.ts). */
      foldJournal: () => void;
    },
  ) {}

  load(): void {
    this.pending = null;
  }

  private state(): { seq: number; pushed_at: number; watermark: number } {
    return this.sql.exec("SELECT seq, pushed_at, watermark FROM rollup_state WHERE id = 1").one() as never;
  }

  /** Something the overview shows may have changed: push once ROLLUP_INTERVAL_SECONDS (60) after the last push. */
  changed(): void {
    this.pending ??= this.deps.timers.dueAt(ROLLUP_TIMER) !== null;
    if (this.pending) return;
    this.pending = true;
    const interval = this.deps.config().ROLLUP_INTERVAL_SECONDS * 1000;
    this.deps.timers.at(ROLLUP_TIMER, Math.max(Date.now(), this.state().pushed_at + interval));
  }

  /** What the directory gets: usage only for the hours with ledger rows written since the last push. */
  build(now: number): CustomerRollup {
    this.deps.foldJournal();
    const a = this.deps.account.row;
    const { seq, watermark } = this.state();
    // Pending and failed reports are never deleted: counting the rows is enough.
    const reports = this.deps.reportCounts();
    const emails = this.deps.emailCounts();
    const usage = this.deps.ledger.usageByHour(now - PUSH_WINDOW_MS, watermark);
    return {
      customerId: a.customer_id,
      seq: seq + 1,
      plan: a.plan,
      deleted: a.deleted_at !== null,
      balanceMicros: a.balance,
      lastActivityAt: this.deps.ledger.lastActivityAt(),
      reports: { pending: reports.pending ?? 0, failed: reports.failed ?? 0 },
      emails: { sent: (emails.sent ?? 0) + (emails.outbox ?? 0), failed: emails.failed ?? 0, unknown: emails.unknown ?? 0, retrying: emails.retry ?? 0 },
      usage,
    };
  }

  /** Everything again, every hour the directory keeps: for a shard that has never seen this customer (it moved). */
  async pushAll(): Promise<void> {
    this.sql.exec("UPDATE rollup_state SET watermark = 0 WHERE id = 1");
    await this.push();
  }

  /** The timer's handler. A failed push leaves the watermark, so the retry sends the same hours. */
  async push(): Promise<void> {
    if (!this.deps.account.exists) return;
    this.pending = false;
    const now = Date.now();
    const rollup = this.build(now);
    this.sql.exec("UPDATE rollup_state SET seq = ? WHERE id = 1", rollup.seq);
    const { env } = this.deps;
    await directoryFor(env, rollup.customerId, this.deps.config().DIRECTORY_SHARDS).rollup(rollup);
    // Rows written while the push was on its way have updated_at >= now: the next push takes them.
    this.sql.exec("UPDATE rollup_state SET pushed_at = ?, watermark = ? WHERE id = 1", now, now);
  }
}
