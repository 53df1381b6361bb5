import type { Config } from "../../src/lib/config";
import { type BudgetAsk, type BudgetGrant, METER_EVENTS_ENDPOINT } from "../../src/lib/stripe-budget";
import { MINUTE_MS } from "../../src/lib/time";

/** A 429 from Stripe divides the budget by two, down to an eighth, for this long after the last one. */
const SHRINK_MS = MINUTE_MS;
const MAX_SHRINK_DIVISOR = 8;
/** A refusal tells its caller to come back after this long at least, and at most this long. */
const MIN_RETRY_MS = 250;
const MAX_RETRY_MS = MINUTE_MS;
/** Counts are kept for this window and the one before: "the last minute" is between 30 and 60 s. */
const WINDOW_MS = 30_000;

/**
 * A bucket holds a tenth of a second of its rate, but at least its rate up to BURST_CALLS (and at
 * least one call): over any second Stripe then sees at most 1.1 × the rate (or the rate plus 4)
 * from one bucket, never a second's burst on top of a second's rate, while at a sandbox's 10 a
 * second a cycle needing a report and a reconcile still finds both.
 */
const BURST_CALLS = 4;
const burst = (rate: number) => Math.max(1, Math.min(rate, BURST_CALLS), rate / 10);

/** Tokens are call counts, not money: fractions of a call are fine here. */
interface Bucket {
  tokens: number;
  at: number;
}

interface Window {
  start: number;
  asked: number;
  granted: number;
  refused: number;
  rateLimited: number;
}

export interface BudgetStatus {
  share: number;
  calls_per_second: number;
  per_endpoint_per_second: number;
  meter_events_per_second: number;
  shrunk_by: number;
  shrunk_until: number | null;
  last_minute: { seconds: number; asked: number; granted: number; refused: number; stripe_429: number };
}

export interface BudgetRates {
  total: number;
  endpoint: number;
  meter: number;
  /** Calls in the total bucket background work leaves for Checkout. */
  reserve: number;
}

/**
 * This shard's part of the Stripe call budget: token buckets in the object's memory (the whole
 * budget's rate × this shard's share), one for all calls, one per endpoint and one for meter
 * events. Only the shrink after a 429 and the share are stored (table shard_state): a bucket lost
 * with the object's memory starts full again, as it would have refilled while the object was idle.
 */
export class ShardBudget {
  private readonly buckets = new Map<string, Bucket>();
  private current: Window = { start: 0, asked: 0, granted: 0, refused: 0, rateLimited: 0 };
  private previous: Window | null = null;

  constructor(
    private readonly sql: SqlStorage,
    private readonly config: () => Config,
  ) {}

  private state(): { share_ppm: number; shrink_divisor: number; shrunk_until: number } {
    return this.sql.exec("SELECT share_ppm, shrink_divisor, shrunk_until FROM shard_state WHERE id = 1").one() as never;
  }

  rates(now: number): BudgetRates {
    const b = this.config().stripeBudget;
    const s = this.state();
    const factor = s.share_ppm / 1_000_000 / (now < s.shrunk_until ? s.shrink_divisor : 1);
    const total = b.callsPerSecond * factor;
    // Checkout's reserve: its share of what the total bucket holds, a whole call at least.
    const reserve = b.checkoutReservedPercent > 0 ? Math.max(1, (burst(total) * b.checkoutReservedPercent) / 100) : 0;
    return { total, endpoint: Math.min(b.perEndpointPerSecond, b.callsPerSecond) * factor, meter: b.meterEventsPerSecond * factor, reserve };
  }

  /**
   * The bucket, refilled to `now`; it holds burst(rate) calls,
   * plus `above`: the total bucket holds Checkout's reserve on top, so background work always has
   * a whole call to take, however small this shard's share.
   */
  private bucket(name: string, rate: number, now: number, above = 0): Bucket {
    const capacity = burst(rate) + above;
    let bucket = this.buckets.get(name);
    if (!bucket) {
      bucket = { tokens: capacity, at: now };
      this.buckets.set(name, bucket);
    }
    // A caller's clock behind the last one's (a cron's scheduled time, say) refills nothing; it never drains.
    bucket.tokens = Math.min(capacity, bucket.tokens + (Math.max(0, now - bucket.at) / 1000) * rate);
    bucket.at = Math.max(bucket.at, now);
    return bucket;
  }

  /** Windows start at multiples of WINDOW_MS, so "the one before" holds only the 30 s before this one. */
  private window(now: number): Window {
    const start = now - (now % WINDOW_MS);
    if (this.current.start !== start) {
      this.previous = this.current.start === start - WINDOW_MS ? this.current : null;
      this.current = { start, asked: 0, granted: 0, refused: 0, rateLimited: 0 };
    }
    return this.current;
  }

