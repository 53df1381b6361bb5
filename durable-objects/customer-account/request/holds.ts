import type { Plan } from "../../../src/lib/customer";
import type { TokenCounts } from "../../../src/lib/meters";
import type { EpochMs } from "../../../src/lib/time";
import { DAY_MS, HOUR_MS } from "../../../src/lib/time";
import type { Receipt } from "../credit/grants";

/** The columns of v8's table, which v25 keeps (v8's text, and so its pinned hash, unchanged). */
const V8_COLUMNS = `
  request_id TEXT PRIMARY KEY,
  meter TEXT NOT NULL,
  bucket INTEGER NOT NULL,
  plan TEXT NOT NULL,
  key_id TEXT,
  unit_price INTEGER NOT NULL,
  held_units INTEGER NOT NULL,
  receipt TEXT NOT NULL,
  on_missing TEXT NOT NULL,
  status TEXT NOT NULL,
  units INTEGER,
  charged INTEGER,
  over_hold INTEGER NOT NULL DEFAULT 0,
  reason TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  settled_at INTEGER`;

export const HOLD_TABLES = {
  v8: `
CREATE TABLE IF NOT EXISTS holds (${V8_COLUMNS}
);
CREATE INDEX IF NOT EXISTS holds_open ON holds(expires_at) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS holds_settled ON holds(settled_at) WHERE status = 'settled';
CREATE TABLE IF NOT EXISTS over_hold (meter TEXT NOT NULL, bucket INTEGER NOT NULL, units INTEGER NOT NULL, requests INTEGER NOT NULL, PRIMARY KEY (meter, bucket));`,
  // v16: a tokens meter's settlement keeps its model and tokens per kind (JSON) with the hold.
  v16: "ALTER TABLE holds ADD COLUMN usage TEXT;",
  // v25 (docs/design/journaled-holds.md): the same columns in a table clustered on the request id,
  // with no index but a partial one on refunded holds (a hold and its settlement write one row
  // each), plus the journal sequence of its take, its latest extension and its settlement when
  // they were journaled, and `base`: the hold before its first unfolded extension (JSON).
  v25: `
CREATE TABLE holds_v23 (${V8_COLUMNS},
  usage TEXT,
  taken_seq INTEGER,
  extended_seq INTEGER,
  settled_seq INTEGER,
  base TEXT
) WITHOUT ROWID;
INSERT INTO holds_v23 (request_id, meter, bucket, plan, key_id, unit_price, held_units, receipt, on_missing, status, units, charged, over_hold, reason, created_at, expires_at, settled_at, usage)
  SELECT request_id, meter, bucket, plan, key_id, unit_price, held_units, receipt, on_missing, status, units, charged, over_hold, reason, created_at, expires_at, settled_at, usage FROM holds;
DROP TABLE holds;
ALTER TABLE holds_v23 RENAME TO holds;
CREATE INDEX holds_refunded ON holds(settled_at) WHERE reason = 'refunded';`,
};

export const HOLDS_TIMER = "holds";
/** A hold whose request is silent this long past the origin timeout is released by the alarm. */
export const HOLD_MARGIN_MS = 60_000;
/** Settled holds stay this long, so the admin API can show what a request was charged. */
const SETTLED_KEPT_MS = DAY_MS;
/** Settled holds are pruned by a scan of the table (it has no index on settled_at): at most this often. */
const PRUNE_EVERY_MS = HOUR_MS;

export interface HoldRow {
  request_id: string;
  meter: string;
  bucket: number;
  plan: Plan;
  key_id: string | null;
  unit_price: number;
  held_units: number;
  receipt: Receipt;
  on_missing: "hold" | "zero";
  status: "open" | "settled";
  units: number | null;
  charged: number | null;
  over_hold: number;
  reason: string | null;
  created_at: EpochMs;
  expires_at: EpochMs;
  settled_at: number | null;
  /** A tokens meter's settled usage: its model row and tokens per kind. */
  usage: SettledUsage | null;
  /** The journal sequence of its take, when the take was journaled (null: written with its effects). */
  taken_seq: number | null;
  /** The journal sequence of its latest extension, when that was journaled. */
  extended_seq: number | null;
  /** The journal sequence of its settlement, when that was journaled. */
  settled_seq: number | null;
  /** While `extended_seq` is unfolded: the hold before its first unfolded extension. */
  base: HoldBase | null;
}

