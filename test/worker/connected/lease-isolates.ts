/**
 * Two simulated isolates for the Stripe = edge property (stripe.property.test.ts), each a real
 * LeaseHolder (src/leases/holder.ts) whose syncs reach the customer's object over RPC (leaseSync)
 * through a network the test controls: background syncs (heartbeats, top-ups, returns) and their
 * replies wait in `net` until delivered, lost or duplicated, in any order. A request is paid as
 * src/routes/proxy.ts pays it: from the lease, or the direct debit carried by a sync (retried once,
 * as once() does, when its answer is lost). The worker's own isolate (the `request` op through the
 * gateway) holds leases too; `quiesce` waits for its idle return.
 */
import { runInDurableObject } from "cloudflare:test";
import { expect } from "vitest";
import type { AuthorizeResult, LeaseSyncReply } from "../../../durable-objects/customer-account/contract";
import { type Attempt, LeaseHolder } from "../../../src/leases/holder";
import { customerStub, gateway, withKey } from "../helpers";

export type NetFate = "ok" | "lose" | "duplicate";
/** What happens to a direct request's first sync: answered, lost on the way, or lost after the object applied it. */
export type DirectFate = "ok" | "lost" | "lost_after_commit";

const TTL_MS = 10_000; // LEASES.ttl_ms in vitest.config.ts
const BUCKET_MS = 3_600_000; // usage_bucket_seconds (the default)

interface Isolate {
  name: string;
  holder: LeaseHolder;
  alive: boolean;
  /** Net micro-cents this isolate served from each lease it held (spends less refunds). */
  served: Map<string, number>;
}

interface InFlight {
  to: "object" | "isolate";
  isolate: Isolate;
  attempt: Attempt;
  reply?: LeaseSyncReply;
}

interface LeaseRowView {
  id: string;
  isolate: string;
  status: string;
  granted: number;
  spent: number;
}

/** Across the property's runs: how much the leases really did. */
export const leaseSeen = {
  leasedRuns: 0,
  leasePaid: 0,
  gatewayLeasePaid: 0,
  unleasedWithoutGrant: 0,
  refunds: 0,
  died: 0,
  diedHolding: 0,
  expired: 0,
  lateRefunds: 0,
  expiredUnserved: 0,
  /** Real time spent waiting for the worker's isolate to return its lease. */
  waitedMs: 0,
};

export class LeaseIsolates {
  private readonly net: InFlight[] = [];
  private readonly dead: Isolate[] = [];
  private readonly isolates: Isolate[];
  private count = 0;
  private requests = 0;

  constructor(
    private readonly customerId: string,
    private readonly keyHash: string,
    private readonly clock: () => number,
  ) {
    this.isolates = [this.fresh(0), this.fresh(1)];
  }

  /** A request in isolate `i`; the micro-cents it was charged (0: refused, or refunded after the origin failed). */
  async request(i: number, meter: { name: string; priceMicros: number }, fate: DirectFate, failsAtOrigin: boolean): Promise<number> {
    const iso = this.isolates[i % this.isolates.length]!;
    const now = this.clock();
    const spend = iso.holder.spend(this.keyHash, meter.name, Math.floor(now / BUCKET_MS) * BUCKET_MS, meter.priceMicros, now);
    this.background(iso);
    if (spend) {
      leaseSeen.leasePaid++;
      iso.served.set(spend.leaseId, (iso.served.get(spend.leaseId) ?? 0) + spend.priceMicros);
      if (!failsAtOrigin || !iso.holder.refund(spend)) return spend.priceMicros;
      leaseSeen.refunds++;
      iso.served.set(spend.leaseId, iso.served.get(spend.leaseId)! - spend.priceMicros);
      return 0;
    }
    const direct = { meter: meter.name, priceMicros: meter.priceMicros, requestId: `req_${this.customerId}_${this.requests++}` };
    const first = iso.holder.message(now, this.keyHash, direct);
    if (fate !== "lost") {
      const reply = await this.stub.leaseSync({ ...first.message, now });
      if (fate === "ok") return this.answered(iso, first, reply, now);
    }
    // once(): the sync failed, so it is sent again with retry (the object replays a charge it applied).
    iso.holder.onLost(first);
    const again = iso.holder.message(now, this.keyHash, { ...direct, retry: true });
    return this.answered(iso, again, await this.stub.leaseSync({ ...again.message, now }), now);
  }

  /** The clock moved on: each live isolate renews (heartbeat, low-water mark) or returns an idle lease. */
  heartbeat(): void {
    for (const iso of this.isolates) {
      iso.holder.idle(this.clock());
      this.background(iso);
    }
  }

  /** One message in flight reaches its end (`pick` chooses which: any order), is lost, or arrives twice. */
  async deliver(pick: number, fate: NetFate): Promise<void> {
    if (!this.net.length) return;
    const m = this.net.splice(pick % this.net.length, 1)[0]!;
    if (m.to === "object") {
      if (fate === "lose") return this.lost(m);
      const reply = await this.stub.leaseSync({ ...m.attempt.message, now: this.clock() });
      this.net.push({ ...m, to: "isolate", reply });
      if (fate === "duplicate") this.net.push(m);
    } else if (m.isolate.alive) {
      if (fate === "lose") return this.lost(m);
      m.isolate.holder.onReply(m.attempt, m.reply!, this.clock());
      this.background(m.isolate);
      if (fate === "duplicate") this.net.push(m);
    }
  }

  /** Every message in flight delivered, in order, replies included. */
  async flush(): Promise<void> {
    while (this.net.length) await this.deliver(0, "ok");
  }

