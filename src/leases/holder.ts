import type { BucketCounter, LeaseReport, LeaseState, LeaseSyncReply, LeaseSyncRequest } from "../../durable-objects/customer-account/contract";

/** One sync on its way: what it said, and when it left (the lease's local expiry counts from then). */
export interface Attempt {
  message: LeaseSyncRequest;
  sentAt: number;
}

/** A request paid from a lease: what a refund gives back. */
export interface LeaseSpend {
  leaseId: string;
  counter: BucketCounter;
  priceMicros: number;
  balanceMicros: number;
}

interface LocalLease {
  id: string;
  /** The last seq sent. */
  seq: number;
  /** The seq of the last reply applied: an older reply (reordered) changes nothing. */
  applied: number;
  granted: number;
  spent: number;
  counters: Map<string, BucketCounter>;
  /** Send time of the sync whose reply was last applied, + TTL: always before the object's expiry. */
  expiresAt: number;
  syncedAt: number;
  keys: Set<string>;
  hint: number;
  spentAtHint: number;
  heartbeatMs: number;
}

export interface HolderOptions {
  isolate: string;
  newId: () => string;
  maxLeaseMicros: number;
  /** An isolate idle this long returns its lease. */
  idleMs?: number;
}

const IDLE_MS = 2_000;
/** Until a reply says otherwise. */
const DEFAULT_HEARTBEAT_MS = 1_000;
const MAX_CLOSED = 256;

/**
 * One customer's lease in one isolate (docs/scaling.md, "Spend" to "Return"). Spending is plain
 * counters, with no await: concurrent requests in one isolate cannot race, and none waits on
 * another's promise. Clocks are the caller's (`now`), so a test drives it like the runtime does.
 */
export class LeaseHolder {
  private lease: LocalLease | null = null;
  /** Leases this isolate returned or let expire, with the report that says so (sent until heard). */
  private readonly closing = new Map<string, LeaseReport>();
  private readonly closed = new Set<string>();
  private syncing = false;
  private rttMs = 100;
  private seen = 0;
  private seenSince: number | null = null;
  private ratePerMs = 0;
  private priceMicros = 0;
  lastUsedAt = 0;

  constructor(private readonly options: HolderOptions) {}

  /** Pays `priceMicros` from the lease, or null: the request takes the direct path. */
  spend(keyHash: string, meter: string, bucket: number, priceMicros: number, now: number): LeaseSpend | null {
    this.seen++;
    this.seenSince ??= now;
    this.lastUsedAt = now;
    this.priceMicros = Math.max(this.priceMicros, priceMicros);
    const l = this.lease;
    if (!l || l.granted === 0) return null;
    if (now >= l.expiresAt) {
      this.retire();
      return null;
    }
    // Stale: no reply for two heartbeats (a revocation, a deletion or a recall may be waiting). The
    // request goes to the object, so a change stops every isolate within 2·H, cut off or not.
    if (now - l.syncedAt >= 2 * l.heartbeatMs) return null;
    if (!l.keys.has(keyHash) || l.granted - l.spent < priceMicros) return null;
    l.spent += priceMicros;
    const k = `${meter}\t${bucket}`;
    const counter = l.counters.get(k) ?? { meter, bucket, count: 0, micros: 0, refunds: 0, refundMicros: 0 };
    l.counters.set(k, counter);
    counter.count++;
    counter.micros += priceMicros;
    return { leaseId: l.id, counter, priceMicros, balanceMicros: Math.max(0, l.hint - (l.spent - l.spentAtHint)) };
  }

  /** The origin failed a request the lease paid: given back locally (reported with the next sync). */
  refund(spend: LeaseSpend): boolean {
    const live = this.lease?.id === spend.leaseId ? this.lease : null;
    const closing = this.closing.get(spend.leaseId);
    // Once its final report is gone, nothing more can be given back through it.
    if (!live && !closing) return false;
    spend.counter.refunds++;
    spend.counter.refundMicros += spend.priceMicros;
    if (live) live.spent -= spend.priceMicros;
    return true;
  }

  /** Whether a background sync is due: a return to send, the low-water mark, the heartbeat, or no lease yet. */
  wantsSync(now: number): boolean {
    if (this.syncing) return false;
    if (this.closing.size > 0) return true;
    const l = this.lease;
    // A new lease is asked for by the next direct request, in the same call.
    if (!l || l.granted === 0) return false;
    return l.granted - l.spent < this.want(now) / 2 || now - l.syncedAt >= l.heartbeatMs;
  }

  /** Returns the lease when the isolate has been idle; true when there is a return to send. */
  idle(now: number): boolean {
    if (this.lease && now - this.lastUsedAt >= (this.options.idleMs ?? IDLE_MS)) this.retire();
    return this.closing.size > 0;
  }