/** A hold's units and how many parts of its receipt it had (and their debt), before unfolded extensions. */
export interface HoldBase {
  held_units: number;
  parts: number;
  debt: number;
}

/** An open hold, in memory: when the alarm releases it, and the cohort epoch its charges all fell in (null: none, or unknown). */
interface OpenHold {
  expiresAt: number;
  epoch: number | null;
}

export interface SettledUsage {
  model: string;
  /** Null until settled, and when the response reported none. */
  tokens: TokenCounts | null;
}

export type SettleReason = "completed" | "cut_off" | "client_gone" | "units_missing" | "origin_failed" | "refunded" | "expired";

/**
 * What a response-metered request is charged, with no I/O: every unit the response reports, past
 * the hold too (`overHold` of them, charged on top: into debt if credit is short). Without
 * readable units the meter's on_missing_units applies, except to a hold the alarm found
 * abandoned (`expired`: the gateway lost track of a response it forwarded), which is charged as held.
 */
export function settlement(hold: { heldUnits: number; unitPrice: number; onMissing: "hold" | "zero" }, units: number | null, reason: SettleReason) {
  const chargedUnits = units ?? (hold.onMissing === "hold" || reason === "expired" ? hold.heldUnits : 0);
  const overHold = Math.max(0, chargedUnits - hold.heldUnits);
  return {
    chargedUnits,
    overHold,
    charged: chargedUnits * hold.unitPrice,
    released: Math.max(0, hold.heldUnits - chargedUnits) * hold.unitPrice,
    extra: overHold * hold.unitPrice,
  };
}

/**
 * Holds for requests billed from their response: the most a request may cost is reserved (drained
 * from the grants like a charge) before it is forwarded, extended in steps while a stream runs,
 * and settled when the response ends: the units read, within the hold, are charged; the rest goes
 * back, in the same ledger bucket. A hold whose request never settles is released by the alarm.
 */
export class Holds {
  /** Open holds by request id: the alarm finds the expired ones here (the table has no index on expires_at). */
  private readonly open = new Map<string, OpenHold>();
  /** When the next prune scan is due; null while no settled hold may be stored. */
  private pruneDue: number | null = 0;

  constructor(private readonly sql: SqlStorage) {}

  /** (Re)reads the open holds from SQLite (one scan, at load). */
  load(): void {
    this.open.clear();
    for (const row of this.sql.exec("SELECT request_id, expires_at FROM holds WHERE status = 'open'")) {
      this.open.set(row.request_id as string, { expiresAt: row.expires_at as number, epoch: null });
    }
    this.pruneDue = 0;
  }

  get(requestId: string): HoldRow | undefined {
    const row = this.sql.exec("SELECT * FROM holds WHERE request_id = ?", requestId).toArray()[0];
    return row ? parseHold(row) : undefined;
  }

  /** Rows past the journal's fold (journal.replay). */
  unfolded(foldedSeq: number): HoldRow[] {
    return this.sql.exec("SELECT * FROM holds WHERE taken_seq > ? OR extended_seq > ? OR settled_seq > ?", foldedSeq, foldedSeq, foldedSeq).toArray().map(parseHold);
  }

  /** The cohort epoch every charge of an open hold fell within (null: not known to be one). */
  epochOf(requestId: string): number | null {
    return this.open.get(requestId)?.epoch ?? null;
  }

  /**
   * The hold was taken within the cohort slack of `epoch` (context.epoch). An extension outside it
   * moves the context to a new epoch, so the hold then no longer matches.
   */
  takenWithin(requestId: string, epoch: number): void {
    const open = this.open.get(requestId);
    if (open) open.epoch = epoch;
  }

  /** A tokens meter's hold names its model row from the start, so a hold settled without usage is still its model's. */
  insert(row: NewHold, takenSeq: number | null = null): void {
    this.sql.exec(
      `INSERT INTO holds (request_id, meter, bucket, plan, key_id, unit_price, held_units, receipt, on_missing, status, created_at, expires_at, usage, taken_seq)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?)`,
      row.request_id,
      row.meter,
      row.bucket,
      row.plan,
      row.key_id,
      row.unit_price,
      row.held_units,
      JSON.stringify(row.receipt),
      row.on_missing,
      row.created_at,
      row.expires_at,
      row.model === undefined ? null : JSON.stringify({ model: row.model, tokens: null }),
      takenSeq,
    );
    this.open.set(row.request_id, { expiresAt: row.expires_at, epoch: null });
  }

