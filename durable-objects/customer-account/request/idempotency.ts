import type { Config } from "../../../src/lib/config";
import { DAY_MS } from "../../../src/lib/time";

export const IDEMPOTENCY_TABLES = {
  v8: `
CREATE TABLE IF NOT EXISTS idempotency (
  key TEXT PRIMARY KEY,
  fingerprint TEXT NOT NULL,
  request_id TEXT NOT NULL,
  status TEXT NOT NULL,
  response_status INTEGER,
  response_headers TEXT,
  body BLOB,
  size INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_expires ON idempotency(expires_at);
CREATE INDEX IF NOT EXISTS idempotency_stored ON idempotency(created_at) WHERE status = 'complete';`,
};

export const IDEMPOTENCY_TIMER = "idempotency";

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

/**
 * Client Idempotency-Keys on billed requests (after draft-ietf-httpapi-idempotency-key-header):
 * one charge per API key and Idempotency-Key for 24 hours. The first request marks the key in flight in the
 * same step as its charge; its response (status, headers, body up to IDEMPOTENCY.max_body_bytes)
 * is then stored for replay. A streamed or oversized response, or one whose request never
 * finished, is not replayable: a retry is refused, never charged again.
 */
export class IdempotencyStore {
  constructor(
    private readonly sql: SqlStorage,
    private readonly config: () => Config,
  ) {}

  check(key: string, fingerprint: string, now: number, inFlightMs: number): IdempotencyCheck {
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

  /** In the charge's step: the key is taken by this request. */
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
  }

  /**
   * The first request finished: store its response for replay (whatever its status: a charged
   * failure is replayed, never charged again), mark it not replayable (streamed, too large), or
   * forget the key (its charge was given back: a retry is a new request).
   */
  finish(scoped: string, requestId: string, outcome: StoredResponse | "not_replayable" | "forget"): void {
    const row = this.sql.exec("SELECT key, status FROM idempotency WHERE key IN (?, ?) AND request_id = ?", scoped, unscoped(scoped), requestId).toArray()[0];
    if (row?.status !== "in_flight") return;
    const key = row.key as string;
    if (outcome === "forget") {
      this.sql.exec("DELETE FROM idempotency WHERE key = ?", key);
      return;
    }
    if (outcome === "not_replayable" || outcome.body.byteLength > this.config().IDEMPOTENCY.max_body_bytes) {
      this.sql.exec("UPDATE idempotency SET status = 'not_replayable' WHERE key = ?", key);
      return;
    }
    this.sql.exec(
      "UPDATE idempotency SET status = 'complete', response_status = ?, response_headers = ?, body = ?, size = ? WHERE key = ?",
      outcome.status,
      JSON.stringify(outcome.headers),
      outcome.body,
      outcome.body.byteLength,
      key,
    );
    this.bound();
  }

  /** Keeps within IDEMPOTENCY.max_entries and max_total_bytes: the oldest stored bodies go first (their keys stay, not replayable). */
  private bound(): void {
    const limits = this.config().IDEMPOTENCY;
    const totals = this.sql.exec("SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM idempotency WHERE status = 'complete'").one();
    let count = totals.n as number;
    let bytes = totals.bytes as number;
    if (count <= limits.max_entries && bytes <= limits.max_total_bytes) return;
    for (const row of this.sql.exec("SELECT key, size FROM idempotency WHERE status = 'complete' ORDER BY created_at").toArray()) {
      if (count <= limits.max_entries && bytes <= limits.max_total_bytes) break;
      this.sql.exec("UPDATE idempotency SET status = 'not_replayable', body = NULL, response_headers = NULL, size = 0 WHERE key = ?", row.key);
      count--;
      bytes -= row.size as number;
    }
  }

  /** The idempotency timer: keys older than 24 hours are forgotten. Returns the next expiry, or null. */
  prune(now: number): number | null {
    this.sql.exec("DELETE FROM idempotency WHERE expires_at <= ?", now);
    return (this.sql.exec("SELECT MIN(expires_at) AS t FROM idempotency").one().t as number | null) ?? null;
  }
}
