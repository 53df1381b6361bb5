import { HOUR_MS } from "../../../src/lib/time";
export const CHECKOUT_LIMIT_TABLES = {
  v6: `CREATE TABLE IF NOT EXISTS checkout_sessions (id INTEGER PRIMARY KEY, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS checkout_sessions_created_at ON checkout_sessions (created_at);`,
};

export type CheckoutSlot = { ok: true } | { ok: false; retryAfterSeconds: number };

/**
 * Checkout sessions opened by this customer in a rolling hour, so one key cannot use up the Stripe
 * account's rate limit. Only the last hour is kept: the table never holds more than the limit.
 */
export class CheckoutLimit {
  constructor(private readonly sql: SqlStorage) {}

  /** Takes a slot for one session, or says how long until one frees. */
  take(limit: number, now: number): CheckoutSlot {
    this.sql.exec("DELETE FROM checkout_sessions WHERE created_at <= ?", now - HOUR_MS);
    const taken = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM checkout_sessions").one().n;
    if (taken >= limit) {
      // The session whose expiry brings the count back under the limit.
      const freeing = this.sql.exec<{ created_at: number }>("SELECT created_at FROM checkout_sessions ORDER BY created_at LIMIT 1 OFFSET ?", taken - limit).one().created_at;
      return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((freeing + HOUR_MS - now) / 1000)) };
    }
    this.sql.exec("INSERT INTO checkout_sessions (created_at) VALUES (?)", now);
    return { ok: true };
  }
}