  /** An open hold whose response is still arriving: the alarm leaves it alone until `expiresAt`. */
  kept(requestId: string, expiresAt: number): void {
    this.sql.exec("UPDATE holds SET expires_at = ? WHERE request_id = ? AND status = 'open'", expiresAt, requestId);
    const open = this.open.get(requestId);
    if (open) open.expiresAt = expiresAt;
  }

  /** An extension; `journal` when it is journaled: its sequence and the hold before its first unfolded extension. */
  extended(requestId: string, heldUnits: number, receipt: Receipt, expiresAt: number, journal: { seq: number; base: HoldBase } | null = null): void {
    const set = "held_units = ?, receipt = ?, expires_at = ?";
    if (journal) {
      this.sql.exec(
        `UPDATE holds SET ${set}, extended_seq = ?, base = ? WHERE request_id = ?`,
        heldUnits,
        JSON.stringify(receipt),
        expiresAt,
        journal.seq,
        JSON.stringify(journal.base),
        requestId,
      );
    } else this.sql.exec(`UPDATE holds SET ${set} WHERE request_id = ?`, heldUnits, JSON.stringify(receipt), expiresAt, requestId);
    const open = this.open.get(requestId);
    if (open) open.expiresAt = expiresAt;
  }

  /** The settlement's row; `settledSeq` when it is journaled. */
  settled(
    requestId: string,
    fields: { units: number | null; charged: number; overHold: number; reason: SettleReason; now: number; usage: SettledUsage | null },
    settledSeq: number | null = null,
  ): void {
    this.sql.exec(
      "UPDATE holds SET status = 'settled', units = ?, charged = ?, over_hold = ?, reason = ?, settled_at = ?, usage = ?, settled_seq = ? WHERE request_id = ?",
      fields.units,
      fields.charged,
      fields.overHold,
      fields.reason,
      fields.now,
      fields.usage ? JSON.stringify(fields.usage) : null,
      settledSeq,
      requestId,
    );
    this.open.delete(requestId);
    this.pruneDue ??= fields.now + SETTLED_KEPT_MS;
  }

  recordOverHold(meter: string, bucket: number, units: number): void {
    this.sql.exec(
      `INSERT INTO over_hold (meter, bucket, units, requests) VALUES (?, ?, ?, 1)
       ON CONFLICT (meter, bucket) DO UPDATE SET units = units + excluded.units, requests = requests + 1`,
      meter,
      bucket,
      units,
    );
  }

  overHoldSince(bucket: number) {
    return this.sql.exec("SELECT meter, SUM(units) AS units, SUM(requests) AS requests FROM over_hold WHERE bucket >= ? GROUP BY meter ORDER BY meter", bucket).toArray();
  }

  refundsSince(since: number): number {
    return this.sql.exec("SELECT COUNT(*) AS n FROM holds WHERE status = 'settled' AND reason = 'refunded' AND settled_at > ?", since).one().n as number;
  }

  openExpired(now: number): string[] {
    return [...this.open].filter(([, h]) => h.expiresAt <= now).map(([id]) => id);
  }

  /**
   * Drops settled holds past their keeping time (a scan, at most every PRUNE_EVERY_MS); returns
   * the next time the timer is needed, or null.
   */
  prune(now: number): number | null {
    if (this.pruneDue !== null && this.pruneDue <= now) {
      this.sql.exec("DELETE FROM holds WHERE status = 'settled' AND settled_at < ?", now - SETTLED_KEPT_MS);
      const oldest = this.sql.exec("SELECT MIN(settled_at) AS t FROM holds WHERE status = 'settled'").one().t as number | null;
      this.pruneDue = oldest === null ? null : Math.max(oldest + SETTLED_KEPT_MS, now + PRUNE_EVERY_MS);
    }
    let next = this.pruneDue;
    for (const h of this.open.values()) if (next === null || h.expiresAt < next) next = h.expiresAt;
    return next;
  }
}

type NewHold = Omit<HoldRow, "status" | "units" | "charged" | "over_hold" | "reason" | "settled_at" | "usage" | "taken_seq" | "extended_seq" | "settled_seq" | "base"> & {
  model?: string;
};

function parseHold(row: Record<string, SqlStorageValue>): HoldRow {
  const json = (value: SqlStorageValue | undefined) => (value ? JSON.parse(value as string) : null);
  return { ...row, receipt: JSON.parse(row.receipt as string), usage: json(row.usage), base: json(row.base) } as unknown as HoldRow;
}
