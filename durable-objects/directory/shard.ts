import type { Config } from "../../src/lib/config";
import { log } from "../../src/lib/log";
import type { ReportBatching } from "../../src/lib/stripe-budget";
import { MINUTE_MS } from "../../src/lib/time";
import { customerStub } from "../customer-account/contract";
import type { ShardBudget } from "./budget";
import { type Placement, shardOf } from "./placement";

export const SHARD_TABLES = {
  v2: `
CREATE TABLE IF NOT EXISTS shard_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  shard INTEGER NOT NULL DEFAULT 0,
  shards INTEGER NOT NULL DEFAULT 1,
  widest INTEGER NOT NULL DEFAULT 1,
  placed_for INTEGER NOT NULL DEFAULT 1,
  move_cursor TEXT NOT NULL DEFAULT '',
  share_ppm INTEGER NOT NULL DEFAULT 1000000,
  shrink_divisor INTEGER NOT NULL DEFAULT 1,
  shrunk_until INTEGER NOT NULL DEFAULT 0,
  batching_until INTEGER NOT NULL DEFAULT 0
);
INSERT INTO shard_state (id) VALUES (1) ON CONFLICT (id) DO NOTHING;
ALTER TABLE customers ADD COLUMN held_since INTEGER;
CREATE INDEX IF NOT EXISTS customers_held ON customers(held_since) WHERE held_since IS NOT NULL;
ALTER TABLE customers ADD COLUMN work_at INTEGER;
CREATE INDEX IF NOT EXISTS customers_work ON customers(work_at) WHERE work_at IS NOT NULL;`,
};

/** Once on, batching stays on at least this long (no flapping from one sweep to the next). */
const BATCHING_MIN_MS = 10 * MINUTE_MS;
/** Rows looked at per step of a move after DIRECTORY_SHARDS changed. */
const MOVE_SCAN = 1_000;

export interface ReportDelay {
  batching: boolean;
  due_now: number;
  /** How long the longest-waiting due customer has waited for the sweep. */
  oldest_due_seconds: number;
  /** How long the longest-held usage (batching) has waited since its last report. */
  oldest_held_seconds: number;
}

/**
 * What a directory shard knows of itself: which shard it is (told by the cron), whether its
 * customers' reports are batched, and the move of customers that belong to another shard after
 * DIRECTORY_SHARDS changed.
 */
export class Shard {
  constructor(
    private readonly sql: SqlStorage,
    private readonly env: Env,
    private readonly config: () => Config,
    private readonly budget: ShardBudget,
  ) {}

  private row(): { shard: number; shards: number; widest: number; placed_for: number; move_cursor: string; batching_until: number } {
    return this.sql.exec("SELECT shard, shards, widest, placed_for, move_cursor, batching_until FROM shard_state WHERE id = 1").one() as never;
  }

  /** The cron tells every shard where it stands; shard 0 keeps the widest count ever used (to drain shards past a smaller one). */
  place(p: Placement): number {
    const r = this.row();
    const widest = Math.max(r.widest, p.shards);
    if (r.shard !== p.shard || r.shards !== p.shards || widest !== r.widest) {
      this.sql.exec("UPDATE shard_state SET shard = ?, shards = ?, widest = ? WHERE id = 1", p.shard, p.shards, widest);
    }
    this.budget.setShare(p.sharePpm);
    return widest;
  }

  /** Whether customers here belong elsewhere since DIRECTORY_SHARDS changed and have not all moved. */
  moving(): boolean {
    const r = this.row();
    return r.placed_for !== r.shards;
  }

