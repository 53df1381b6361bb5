import { newId } from "../../../src/lib/api-key-format";
import type { EpochMs, UnixSeconds } from "../../../src/lib/time";

export const GRANT_TABLES = {
  v3: `
CREATE TABLE IF NOT EXISTS grants (
  id TEXT PRIMARY KEY,
  amount INTEGER NOT NULL,
  remaining INTEGER NOT NULL,
  frozen INTEGER NOT NULL DEFAULT 0,
  category TEXT NOT NULL,
  priority INTEGER NOT NULL,
  expires_at INTEGER,
  meters TEXT,
  source TEXT NOT NULL,
  reason TEXT NOT NULL,
  reference TEXT UNIQUE,
  payment_intent TEXT,
  refunded INTEGER NOT NULL DEFAULT 0,
  expiry_warned INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  closed_at INTEGER,
  closed_reason TEXT
);
CREATE INDEX IF NOT EXISTS grants_payment_intent ON grants(payment_intent) WHERE payment_intent IS NOT NULL;
ALTER TABLE account ADD COLUMN debt INTEGER NOT NULL DEFAULT 0;
INSERT INTO grants (id, amount, remaining, category, priority, source, reason, created_at)
  SELECT 'grt_migrated', balance, balance, 'paid', 50, 'migration', 'credit held before grants existed', updated_at FROM account WHERE balance > 0;
UPDATE account SET debt = -balance WHERE balance < 0;`,
  // Per grant, the micro-cents under open disputes; frozen is derived from it (GrantBook keeps
  // frozen = min(remaining, disputed)). Backfilled from the disputes open now (DISPUTE_TABLES.v14
  // runs first and maps their status).
  v14: `
ALTER TABLE grants ADD COLUMN disputed INTEGER NOT NULL DEFAULT 0;
UPDATE grants SET disputed = MIN(amount, COALESCE((
  SELECT SUM(MIN(d.amount * 1000000, grants.amount)) FROM disputes d
  WHERE d.payment_intent = grants.payment_intent AND d.effect = 'frozen'), 0))
  WHERE payment_intent IS NOT NULL;
UPDATE grants SET frozen = MIN(remaining, disputed);`,
};

export type GrantCategory = "paid" | "promotional";
/** `refund`: a refunded request's overdraft that a later grant had paid off, given back (wallet.ts). */
/** `x402`, `mpp`: a top-up an agent paid on a 402 (agent-payments/paid-grants.ts). */
export type GrantSource = "admin" | "checkout" | "stripe" | "auto_topup" | "migration" | "refund" | "x402" | "mpp";

export interface Grant {
  id: string;
  /** Micro-cents granted. */
  amount: number;
  /** Micro-cents left, 0..amount. */
  remaining: number;
  /** Micro-cents of `remaining` not spendable: always min(remaining, disputed), kept by GrantBook. */
  frozen: number;
  /** Micro-cents of its payment under open disputes (clawbacks.ts), at most `amount`. */
  disputed: number;
  category: GrantCategory;
  /** Lower drains first. */
  priority: number;
  /** Unix seconds; past it the grant pays for nothing. */
  expires_at: UnixSeconds | null;
  /** Meter names it may pay for; null = all. */
  meters: string[] | null;
  source: GrantSource;
  reason: string;
  reference: string | null;
  payment_intent: string | null;
  /** Micro-cents of its payment refunded (and so taken back) so far. */
  refunded: number;
  /** 1 once `credit.expiring` was sent for it. */
  expiry_warned: number;
  created_at: EpochMs;
  closed_at: EpochMs | null;
  closed_reason: "expired" | "voided" | null;
}

/** Where a charge's money came from, so a refund or a release puts it back exactly. */
export interface Receipt {
  parts: [grantId: string, micros: number][];
  /** The part no grant covered (an overdraft the minimum balance allows). */
  debt: number;
}

