import { generateApiKey, newId, sha256Hex } from "../../../src/lib/api-key-format";
import { centsToMicros, formatCents } from "../../../src/lib/money";
import { DAY_MS } from "../../../src/lib/time";

export const KEY_TABLES = {
  v1: `
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  name TEXT,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);`,
  // Keys issued before KEY_SIGNING_SECRET have no mac (signed = 0); the admin API lists them for rotation.
  v3: `
ALTER TABLE api_keys ADD COLUMN signed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN spend_cap_cents INTEGER;
ALTER TABLE api_keys ADD COLUMN cap_period TEXT;
ALTER TABLE api_keys ADD COLUMN period_start INTEGER;
ALTER TABLE api_keys ADD COLUMN period_spend INTEGER NOT NULL DEFAULT 0;`,
  // When a cap was set on an uncapped key (or changed period): charges made before were not counted,
  // so their refunds give no room back.
  v11: `
ALTER TABLE api_keys ADD COLUMN cap_counted_from INTEGER;`,
};

export type CapPeriod = "day" | "month";

export interface KeyRecord {
  id: string;
  hash: string;
  prefix: string;
  name: string | null;
  created_at: number;
  revoked_at: number | null;
  /** 1 when the key carries a mac of KEY_SIGNING_SECRET, so the worker checks it before the object. */
  signed: number;
  spend_cap_cents: number | null;
  cap_period: CapPeriod | null;
  /** Start (ms) of the period `period_spend` counts. */
  period_start: number | null;
  /** Micro-cents spent through this key in that period. */
  period_spend: number;
  /** Charges before this time (ms) were not counted against the cap; null: every charge was. */
  cap_counted_from: number | null;
}

/** The start of the UTC day or month `nowMs` falls in. */
export function periodStart(period: CapPeriod, nowMs: number): number {
  const d = new Date(nowMs);
  return period === "day" ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) : Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