  /** Grants what the buckets hold of `ask`, in its order; what is left waits (retryAfterMs). */
  take(ask: BudgetAsk, now: number): Omit<BudgetGrant, "batching"> {
    const rates = this.rates(now);
    const w = this.window(now);
    const total = this.bucket("total", rates.total, now, rates.reserve);
    const floor = ask.priority === "interactive" ? 0 : rates.reserve;
    const calls: Record<string, number> = {};
    let waitMs = 0;
    for (const [endpoint, wanted] of Object.entries(ask.calls)) {
      const meter = endpoint === METER_EVENTS_ENDPOINT;
      const own = meter ? this.bucket("meter", rates.meter, now) : this.bucket(`endpoint ${endpoint}`, rates.endpoint, now);
      const free = meter ? Math.floor(own.tokens) : Math.floor(Math.min(own.tokens, total.tokens - floor));
      const granted = Math.max(0, Math.min(wanted, free));
      own.tokens -= granted;
      if (!meter) total.tokens -= granted;
      if (granted > 0) calls[endpoint] = granted;
      w.asked += wanted;
      w.granted += granted;
      if (granted < wanted) {
        w.refused += wanted - granted;
        // Until the missing calls have refilled in the slower bucket, spread by the refusals so far.
        const rate = meter ? rates.meter : Math.min(rates.endpoint, rates.total);
        waitMs = Math.max(waitMs, ((wanted - granted + w.refused / 4) / Math.max(rate, 0.001)) * 1000);
      }
    }
    return { calls, retryAfterMs: waitMs === 0 ? 0 : Math.round(Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, waitMs))) };
  }

  /**
   * How fast the sweep visits customers: a visit mostly makes one call to one endpoint, in
   * background's part of the total; a tenth slower than the buckets refill, so each visit finds
   * its call there.
   */
  visitsPerSecond(now: number): number {
    const rates = this.rates(now);
    return Math.max(0.01, 0.9 * Math.min(rates.endpoint, rates.total * (1 - this.config().stripeBudget.checkoutReservedPercent / 100)));
  }

  /** Calls background work may take right now. */
  available(now: number): number {
    const rates = this.rates(now);
    return Math.max(0, Math.floor(this.bucket("total", rates.total, now, rates.reserve).tokens - rates.reserve));
  }

  /** Stripe answered 429: half the rate for a minute after the last one (down to an eighth); a bucket never holds more than a second of its new rate. */
  rateLimited(now: number): void {
    const s = this.state();
    const divisor = Math.min(MAX_SHRINK_DIVISOR, now < s.shrunk_until ? s.shrink_divisor * 2 : 2);
    this.sql.exec("UPDATE shard_state SET shrink_divisor = ?, shrunk_until = ? WHERE id = 1", divisor, now + SHRINK_MS);
    this.window(now).rateLimited++;
  }

  /**
   * The cron's rebalancing: this shard's fraction of the whole budget, in millionths. Written only
   * when it changes: an UPDATE that matches a row writes it (a billed row) even when the value is
   * the same, and the cron tells every shard its share every run.
   */
  setShare(sharePpm: number): void {
    const share = Math.max(1, Math.min(1_000_000, Math.round(sharePpm)));
    this.sql.exec("UPDATE shard_state SET share_ppm = ? WHERE id = 1 AND share_ppm != ?", share, share);
  }

  /** Calls asked for over the last minute (what the cron shares the budget by). */
  demand(now: number): number {
    const w = this.window(now);
    return w.asked + (this.previous?.asked ?? 0);
  }

  status(now: number): BudgetStatus {
    const rates = this.rates(now);
    const s = this.state();
    const w = this.window(now);
    const sum = (k: "asked" | "granted" | "refused" | "rateLimited") => w[k] + (this.previous?.[k] ?? 0);
    return {
      share: s.share_ppm / 1_000_000,
      calls_per_second: round(rates.total),
      per_endpoint_per_second: round(rates.endpoint),
      meter_events_per_second: round(rates.meter),
      shrunk_by: now < s.shrunk_until ? s.shrink_divisor : 1,
      shrunk_until: now < s.shrunk_until ? s.shrunk_until : null,
      last_minute: {
        seconds: Math.max(1, Math.round((now - (this.previous ?? w).start) / 1000)),
        asked: sum("asked"),
        granted: sum("granted"),
        refused: sum("refused"),
        stripe_429: sum("rateLimited"),
      },
    };
  }
}

const round = (n: number) => Math.round(n * 1000) / 1000;
