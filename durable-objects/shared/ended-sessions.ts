export const ENDED_SESSION_TABLES = {
  v1: `CREATE TABLE IF NOT EXISTS ended_sessions (
  sid TEXT PRIMARY KEY,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ended_sessions_expires_at ON ended_sessions (expires_at);`,
};

/**
 * Sessions signed out before they expired (dashboard sessions in the directory, portal sessions in
 * their customer's object). A session cookie is signed and carries its own expiry, so without this
 * a copy of it kept after sign-out would still work until then. A row is kept only until the
 * session would have expired anyway, so the table holds at most the sign-outs of one session
 * lifetime.
 */
export class EndedSessions {
  constructor(private readonly sql: SqlStorage) {}

  end(sid: string, expiresAt: number, now: number): void {
    this.sql.exec("DELETE FROM ended_sessions WHERE expires_at <= ?", now);
    if (expiresAt > now) this.sql.exec("INSERT OR IGNORE INTO ended_sessions (sid, expires_at) VALUES (?, ?)", sid, expiresAt);
  }

  has(sid: string): boolean {
    return this.sql.exec("SELECT 1 FROM ended_sessions WHERE sid = ?", sid).toArray().length > 0;
  }
}
