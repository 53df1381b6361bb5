import { DAY_MS } from "../../../src/lib/time";
export const STRIPE_EVENT_TABLES = {
  v1: `CREATE TABLE IF NOT EXISTS stripe_events (id TEXT PRIMARY KEY, type TEXT NOT NULL, received_at INTEGER NOT NULL);`,
  // Pruning on every record walks only the rows it deletes.
  v10: `CREATE INDEX IF NOT EXISTS stripe_events_received ON stripe_events(received_at);`,
};

/** Stripe retries a delivery for up to 3 days: an id is kept well past that. */
const STRIPE_EVENT_RETENTION_MS = 30 * DAY_MS;
/** Exported so a test can show its query plan (an index search, not a scan). */
export const PRUNE_STRIPE_EVENTS = "DELETE FROM stripe_events WHERE received_at < ?";

/**
 * Ids of Stripe events already applied: Stripe delivers at least once, so each is applied once.
 * Bounded by construction: each record deletes the ids older than the retention, by index.
 */
export class StripeEventLog {
  constructor(private readonly sql: SqlStorage) {}

  seen(eventId: string): boolean {
    return this.sql.exec("SELECT 1 FROM stripe_events WHERE id = ?", eventId).toArray().length > 0;
  }

  record(eventId: string, type: string, now: number): void {
    this.sql.exec("INSERT INTO stripe_events (id, type, received_at) VALUES (?, ?, ?)", eventId, type, now);
    this.sql.exec(PRUNE_STRIPE_EVENTS, now - STRIPE_EVENT_RETENTION_MS);
  }
}
