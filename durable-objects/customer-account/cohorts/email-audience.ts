export const EMAIL_AUDIENCE_TABLES = {
  v5: `CREATE TABLE IF NOT EXISTS email_preferences (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  unsubscribed_at INTEGER,
  updated_at INTEGER NOT NULL
);`,
};

export type Audience = "eligible" | "no_key" | "no_activity" | "unsubscribed";

/**
 * Who may get behavioral emails: only a customer that holds an active API key and has used the
 * API (a request in the ledger) or had credit, and has not unsubscribed. Others, such as a Stripe
 * customer of another product on the same account, stay in cohorts but are never emailed.
 * Decided when an email is due, from the object's own tables: the request path does no extra work.
 */
export class EmailAudience {
  constructor(
    private readonly sql: SqlStorage,
    private readonly uses: { hasActiveKey: () => boolean; hasActivity: () => boolean },
  ) {}

  audience(): Audience {
    if (this.unsubscribedAt() !== null) return "unsubscribed";
    if (!this.uses.hasActiveKey()) return "no_key";
    return this.uses.hasActivity() ? "eligible" : "no_activity";
  }

  unsubscribedAt(): number | null {
    return (this.sql.exec("SELECT unsubscribed_at FROM email_preferences WHERE id = 1").toArray()[0]?.unsubscribed_at as number | null | undefined) ?? null;
  }

  /** Turns behavioral emails off (keeps the first time) or back on; returns the resulting time. */
  setUnsubscribed(unsubscribed: boolean, now: number): number | null {
    this.sql.exec(
      `INSERT INTO email_preferences (id, unsubscribed_at, updated_at) VALUES (1, ?, ?)
       ON CONFLICT (id) DO UPDATE SET unsubscribed_at = CASE WHEN excluded.unsubscribed_at IS NULL THEN NULL
         ELSE COALESCE(unsubscribed_at, excluded.unsubscribed_at) END, updated_at = excluded.updated_at`,
      unsubscribed ? now : null,
      now,
    );
    return this.unsubscribedAt();
  }
}