/** The end of the period that starts at `start`. */
export function periodEnd(period: CapPeriod, start: number): number {
  const d = new Date(start);
  return period === "day" ? start + DAY_MS : Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

/** Micro-cents a key has spent in the period `nowMs` falls in. */
export function spentThisPeriod(key: KeyRecord, nowMs: number): number {
  if (!key.cap_period || key.period_start === null) return 0;
  return key.period_start === periodStart(key.cap_period, nowMs) ? key.period_spend : 0;
}

/** Micro-cents the key may still spend this period (Infinity without a cap). */
export function capHeadroom(key: KeyRecord, nowMs: number): number {
  if (key.spend_cap_cents === null || !key.cap_period) return Infinity;
  return Math.max(0, centsToMicros(key.spend_cap_cents) - spentThisPeriod(key, nowMs));
}

/** Whether a charge of `price` keeps the key within its cap (no I/O). */
export function withinCap(key: KeyRecord, price: number, nowMs: number): boolean {
  if (key.spend_cap_cents === null || !key.cap_period || price === 0) return true;
  return spentThisPeriod(key, nowMs) + price <= centsToMicros(key.spend_cap_cents);
}

/**
 * API keys, stored only as SHA-256 hashes (the key is shown once), all held in memory in step with
 * the table so the request path reads no row to find one. A key may carry a spend cap per UTC day
 * or month inside the customer's one balance.
 */
export class KeyStore {
  private keysByHash = new Map<string, KeyRecord>();
  /** Keys whose period spend changed while deferring (journaled charges), written by flush(). */
  private readonly pending = new Set<KeyRecord>();
  private deferring = false;
  /** Called before a write that is not deferred: the journal folds in first (journal.ts). */
  beforeWrite: () => void = () => {};

  constructor(
    private readonly sql: SqlStorage,
    private readonly signingSecret: () => string | undefined,
  ) {}

  load(): void {
    this.keysByHash = new Map((this.sql.exec("SELECT * FROM api_keys").toArray() as unknown as KeyRecord[]).map((k) => [k.hash, { ...k }]));
    this.pending.clear();
  }

  async create(
    customerId: string,
    input: { name: string | null; spendCapCents?: number | null; capPeriod?: CapPeriod | null },
  ): Promise<{ id: string; key: string; prefix: string; created_at: number; signed: boolean }> {
    const { key, prefix, signed } = await generateApiKey(customerId, this.signingSecret());
    const hash = await sha256Hex(key);
    const record: KeyRecord = {
      id: newId("key"),
      hash,
      prefix,
      name: input.name,
      created_at: Date.now(),
      revoked_at: null,
      signed: signed ? 1 : 0,
      spend_cap_cents: input.spendCapCents ?? null,
      cap_period: input.spendCapCents == null ? null : (input.capPeriod ?? "month"),
      period_start: null,
      period_spend: 0,
      cap_counted_from: null,
    };
    this.sql.exec(
      "INSERT INTO api_keys (id, hash, prefix, name, created_at, signed, spend_cap_cents, cap_period) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      record.id,
      hash,
      prefix,
      record.name,
      record.created_at,
      record.signed,
      record.spend_cap_cents,
      record.cap_period,
    );
    this.keysByHash.set(hash, record);
    return { id: record.id, key, prefix, created_at: record.created_at, signed };
  }

  byKeyId(keyId: string): KeyRecord | undefined {
    return this.byId(keyId);
  }

  private byId(keyId: string): KeyRecord | undefined {
    for (const k of this.keysByHash.values()) if (k.id === keyId) return k;
    return undefined;
  }

  revoke(keyId: string): boolean {
    const key = this.byId(keyId);
    if (!key || key.revoked_at !== null) return false;
    key.revoked_at = Date.now();
    this.sql.exec("UPDATE api_keys SET revoked_at = ? WHERE id = ?", key.revoked_at, keyId);
    return true;
  }

  /** Sets or clears (null) a key's cap; false when there is no such active key. */
  setCap(keyId: string, spendCapCents: number | null, capPeriod: CapPeriod | null, nowMs = Date.now()): boolean {
    const key = this.byId(keyId);
    if (!key || key.revoked_at !== null) return false;
    this.beforeWrite();
    const was = key.cap_period;
    const next = spendCapCents === null ? null : (capPeriod ?? key.cap_period ?? "month");
    if (next !== null && was === null) {
      // A cap on an uncapped key counts from now: what the key spent before was never counted.
      key.period_start = periodStart(next, nowMs);
      key.period_spend = 0;
      key.cap_counted_from = nowMs;
    } else if (next !== null && was !== null && next !== was) {
      // Another period: what the key spent in its current period stays counted in the new one (a
      // day's spend is in its month; a month's spend so far is all counted against today).
      const spent = spentThisPeriod(key, nowMs);
      key.cap_counted_from = periodStart(was, nowMs);
      key.period_start = periodStart(next, nowMs);
      key.period_spend = spent;
    }
    key.spend_cap_cents = spendCapCents;
    key.cap_period = next;
    this.sql.exec(
      "UPDATE api_keys SET spend_cap_cents = ?, cap_period = ?, period_start = ?, period_spend = ?, cap_counted_from = ? WHERE id = ?",
      key.spend_cap_cents,
      key.cap_period,
      key.period_start,
      key.period_spend,
      key.cap_counted_from,
      keyId,
    );
    return true;
  }

  /** The key with this hash, revoked or not. */
  byHash(keyHash: string): KeyRecord | undefined {
    return this.keysByHash.get(keyHash);
  }

  /** The active key with this hash, or undefined. */
  /** Hashes of the keys a credit lease may pay for: active, with no spend cap (a cap's rules live here). */
  leasable(): string[] {
    const hashes: string[] = [];
    for (const k of this.keysByHash.values()) if (k.revoked_at === null && k.spend_cap_cents === null && k.cap_period === null) hashes.push(k.hash);
    return hashes.sort();
  }

  active(keyHash: string): KeyRecord | undefined {
    const key = this.keysByHash.get(keyHash);
    return key && key.revoked_at === null ? key : undefined;
  }

  isValid(keyHash: string): boolean {
    return this.active(keyHash) !== undefined;
  }

  /**
   * Counts a charge (or, negative, its refund) against the key's cap period; keys without a cap
   * write nothing. A charge always counts in the current period; a refund gives room back only
   * for a charge that was counted in it (`chargedAt` in this period, after the cap began counting).
   */
  spend(keyId: string, micros: number, nowMs: number, chargedAt = nowMs): void {
    const key = this.byId(keyId);
    if (!key?.cap_period) return;
    const start = periodStart(key.cap_period, nowMs);
    if (micros < 0 && (periodStart(key.cap_period, chargedAt) !== start || chargedAt < (key.cap_counted_from ?? -Infinity))) return;
    const spent = (key.period_start === start ? key.period_spend : 0) + micros;
    key.period_start = start;
    key.period_spend = Math.max(0, spent);
    if (this.deferring) this.pending.add(key);
    else {
      this.beforeWrite();
      this.writeSpend(key);
    }
  }

  private writeSpend(key: KeyRecord): void {
    this.sql.exec("UPDATE api_keys SET period_start = ?, period_spend = ? WHERE id = ?", key.period_start, key.period_spend, key.id);
  }

  /** While on, period spends are kept in memory until flush(). */
  defer(on: boolean): void {
    this.deferring = on;
  }

  /** Writes each kept-back key's period spend once. */
  flush(): void {
    for (const key of this.pending) this.writeSpend(key);
    this.pending.clear();
  }

  list(nowMs: number) {
    return [...this.keysByHash.values()]
      .sort((a, b) => a.created_at - b.created_at)
      .map((k) => ({
        id: k.id,
        prefix: k.prefix,
        name: k.name,
        created_at: k.created_at,
        revoked_at: k.revoked_at,
        signed: k.signed === 1,
        spend_cap_cents: k.spend_cap_cents,
        cap_period: k.cap_period,
        period_spend_exact_cents: formatCents(spentThisPeriod(k, nowMs)),
        period_resets_at: k.cap_period ? periodEnd(k.cap_period, periodStart(k.cap_period, nowMs)) : null,
      }));
  }

  hasActive(): boolean {
    for (const k of this.keysByHash.values()) if (k.revoked_at === null) return true;
    return false;
  }

  count(): number {
    return this.keysByHash.size;
  }
}