  /**
   * Moves up to `limit` customers that belong to another shard: each re-pushes its snapshot and
   * its whole rollup to its shard (its runCycle ends with the push), then its rows here go. Returns
   * whether more are left.
   */
  async moveSome(limit: number): Promise<boolean> {
    const { shard, shards, move_cursor } = this.row();
    const rows = this.sql.exec("SELECT id FROM customers WHERE id > ? ORDER BY id LIMIT ?", move_cursor, MOVE_SCAN).toArray();
    let cursor = move_cursor;
    let moved = 0;
    for (const row of rows) {
      const id = row.id as string;
      if (shardOf(id, shards) !== shard) {
        if (moved >= limit) break;
        try {
          // Its cycle ends with a snapshot push to its new shard, which, new to it, takes the whole rollup too.
          await customerStub(this.env, id).runCycle(Date.now());
          this.remove(id);
          moved++;
        } catch (error) {
          log.warn(`directory: moving ${id} to shard ${shardOf(id, shards)} failed; tried again`, error);
          break;
        }
      }
      cursor = id;
    }
    const done = rows.length < MOVE_SCAN && cursor === ((rows.at(-1)?.id as string | undefined) ?? cursor);
    if (done) this.sql.exec("UPDATE shard_state SET placed_for = shards, move_cursor = '' WHERE id = 1");
    else this.sql.exec("UPDATE shard_state SET move_cursor = ? WHERE id = 1", cursor);
    return !done;
  }

  /** A customer that now lives in another shard. */
  remove(customerId: string): void {
    for (const table of ["customers", "customer_rollup"]) this.sql.exec(`DELETE FROM ${table} WHERE ${table === "customers" ? "id" : "customer_id"} = ?`, customerId);
    this.sql.exec("DELETE FROM cohort_members WHERE customer_id = ?", customerId);
    this.sql.exec("DELETE FROM usage_hourly WHERE customer_id = ?", customerId);
  }

  /**
   * Reports are batched while the customers due here outnumber what this shard's share of the
   * balance-transaction budget can report in a minute (the cron's period); once off, the usage
   * held back is due at once.
   */
  batching(now: number): ReportBatching | null {
    const config = this.config();
    if (!config.stripeEnabled) return null;
    const capacity = Math.floor(this.budget.rates(now).endpoint * 60);
    const due = this.sql.exec("SELECT COUNT(*) AS n FROM (SELECT 1 FROM customers WHERE due_at IS NOT NULL AND due_at <= ? LIMIT ?)", now, capacity + 1).one().n as number;
    let until = this.row().batching_until;
    if (due > capacity) {
      if (until < now + BATCHING_MIN_MS / 2) {
        until = now + BATCHING_MIN_MS;
        this.sql.exec("UPDATE shard_state SET batching_until = ? WHERE id = 1", until);
        log.info(`directory shard: ${due} customers due, more than the ${capacity} reports a minute the budget allows: reports batched`);
      }
    } else if (until !== 0 && until <= now) {
      this.sql.exec("UPDATE shard_state SET batching_until = 0 WHERE id = 1");
      this.sql.exec("UPDATE customers SET due_at = ? WHERE held_since IS NOT NULL AND (due_at IS NULL OR due_at > ?)", now, now);
      until = 0;
    }
    if (until <= now) return null;
    const b = config.stripeBudget;
    return { minReportMicros: b.minReportMicros, maxReportDelayMs: b.maxReportDelayMs };
  }

  /** Whether reports are batched here at `now` (as last decided; batching() decides). */
  batchingAt(now: number): boolean {
    return this.row().batching_until > now;
  }

  reportDelay(now: number): ReportDelay {
    const one = (q: string, ...args: SqlStorageValue[]) => this.sql.exec(q, ...args).one();
    const oldestDue = one("SELECT MIN(due_at) AS t FROM customers WHERE due_at IS NOT NULL AND due_at <= ?", now).t as number | null;
    const oldestHeld = one("SELECT MIN(held_since) AS t FROM customers WHERE held_since IS NOT NULL").t as number | null;
    return {
      batching: this.batchingAt(now),
      due_now: one("SELECT COUNT(*) AS n FROM (SELECT 1 FROM customers WHERE due_at IS NOT NULL AND due_at <= ? LIMIT 1000000)", now).n as number,
      oldest_due_seconds: oldestDue === null ? 0 : Math.round((now - oldestDue) / 1000),
      oldest_held_seconds: oldestHeld === null ? 0 : Math.round((now - oldestHeld) / 1000),
    };
  }
}
