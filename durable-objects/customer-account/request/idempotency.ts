import type { Config } from "../../../src/lib/config";
import { DAY_MS, HOUR_MS } from "../../../src/lib/time";
import type { Timers } from "../core/timers";
import type { ChargeLog } from "./charges";

/** v8's columns, which v23 keeps (v8's text, and so its pinned hash, unchanged). */
const V8_COLUMNS = `
  key TEXT PRIMARY KEY,
  fingerprint TEXT NOT NULL,
  request_id TEXT NOT NULL,
  status TEXT NOT NULL,
  response_status INTEGER,
  response_headers TEXT,
  body BLOB,
  size INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL`;

export const IDEMPOTENCY_TABLES = {
  v8: `
CREATE TABLE IF NOT EXISTS idempotency (${V8_COLUMNS}
);
CREATE INDEX IF NOT EXISTS idempotency_expires ON idempotency(expires_at);
CREATE INDEX IF NOT EXISTS idempotency_stored ON idempotency(created_at) WHERE status = 'complete';`,
  // v23 (docs/design/idempotency-in-two-rows.md): a charge's key in flight is held by its charge
  // row (the two new columns), and the finished key is one row of a table clustered on the key
  // with no other index: an idempotent charge writes two rows, its charge row and its answer.
  v23: `
ALTER TABLE charges ADD COLUMN idem_key TEXT;
ALTER TABLE charges ADD COLUMN idem_fingerprint TEXT;
CREATE TABLE idempotency_v23 (${V8_COLUMNS}
) WITHOUT ROWID;
INSERT INTO idempotency_v23 (key, fingerprint, request_id, status, response_status, response_headers, body, size, created_at, expires_at)
  SELECT key, fingerprint, request_id, status, response_status, response_headers, body, size, created_at, expires_at FROM idempotency;
DROP TABLE idempotency;
ALTER TABLE idempotency_v23 RENAME TO idempotency;`,
};

export const IDEMPOTENCY_TIMER = "idempotency";
/** The prune reads the whole table (it has no index on expiry): at most once an hour. */
const PRUNE_EVERY_MS = HOUR_MS;
/** Past a bound, stored bodies are given up down to this share of it, so the scan that finds the oldest is rare. */
const EVICT_TO = 0.9;

/**
 * A client's Idempotency-Key is its API key's alone: another key of the same customer sending the
 * same value makes a new request (and never sees the first one's response). Client keys are
 * printable ASCII without spaces, so the space cannot be forged into another key's scope.
 */
export function scopedKey(keyId: string, clientKey: string): string {
  return `${keyId} ${clientKey}`;
}

function unscoped(scoped: string): string {
  return scoped.slice(scoped.indexOf(" ") + 1);
}
/** A key is good for 24 hours after its first request (the IETF draft's usual window). */
export const KEY_LIFETIME_MS = DAY_MS;

export interface StoredResponse {
  status: number;
  headers: string[][];
  body: ArrayBuffer;
}

export type IdempotencyCheck = { state: "new" } | { state: "replay"; response: StoredResponse } | { state: "in_progress" | "mismatch" | "not_replayable" };
type Outcome = StoredResponse | "not_replayable" | "forget";

interface Row {
  key: string;
  fingerprint: string;
  request_id: string;
  status: "in_flight" | "complete" | "not_replayable";
  response_status: number | null;
  response_headers: string | null;
  body: ArrayBuffer | null;
  size: number;
  created_at: number;
}

/** A charge's key in flight: durable in its charge row (`idem_key`, `idem_fingerprint`), indexed here. */
interface InFlight {
  requestId: string;
  fingerprint: string;
  createdAt: number;
}

/**
 * Client Idempotency-Keys on billed requests (after draft-ietf-httpapi-idempotency-key-header):
 * one charge per API key and Idempotency-Key for 24 hours. The first request marks the key in
 * flight in the same step as its charge: a charge in its charge row (its only row, journaled), a
 * hold or a free request in an `in_flight` row here. Its response (status, headers, body up to
 * IDEMPOTENCY.max_body_bytes) is then stored for replay. A streamed or oversized response, or one
 * whose request never finished, is not replayable: a retry is refused, never charged again.
 */
export class IdempotencyStore {
  /** Charges' keys in flight by scoped key, rebuilt from the charge rows on load. */
  private inFlight = new Map<string, InFlight>();
  /** Stored responses (`complete` rows) and their bytes, counted at load and kept up to date. */
  private stored = { count: 0, bytes: 0 };

