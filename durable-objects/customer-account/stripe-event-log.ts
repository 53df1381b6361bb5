export const STRIPE_EVENT_TABLES = {
  v1: `CREATE TABLE IF NOT EXISTS stripe_events (id TEXT PRIMARY KEY, type TEXT NOT NULL, received_at INTEGER NOT NULL);`,
};

const RETENTION_MS = 30 * 86_400_000;

/** Ids of Stripe events already applied: Stripe delivers at least once, so each is applied once. */
export class StripeEventLog {
  constructor(private readonly sql: SqlStorage) {}

  seen(eventId: string): boolean {
    return this.sql.exec("SELECT 1 FROM stripe_events WHERE id = ?", eventId).toArray().length > 0;
  }

  record(eventId: string, type: string, now: number): void {
    this.sql.exec("INSERT INTO stripe_events (id, type, received_at) VALUES (?, ?, ?)", eventId, type, now);
    this.sql.exec("DELETE FROM stripe_events WHERE received_at < ?", now - RETENTION_MS);
  }
}
