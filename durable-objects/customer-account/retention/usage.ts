import type { Config } from "../../../src/lib/config";
import { DAY_MS } from "../../../src/lib/time";
import type { Timers } from "../core/timers";
import type { Ledger } from "../credit/ledger";
import type { ModelUsage } from "../request/model-usage";

export const USAGE_RETENTION_TIMER = "usage_retention";

/** The bucket of the carried-forward row: before every real bucket, so no time window ever reads it. */
export const CARRIED_BUCKET = 0;

export const USAGE_RETENTION_TABLES = {
  // Usage buckets by age. The timer row makes an upgraded object fold its old buckets once.
  v10: `CREATE INDEX IF NOT EXISTS ledger_usage_bucket ON ledger(bucket) WHERE kind IN ('usage', 'refund');
INSERT INTO timers (name, due_at) VALUES ('${USAGE_RETENTION_TIMER}', 0) ON CONFLICT (name) DO NOTHING;`,
};

const BATCH = 500;

/**
 * Usage and refund rows (one per meter per bucket) older than `PRICING.usage_retention_days` are
 * folded, from a timer, into one carried-forward row per kind and meter (bucket 0). Amounts move
 * between ledger rows in one synchronous step, so the ledger's sum (the balance), the request
 * counts and the totals per kind stay exactly what they were; only the per-bucket detail of old
 * buckets goes (token usage per model folds the same way, model_usage in request/model-usage.ts). Every other ledger entry (grants, clawbacks, notes…) is kept: it is one row per
 * money event, not per unit of time.
 */
export class UsageRetention {
  constructor(
    private readonly ledger: Ledger,
    private readonly modelUsage: ModelUsage,
    private readonly timers: Timers,
    private readonly config: () => Config,
  ) {}

  private get retentionMs(): number {
    return this.config().PRICING.usage_retention_days * DAY_MS;
  }

  /** The timer's handler: folds one batch of old buckets; sets the timer for the next. Returns rows folded. */
  fold(now: number): number {
    const retentionMs = this.retentionMs;
    const rows = this.ledger.oldUsageRows(CARRIED_BUCKET, now - retentionMs, BATCH);
    const carried = new Map<string, { kind: string; meter: string; amount: number; count: number; from: number; to: number; through: number }>();
    for (const r of rows) {
      const key = `${r.kind}\u0000${r.meter}`;
      const c = carried.get(key) ?? { kind: r.kind as string, meter: r.meter as string, amount: 0, count: 0, from: Infinity, to: 0, through: 0 };
      c.amount += r.amount as number;
      c.count += r.count as number;
      c.from = Math.min(c.from, r.created_at as number);
      c.to = Math.max(c.to, r.updated_at as number);
      c.through = Math.max(c.through, r.bucket as number);
      carried.set(key, c);
    }
    this.ledger.carryForward(rows, CARRIED_BUCKET, carried.values());
    this.modelUsage.fold(CARRIED_BUCKET, now - retentionMs);
    this.timers.set(USAGE_RETENTION_TIMER, rows.length === BATCH ? now + 1_000 : this.nextAt(now));
    return rows.length;
  }

  /** When the oldest bucket is due to fold, or null with no buckets. */
  private nextAt(now: number): number | null {
    const oldest = this.ledger.oldestUsageBucket(CARRIED_BUCKET);
    return oldest === null ? null : Math.max(oldest + this.retentionMs, now + 1_000);
  }

  /**
   * Usage rows are written on the request path, which arms no timer for this; after each alarm
   * run the timer is set again if it is not (one indexed lookup, only while it is unset).
   */
  keepArmed(now: number): void {
    if (this.timers.dueAt(USAGE_RETENTION_TIMER) !== null) return;
    const at = this.nextAt(now);
    if (at !== null) this.timers.set(USAGE_RETENTION_TIMER, at);
  }
}