  constructor(
    private readonly sql: SqlStorage,
    private readonly config: () => Config,
    private readonly timers: Timers,
    private readonly charges: ChargeLog,
  ) {}

  /** After a (re)load: kept charges with a key (batch members too) and no finished row for their request are in flight. */
  load(): void {
    this.inFlight = new Map();
    for (const charge of this.charges.idempotencyKeys()) {
      const finished = this.sql.exec("SELECT 1 FROM idempotency WHERE key = ? AND request_id = ?", charge.key, charge.requestId).toArray().length > 0;
      if (!finished) this.inFlight.set(charge.key, { requestId: charge.requestId, fingerprint: charge.fingerprint, createdAt: charge.createdAt });
    }
    const totals = this.sql.exec("SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM idempotency WHERE status = 'complete'").one();
    this.stored = { count: totals.n as number, bytes: totals.bytes as number };
  }

  check(key: string, fingerprint: string, now: number, inFlightMs: number): IdempotencyCheck {
    const flight = this.inFlight.get(key);
    if (flight) {
      if (flight.fingerprint !== fingerprint) return { state: "mismatch" };
      return { state: now - flight.createdAt < inFlightMs ? "in_progress" : "not_replayable" };
    }
    const row = this.find(key, now);
    if (!row) return { state: "new" };
    if (row.fingerprint !== fingerprint) return { state: "mismatch" };
    if (row.status === "complete" && row.body !== null) {
      return { state: "replay", response: { status: row.response_status!, headers: JSON.parse(row.response_headers!), body: row.body } };
    }
    // A first request that never finished (its worker went away) cannot be told apart from one still running.
    if (row.status === "in_flight" && now - row.created_at < inFlightMs) return { state: "in_progress" };
    return { state: "not_replayable" };
  }

  /**
   * The key's row: stored under its scoped form (scopedKey), or, for a request made before keys
   * were scoped, under the client's key alone; those rows are gone 24 hours after the upgrade.
   */
  private find(key: string, now: number): Row | undefined {
    const rows = this.sql.exec("SELECT * FROM idempotency WHERE key IN (?, ?) AND expires_at > ?", key, unscoped(key), now).toArray() as unknown as Row[];
    return rows.find((r) => r.key === key) ?? rows[0];
  }

  /** A charge's key is taken by its request: written with the charge row (ChargeLog.insert), noted here once it is. */
  charged(key: string, fingerprint: string, requestId: string, now: number): void {
    this.inFlight.set(key, { requestId, fingerprint, createdAt: now });
  }

  /** A charge given back (its refund clears the key on its row): a retry is a new request. */
  refunded(key: string, requestId: string): void {
    if (this.inFlight.get(key)?.requestId === requestId) this.inFlight.delete(key);
  }

  /** In a hold's (or a free request's) step: the key is taken by this request, in a row of its own. */
  begin(key: string, fingerprint: string, requestId: string, now: number): void {
    this.sql.exec(
      `INSERT INTO idempotency (key, fingerprint, request_id, status, created_at, expires_at) VALUES (?, ?, ?, 'in_flight', ?, ?)
       ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, request_id = excluded.request_id, status = 'in_flight',
         response_status = NULL, response_headers = NULL, body = NULL, size = 0, created_at = excluded.created_at, expires_at = excluded.expires_at`,
      key,
      fingerprint,
      requestId,
      now,
      now + KEY_LIFETIME_MS,
    );
    this.timers.at(IDEMPOTENCY_TIMER, now + KEY_LIFETIME_MS);
  }

  /**
   * The first request finished: store its response for replay (whatever its status: a charged
   * failure is replayed, never charged again), mark it not replayable (streamed, too large), or
   * forget the key (its charge was given back: a retry is a new request).
   */
  finish(scoped: string, requestId: string, outcome: Outcome): void {
    const flight = this.inFlight.get(scoped);
    if (flight?.requestId === requestId) {
      this.finishCharge(scoped, flight, outcome);
      return;
    }
    const row = this.sql.exec("SELECT key, status FROM idempotency WHERE key IN (?, ?) AND request_id = ?", scoped, unscoped(scoped), requestId).toArray()[0];
    if (row?.status !== "in_flight") return;
    const key = row.key as string;
    if (outcome === "forget") {
      this.sql.exec("DELETE FROM idempotency WHERE key = ?", key);
      return;
    }
    const response = this.replayable(outcome);
    if (!response) {
      this.sql.exec("UPDATE idempotency SET status = 'not_replayable' WHERE key = ?", key);
      return;
    }
    this.sql.exec(
      "UPDATE idempotency SET status = 'complete', response_status = ?, response_headers = ?, body = ?, size = ? WHERE key = ?",
      response.status,
      JSON.stringify(response.headers),
      response.body,
      response.body.byteLength,
      key,
    );
    this.added(response.body.byteLength);
  }

