import { centsToMicros } from "../../../src/lib/money";
import { DAY_MS } from "../../../src/lib/time";
import type { LeaseSyncReply } from "../contract";
import type { AccountContext } from "../core/context";
import { authorize } from "../request/authorize";
import { Demand } from "./demand";
import { type LeaseRow, LeaseStore } from "./lease-store";
import { expire, freeMicros, giveBack, reserve, settle } from "./money";
import type { LeaseState, LeaseSyncRequest } from "./protocol";

export const LEASE_TIMER = "leases";
/** An expired lease is kept this long for a late final report (an isolate cut off, not dead). */
const FORGET_AFTER_MS = DAY_MS;

export type LeaseMode = "on" | "auto" | "off";

const demands = new WeakMap<AccountContext, Demand>();
const demandOf = (context: AccountContext) => {
  const known = demands.get(context);
  if (known) return known;
  const d = new Demand();
  demands.set(context, d);
  return d;
};

/** The customer's `payg_leases` (Stripe metadata or the admin API's metadata); off unless set. */
export function leaseMode(context: AccountContext): LeaseMode {
  const value = context.account.profile().metadata.payg_leases;
  return value === "on" || value === "auto" ? value : "off";
}

/** The object waits this long past the isolate's own expiry: clock rates and coarse clocks. */
export const graceMs = (ttlMs: number) => Math.max(1_000, Math.ceil(ttlMs / 10));

/**
 * The one lease RPC: the direct debit exactly as authorize decides it, then the lease's report,
 * return, grant or top-up, all in one synchronous step (the lease row is durable before the reply
 * leaves, like the debit).
 */
export function leaseSync(context: AccountContext, input: LeaseSyncRequest): LeaseSyncReply {
  const now = input.now ?? Date.now();
  const decision = input.direct
    ? authorize(context, {
        keyHash: input.keyHash,
        meter: input.direct.meter,
        priceMicros: input.direct.priceMicros,
        requestId: input.direct.requestId,
        now,
        ...(input.direct.retry ? { retry: true } : {}),
      })
    : null;
  const config = context.config.LEASES;
  if (!config || !context.account.exists) return { decision, lease: null };
  const lease = context.atomically(() => syncLease(context, config, input, now, decision?.outcome === "ok" ? 1 : 0));
  return { decision, lease };
}

type LeaseConfig = NonNullable<AccountContext["config"]["LEASES"]>;

function syncLease(context: AccountContext, config: LeaseConfig, input: LeaseSyncRequest, now: number, direct: number): LeaseState | null {
  const store = new LeaseStore(context.sql);
  let moved = expireDue(context, store, now);
  const report = input.lease;
  const row = report ? store.get(report.id) : null;
  let requests = direct;
  try {
    if (report && row) {
      if (report.seq > row.seq) {
        const before = totalCount(row);
        settle(context, row, report.counters, now);
        requests += totalCount(row) - before;
        row.seq = report.seq;
        row.synced_at = now;
        row.rtt_ms = Math.round(input.rttMs);
        if (report.close) {
          // Returned: the isolate will never spend from what is left; after an expiry, given back late.
          giveBack(context, row, row.granted - row.spent, row.status === "live" ? "lease" : "lease_refund", now);
          store.delete(row.id);
          moved = true;
          return null;
        }
        if (row.status === "expired") {
          store.put(row);
          return null;
        }
      } else if (row.status === "expired" || report.close) return null;
    } else if (report && (report.seq > 0 || report.close)) {
      // Returned, expired and forgotten, or never granted: the isolate starts a new lease.
      return null;
    }
    demandOf(context).record(now, requests, input.rttMs);
    // A customer without leases: nothing written, the direct path exactly as today.
    if (!row && (!report || !allowed(context, now))) return null;
    return grantOrRecall(context, store, config, input, row, now, () => (moved = true));
  } finally {
    if (moved) context.changed(now);
    const due = store.nextDue(FORGET_AFTER_MS);
    if (due !== context.timers.dueAt(LEASE_TIMER)) context.timers.set(LEASE_TIMER, due);
  }
}

const totalCount = (row: LeaseRow) => Object.values(row.counters).reduce((n, c) => n + c.count, 0);