/** The fixed drain order: lower priority first, then earliest expiry (never last), promotional before paid, oldest. */
export function drainOrder(a: Grant, b: Grant): number {
  return (
    a.priority - b.priority ||
    (a.expires_at ?? Infinity) - (b.expires_at ?? Infinity) ||
    (a.category === b.category ? 0 : a.category === "promotional" ? -1 : 1) ||
    a.created_at - b.created_at ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
}

/** Whether a grant may pay for `meter` at `nowMs`. */
export function eligible(g: Grant, meter: string, nowMs: number): boolean {
  return g.closed_at === null && (g.expires_at === null || g.expires_at * 1000 > nowMs) && (g.meters === null || g.meters.includes(meter));
}

export function spendable(g: Grant): number {
  return Math.max(0, g.remaining - g.frozen);
}

/** Credit `meter` may use at `nowMs`: its eligible unfrozen grants, less debt. No I/O. */
export function availableFor(grants: readonly Grant[], debt: number, meter: string, nowMs: number): number {
  let sum = 0;
  for (const g of grants) if (eligible(g, meter, nowMs)) sum += spendable(g);
  return sum - debt;
}

/**
 * How a charge of `price` is paid, with no I/O: across eligible grants in drain order (`grants`
 * sorted by drainOrder), the rest as debt.
 */
export function planDrain(grants: readonly Grant[], meter: string, price: number, nowMs: number): Receipt {
  const parts: [string, number][] = [];
  let left = price;
  for (const g of grants) {
    if (left === 0) break;
    if (!eligible(g, meter, nowMs)) continue;
    const take = Math.min(left, spendable(g));
    if (take > 0) {
      parts.push([g.id, take]);
      left -= take;
    }
  }
  return { parts, debt: left };
}

/** The grant that paid the largest part of a receipt. */
export function mainGrant(receipt: Receipt): string | null {
  let best: [string, number] | null = null;
  for (const part of receipt.parts) if (!best || part[1] > best[1]) best = part;
  return best?.[0] ?? null;
}

interface GrantRow extends Omit<Grant, "meters"> {
  meters: string | null;
}

/**
 * The customer's credit grants, all in memory in drain order and written through on change. The
 * balance is the sum of what remains, less debt.
 */
export class GrantBook {
  /** Open grants (not expired-and-written, not voided), in drain order. */
  private open: Grant[] = [];
  /** Grants whose remaining changed while deferring (journaled charges), written by flush(). */
  private readonly pending = new Set<Grant>();
  private deferring = false;
  /** Runs before any write goes through: the context folds the journal first (journal.ts). */
  beforeWrite: () => void = () => {};

  constructor(private readonly sql: SqlStorage) {}

  load(): void {
    const rows = this.sql.exec("SELECT * FROM grants WHERE closed_at IS NULL").toArray() as unknown as GrantRow[];
    this.open = rows.map(fromRow).sort(drainOrder);
    this.pending.clear();
  }

  get all(): readonly Grant[] {
    return this.open;
  }

  get(id: string): Grant | undefined {
    return this.open.find((g) => g.id === id) ?? this.read("SELECT * FROM grants WHERE id = ?", id);
  }

  byReference(reference: string): Grant | undefined {
    return this.open.find((g) => g.reference === reference) ?? this.read("SELECT * FROM grants WHERE reference = ?", reference);
  }

  byPaymentIntent(paymentIntent: string): Grant | undefined {
    return this.open.find((g) => g.payment_intent === paymentIntent) ?? this.read("SELECT * FROM grants WHERE payment_intent = ?", paymentIntent);
  }

  private read(query: string, value: string): Grant | undefined {
    const row = this.sql.exec(query, value).toArray()[0] as unknown as GrantRow | undefined;
    return row ? fromRow(row) : undefined;
  }

  /** Sum of what remains of the open grants. */
  remaining(): number {
    return this.open.reduce((sum, g) => sum + g.remaining, 0);
  }

  create(input: {
    amount: number;
    remaining: number;
    category: GrantCategory;
    priority: number;
    expiresAt: number | null;
    meters: string[] | null;
    source: GrantSource;
    reason: string;
    reference: string | null;
    paymentIntent: string | null;
    now: number;
  }): Grant {
    const grant: Grant = {
      id: newId("grt"),
      amount: input.amount,
      remaining: input.remaining,
      frozen: 0,
      disputed: 0,
      category: input.category,
      priority: input.priority,
      expires_at: input.expiresAt,
      meters: input.meters,
      source: input.source,
      reason: input.reason,
      reference: input.reference,
      payment_intent: input.paymentIntent,
      refunded: 0,
      expiry_warned: 0,
      created_at: input.now,
      closed_at: null,
      closed_reason: null,
    };
    this.sql.exec(
      `INSERT INTO grants (id, amount, remaining, frozen, category, priority, expires_at, meters, source, reason, reference, payment_intent, created_at)
       VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      grant.id,
      grant.amount,
      grant.remaining,
      grant.category,
      grant.priority,
      grant.expires_at,
      grant.meters ? JSON.stringify(grant.meters) : null,
      grant.source,
      grant.reason,
      grant.reference,
      grant.payment_intent,
      grant.created_at,
    );
    this.open.push(grant);
    this.open.sort(drainOrder);
    return grant;
  }

  /**
   * Moves `delta` micro-cents into (> 0) or out of (< 0) a grant's remaining. Whatever moves it
   * (a charge, a hold's release, a refund, a clawback), what is under dispute stays frozen: credit
   * that comes back to a disputed grant is frozen up to the disputed amount.
   */
  adjust(grant: Grant, delta: number): void {
    grant.remaining += delta;
    if (grant.remaining < 0 || grant.remaining > grant.amount) throw new Error(`grant ${grant.id} would leave 0..amount`);
    grant.frozen = Math.min(grant.remaining, grant.disputed);
    if (this.deferring) this.pending.add(grant);
    else {
      this.beforeWrite();
      this.write(grant);
    }
  }

  private write(grant: Grant): void {
    this.sql.exec("UPDATE grants SET remaining = ?, frozen = ? WHERE id = ?", grant.remaining, grant.frozen, grant.id);
  }

  /** While on, `remaining` changes are kept in memory until flush(). */
  defer(on: boolean): void {
    this.deferring = on;
  }

  /** Writes each kept-back grant's remaining once. */
  flush(): void {
    for (const grant of this.pending) this.write(grant);
    this.pending.clear();
  }

  /** The Stripe PaymentIntent a grant's payment was recorded as after it was credited (an x402 top-up): its refunds claw the grant back. */
  linkPaymentIntent(grant: Grant, paymentIntent: string): void {
    grant.payment_intent = paymentIntent;
    this.sql.exec("UPDATE grants SET payment_intent = ? WHERE id = ? AND payment_intent IS NULL", paymentIntent, grant.id);
  }

  markExpiryWarned(grant: Grant): void {
    grant.expiry_warned = 1;
    this.sql.exec("UPDATE grants SET expiry_warned = 1 WHERE id = ?", grant.id);
  }

  setRefunded(grant: Grant, refunded: number): void {
    grant.refunded = refunded;
    this.sql.exec("UPDATE grants SET refunded = ? WHERE id = ?", refunded, grant.id);
  }

  /** Sets what open disputes hold of the grant's payment; frozen follows (see adjust). */
  setDisputed(grant: Grant, disputed: number): void {
    this.beforeWrite();
    grant.disputed = Math.min(disputed, grant.amount);
    grant.frozen = Math.min(grant.remaining, grant.disputed);
    this.sql.exec("UPDATE grants SET disputed = ?, frozen = ? WHERE id = ?", grant.disputed, grant.frozen, grant.id);
  }

  /** Closes a grant (expired or voided) with nothing left in it. */
  close(grant: Grant, reason: "expired" | "voided", now: number): void {
    this.beforeWrite();
    grant.remaining = 0;
    grant.frozen = 0;
    grant.closed_at = now;
    grant.closed_reason = reason;
    this.sql.exec("UPDATE grants SET remaining = 0, frozen = 0, closed_at = ?, closed_reason = ? WHERE id = ?", now, reason, grant.id);
    this.open = this.open.filter((g) => g !== grant);
  }

  /** Open grants past their expiry at `nowMs`. */
  expired(nowMs: number): Grant[] {
    return this.open.filter((g) => g.expires_at !== null && g.expires_at * 1000 <= nowMs);
  }

  /** The next expiry instant (ms) among open grants, or null. */
  nextExpiry(): number | null {
    let next: number | null = null;
    for (const g of this.open) if (g.expires_at !== null && (next === null || g.expires_at * 1000 < next)) next = g.expires_at * 1000;
    return next;
  }

  /** Credit that expires within `withinMs` of `nowMs` (what a customer is warned about). */
  expiringWithin(nowMs: number, withinMs: number): number {
    let sum = 0;
    for (const g of this.open) {
      if (g.expires_at !== null && g.expires_at * 1000 > nowMs && g.expires_at * 1000 <= nowMs + withinMs) sum += spendable(g);
    }
    return sum;
  }

  list(limit: number): Grant[] {
    const rows = this.sql.exec("SELECT * FROM grants ORDER BY created_at DESC, id DESC LIMIT ?", limit).toArray() as unknown as GrantRow[];
    return rows.map(fromRow);
  }
}

function fromRow(row: GrantRow): Grant {
  return { ...row, meters: row.meters ? (JSON.parse(row.meters) as string[]) : null };
}