  /**
   * The next sync, carrying `direct` when a request needs the object now. One lease report per
   * message: a pending return first, else the live lease, else a new lease (seq 0).
   */
  message(now: number, keyHash: string, direct: LeaseSyncRequest["direct"]): Attempt {
    const want = this.want(now);
    let report: LeaseReport | null = null;
    let wantMicros = 0;
    if (!this.syncing) {
      const closing = this.closing.values().next().value as LeaseReport | undefined;
      if (closing) report = { ...closing, counters: closing.counters.map((c) => ({ ...c })) };
      else {
        if (this.lease && now >= this.lease.expiresAt && this.lease.granted > 0) this.retire();
        if (!this.lease) this.lease = this.fresh();
        const l = this.lease;
        l.seq++;
        report = { id: l.id, seq: l.seq, counters: [...l.counters.values()].map((c) => ({ ...c })), close: false };
        wantMicros = want;
      }
      this.syncing = true;
      this.sample(now);
    }
    return {
      sentAt: now,
      message: { keyHash, isolate: this.options.isolate, lease: report, wantMicros, priceMicros: this.priceMicros, direct, rttMs: this.rttMs },
    };
  }

  /** A reply arrived (`now`: when). */
  onReply(attempt: Attempt, reply: LeaseSyncReply, now: number): void {
    const report = attempt.message.lease;
    if (!report) return;
    this.syncing = false;
    this.rttMs = 0.7 * this.rttMs + 0.3 * Math.max(0, now - attempt.sentAt);
    if (report.close) {
      // Heard: the object settled it (a reply to a return is always null).
      this.closing.delete(report.id);
      return;
    }
    const l = this.lease;
    if (!l || l.id !== report.id || this.closed.has(report.id)) return;
    if (!reply.lease) {
      // Gone at the object (expired there, or never granted): never spent from again.
      if (l.granted > 0) this.retire();
      else this.lease = null;
      return;
    }
    if (report.seq <= l.applied) return;
    this.apply(l, reply.lease, attempt.sentAt);
  }

  /** A sync failed or its reply was lost: the next one reports again (counters are cumulative). */
  onLost(attempt: Attempt): void {
    if (attempt.message.lease) this.syncing = false;
  }

  /** A sync is on its way (its reply may grant a lease). */
  get syncInFlight(): boolean {
    return this.syncing;
  }

  /** For the gateway's headers and the tests. */
  get current(): { id: string; granted: number; spent: number; expiresAt: number } | null {
    const l = this.lease;
    return l && l.granted > 0 ? { id: l.id, granted: l.granted, spent: l.spent, expiresAt: l.expiresAt } : null;
  }

  private apply(l: LocalLease, state: LeaseState, sentAt: number): void {
    l.applied = state.seq;
    l.granted = Math.max(l.granted, state.grantedMicros);
    l.expiresAt = sentAt + state.ttlMs;
    l.syncedAt = sentAt;
    l.keys = new Set(state.keyHashes);
    l.hint = state.balanceHintMicros;
    l.spentAtHint = l.spent;
    l.heartbeatMs = state.heartbeatMs;
    if (state.recall) this.retire();
  }

  /** Stops spending from the lease for good; its final report goes with the next sync. */
  private retire(): void {
    const l = this.lease;
    if (!l) return;
    this.lease = null;
    this.closed.add(l.id);
    if (this.closed.size > MAX_CLOSED) this.closed.delete(this.closed.values().next().value as string);
    this.closing.set(l.id, { id: l.id, seq: l.seq + 1, counters: [...l.counters.values()], close: true });
  }

  private fresh(): LocalLease {
    return {
      id: this.options.newId(),
      seq: -1,
      applied: -1,
      granted: 0,
      spent: 0,
      counters: new Map(),
      expiresAt: 0,
      syncedAt: 0,
      keys: new Set(),
      hint: 0,
      spentAtHint: 0,
      heartbeatMs: DEFAULT_HEARTBEAT_MS,
    };
  }

  private sample(now: number): void {
    if (this.seenSince !== null && now > this.seenSince) {
      const rate = this.seen / (now - this.seenSince);
      this.ratePerMs = this.ratePerMs === 0 ? rate : 0.5 * this.ratePerMs + 0.5 * rate;
      this.seen = 0;
      this.seenSince = now;
    }
  }

  /** want = 2 · (n + 3√n) · price with n requests per round trip; at least 2 prices, at most the configured maximum. */
  private want(_now: number): number {
    if (this.priceMicros === 0) return 0;
    const n = this.ratePerMs * (this.rttMs + 10);
    const micros = Math.ceil(2 * (n + 3 * Math.sqrt(n)) * this.priceMicros);
    return Math.min(this.options.maxLeaseMicros, Math.max(2 * this.priceMicros, micros));
  }
}