function grantOrRecall(
  context: AccountContext,
  store: LeaseStore,
  config: LeaseConfig,
  input: LeaseSyncRequest,
  row: LeaseRow | null,
  now: number,
  moved: () => void,
): LeaseState | null {
  const report = input.lease!;
  const maxMicros = centsToMicros(config.max_lease_cents);
  const want = Math.max(0, Math.min(Math.floor(input.wantMicros), maxMicros));
  const price = Math.max(1, Math.floor(input.priceMicros));
  const live = store.live();
  const wants = live.reduce((sum, l) => sum + (l.id === row?.id ? 0 : l.want), 0) + want;
  const free = freeMicros(context, now);
  const recall = !allowed(context, now) || free < wants;
  if (!row) {
    if (recall || want === 0 || live.length >= config.max_leases) return null;
    row = {
      id: report.id,
      isolate: input.isolate,
      status: "live",
      seq: report.seq,
      granted: 0,
      spent: 0,
      want,
      receipt: [],
      counters: {},
      rtt_ms: Math.round(input.rttMs),
      created_at: now,
      synced_at: now,
      expires_at: now,
    };
  }
  const top = recall ? 0 : Math.min(want - (row.granted - row.spent), Math.floor(free / 2));
  if (top >= 2 * price) {
    reserve(context, row, top, now);
    moved();
  } else if (row.granted === 0) return null;
  row.want = want;
  row.expires_at = Math.max(row.expires_at, now + config.ttl_ms + graceMs(config.ttl_ms));
  store.put(row);
  const keyHashes = context.keys.leasable();
  return {
    id: row.id,
    seq: report.seq,
    grantedMicros: row.granted,
    ttlMs: config.ttl_ms,
    heartbeatMs: config.heartbeat_ms,
    epoch: store.epoch(fingerprint(context, keyHashes)),
    keyHashes,
    balanceHintMicros: Math.max(0, freeMicros(context, now)),
    recall,
  };
}

/**
 * Whether this customer may hold leases now: turned on (or `auto` and paying), prepaid, not
 * deleted, its currency ours, no dispute open. Anything else recalls every lease at its next sync.
 */
function allowed(context: AccountContext, now: number): boolean {
  const a = context.account.row;
  const mode = leaseMode(context);
  if (mode === "off" || (mode === "auto" && !demandOf(context).pays(now))) return false;
  return a.deleted_at === null && a.plan === "prepaid" && context.currencyMismatch() === null && !context.grants.all.some((g) => g.disputed > 0);
}

function fingerprint(context: AccountContext, keyHashes: string[]): string {
  const a = context.account.row;
  return [a.deleted_at ?? "", a.plan, context.grants.all.some((g) => g.disputed > 0) ? "disputed" : "", ...keyHashes].join(",");
}

/** Leases past their expiry at the object: their isolates can no longer spend from them; settled as spent. */
function expireDue(context: AccountContext, store: LeaseStore, now: number): boolean {
  const due = store.expiredBy(now);
  for (const row of due) {
    expire(context, row, now);
    store.put(row);
  }
  return due.length > 0;
}

/** The leases timer (the alarm): expires what is due, forgets old expired leases. */
export function runLeaseTimer(context: AccountContext, now: number): void {
  const store = new LeaseStore(context.sql);
  context.atomically(() => {
    if (expireDue(context, store, now)) context.changed(now);
    store.forget(now - FORGET_AFTER_MS);
    context.timers.set(LEASE_TIMER, store.nextDue(FORGET_AFTER_MS));
  });
}

/** The live leases and their reserves, for the admin API and the dashboard. */
export function leaseView(context: AccountContext, now = Date.now()) {
  const store = new LeaseStore(context.sql);
  const live = store.live();
  return {
    mode: leaseMode(context),
    reserved_micros: live.reduce((s, l) => s + l.granted - l.spent, 0),
    leases: live.map((l) => ({
      id: l.id,
      isolate: l.isolate,
      granted_micros: l.granted,
      spent_micros: l.spent,
      reserve_micros: l.granted - l.spent,
      want_micros: l.want,
      rtt_ms: l.rtt_ms,
      synced_at: l.synced_at,
      expires_in_ms: Math.max(0, l.expires_at - now),
    })),
  };
}