  /** A charge's key finished: its one row (the charge row holds it until now), or, given back, the key cleared from the charge row. */
  private finishCharge(key: string, flight: InFlight, outcome: Outcome): void {
    if (outcome === "forget") {
      this.charges.forgetIdempotencyKey(flight.requestId);
      this.inFlight.delete(key);
      return;
    }
    const response = this.replayable(outcome);
    this.write(key, flight, response);
    if (response) this.added(response.body.byteLength);
  }

  /**
   * Before the charges prune deletes the charge rows created before `before`: a key still in flight
   * in one of them (its request never finished) is written as not replayable, so that a retry is
   * still refused, never charged again.
   */
  abandon(before: number): void {
    for (const [key, flight] of this.inFlight) if (flight.createdAt < before) this.write(key, flight, null);
  }

  private write(key: string, flight: InFlight, response: StoredResponse | null): void {
    const expiresAt = flight.createdAt + KEY_LIFETIME_MS;
    this.sql.exec(
      `INSERT INTO idempotency (key, fingerprint, request_id, status, response_status, response_headers, body, size, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, request_id = excluded.request_id, status = excluded.status, response_status = excluded.response_status,
         response_headers = excluded.response_headers, body = excluded.body, size = excluded.size, created_at = excluded.created_at, expires_at = excluded.expires_at`,
      key,
      flight.fingerprint,
      flight.requestId,
      response ? "complete" : "not_replayable",
      response?.status ?? null,
      response ? JSON.stringify(response.headers) : null,
      response?.body ?? null,
      response?.body.byteLength ?? 0,
      flight.createdAt,
      expiresAt,
    );
    this.inFlight.delete(key);
    this.timers.at(IDEMPOTENCY_TIMER, expiresAt);
  }

  private replayable(outcome: StoredResponse | "not_replayable"): StoredResponse | null {
    return outcome === "not_replayable" || outcome.body.byteLength > this.config().IDEMPOTENCY.max_body_bytes ? null : outcome;
  }

  /**
   * A stored response counted; past IDEMPOTENCY.max_entries or max_total_bytes, the oldest stored
   * bodies go (their keys stay, not replayable), down to EVICT_TO of the bounds: finding them reads
   * the table, which has no index on age.
   */
  private added(bytes: number): void {
    this.stored.count++;
    this.stored.bytes += bytes;
    const limits = this.config().IDEMPOTENCY;
    if (this.stored.count <= limits.max_entries && this.stored.bytes <= limits.max_total_bytes) return;
    const within = () => this.stored.count <= Math.floor(limits.max_entries * EVICT_TO) && this.stored.bytes <= Math.floor(limits.max_total_bytes * EVICT_TO);
    for (const row of this.sql.exec("SELECT key, size FROM idempotency WHERE status = 'complete' ORDER BY created_at").toArray()) {
      if (within()) break;
      this.sql.exec("UPDATE idempotency SET status = 'not_replayable', body = NULL, response_headers = NULL, size = 0 WHERE key = ?", row.key);
      this.stored.count--;
      this.stored.bytes -= row.size as number;
    }
  }

  /** The idempotency timer: keys older than 24 hours are forgotten. Returns when to look again, or null. */
  prune(now: number): number | null {
    for (const row of this.sql.exec("DELETE FROM idempotency WHERE expires_at <= ? RETURNING status, size", now).toArray()) {
      if (row.status !== "complete") continue;
      this.stored.count--;
      this.stored.bytes -= row.size as number;
    }
    const next = this.sql.exec("SELECT MIN(expires_at) AS t FROM idempotency").one().t as number | null;
    return next === null ? null : Math.max(next, now + PRUNE_EVERY_MS);
  }
}