  /** Isolate `i` dies holding whatever it holds; a new, empty one takes its place. */
  die(i: number): void {
    const iso = this.isolates[i % this.isolates.length]!;
    leaseSeen.died++;
    if (iso.holder.current) leaseSeen.diedHolding++;
    iso.alive = false;
    this.dead.push(iso);
    this.isolates[i % this.isolates.length] = this.fresh(i);
  }

  /** Isolate `i` returns its lease (as when it goes idle). */
  giveBack(i: number): void {
    const iso = this.isolates[i % this.isolates.length]!;
    iso.holder.lastUsedAt = Number.NEGATIVE_INFINITY;
    iso.holder.idle(this.clock());
    this.background(iso);
  }

  /**
   * Quiescence: every message delivered, every live isolate's lease returned and heard, the worker's
   * own lease returned (its idle watcher, in real time), then past every expiry the object settles
   * dead isolates' reserves as spent. Returns the micro-cents charged for requests made to wake the
   * worker's isolate, and what dead isolates held but never served (charged, by design).
   */
  async quiesce(key: string, advance: (ms: number) => number): Promise<{ consumed: number; unserved: number }> {
    for (let round = 0; round < 10 && (this.net.length || this.isolates.some((i) => i.holder.idle(Number.POSITIVE_INFINITY))); round++) {
      for (const iso of this.isolates) this.giveBack(this.isolates.indexOf(iso));
      await this.flush();
    }
    expect(this.net).toEqual([]);
    const mine = new Set([...this.isolates, ...this.dead].map((i) => i.name));
    let consumed = 0;
    const waitFrom = Date.now();
    // The worker's idle watcher returns its lease about 2 s after its last request; a watcher past its
    // 20 s is woken by one more request (charged like any other).
    for (let wait = 0; (await this.rows()).some((r) => !mine.has(r.isolate)); wait++) {
      if (wait === 40 || wait === 80) {
        const response = await gateway("/v1/search/quiesce", withKey(key));
        if (response.status === 200) consumed += 50_000;
      }
      expect(wait, "the worker's isolate never returned its lease").toBeLessThan(120);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    leaseSeen.waitedMs += Date.now() - waitFrom;
    // Past every expiry by the test's clock. The object's alarm expires a lease at its expires_at by the
    // real clock, which the test cannot move; a sync runs the same expiry (expireDue) at the time it carries.
    const now = advance(2 * TTL_MS + 1);
    await this.stub.leaseSync({ keyHash: this.keyHash, isolate: "quiesce", lease: null, wantMicros: 0, priceMicros: 0, direct: null, rttMs: 0, now });
    expect((await this.stub.leases())!.reserved_micros, "every reserve settled").toBe(0);
    // What is left: only dead isolates' leases, expired, each charged in full; they served part of it.
    let unserved = 0;
    const served = new Map(this.dead.flatMap((i) => [...i.served]));
    for (const row of await this.rows()) {
      expect(row.status).toBe("expired");
      expect(this.dead.some((i) => i.name === row.isolate)).toBe(true);
      // No overspend: what an isolate served from a lease never exceeds what the object granted it.
      expect(served.get(row.id) ?? 0).toBeLessThanOrEqual(row.granted);
      expect(served.get(row.id) ?? 0).toBeGreaterThanOrEqual(row.spent);
      unserved += row.granted - (served.get(row.id) ?? 0);
    }
    leaseSeen.expiredUnserved += unserved;
    const kinds = await runInDurableObject(this.stub, (_instance, state) =>
      state.storage.sql
        .exec("SELECT DISTINCT kind FROM ledger WHERE kind IN ('lease_expired', 'lease_refund')")
        .toArray()
        .map((r) => r.kind as string),
    );
    if (kinds.includes("lease_expired")) leaseSeen.expired++;
    if (kinds.includes("lease_refund")) leaseSeen.lateRefunds++;
    return { consumed, unserved };
  }

  private get stub() {
    return customerStub(this.customerId);
  }

  private rows(): Promise<LeaseRowView[]> {
    return runInDurableObject(this.stub, (_instance, state) => {
      const sql = state.storage.sql;
      if (!sql.exec("SELECT 1 FROM sqlite_master WHERE name = 'leases'").toArray().length) return [];
      return sql.exec("SELECT id, isolate, status, granted, spent FROM leases").toArray() as unknown as LeaseRowView[];
    });
  }

  private answered(iso: Isolate, attempt: Attempt, reply: LeaseSyncReply, now: number): number {
    iso.holder.onReply(attempt, reply, now);
    const decision = reply.decision as AuthorizeResult;
    if (decision.outcome === "ok") return decision.chargedMicros;
    // The gateway answers these 402 (a dispute's frozen credit is not spendable either).
    expect(["insufficient_credit", "payment_overdue"]).toContain(decision.outcome);
    return 0;
  }

  /** A sync due (low-water mark, heartbeat, a return to send) leaves in the background, as waitUntil sends it. */
  private background(iso: Isolate): void {
    const now = this.clock();
    if (iso.alive && iso.holder.wantsSync(now)) this.net.push({ to: "object", isolate: iso, attempt: iso.holder.message(now, this.keyHash, null) });
  }

  /** A lost message is a failed RPC for the isolate that sent it. */
  private lost(m: InFlight): void {
    if (m.isolate.alive) m.isolate.holder.onLost(m.attempt);
  }

  private fresh(i: number): Isolate {
    const name = `sim${i}-${this.customerId}-${this.count++}`;
    return {
      name,
      alive: true,
      served: new Map(),
      holder: new LeaseHolder({ isolate: name, newId: () => `lse_${name}_${this.count++}`, maxLeaseMicros: 200 * 1_000_000 }),
    };
  }
}
