import { DAY_MS } from "../../../src/lib/time";

/*
 * The MCP sessions whose `initialize` negotiated a protocol version without JSON-RPC batches
 * (2025-06-18 and later), by the server's Mcp-Session-Id: a batch sent in such a session without
 * an MCP-Protocol-Version header is still refused before the server. Only such sessions are kept
 * (a session the table does not know allows batches, as MCP's default version 2025-03-26 does).
 */
export const MCP_SESSION_TABLES = {
  v16: `
CREATE TABLE IF NOT EXISTS mcp_sessions (session_id TEXT PRIMARY KEY, protocol_version TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS mcp_sessions_created ON mcp_sessions(created_at);`,
};

/** A session is remembered this long after its initialize (the MCP server's own sessions rarely last as long). */
export const MCP_SESSION_KEPT_MS = 30 * DAY_MS;

export class McpSessions {
  constructor(private readonly sql: SqlStorage) {}

  /** The session's negotiated protocol version, when it is one without batches; null otherwise. */
  version(sessionId: string, now: number): string | null {
    const row = this.sql.exec("SELECT protocol_version FROM mcp_sessions WHERE session_id = ? AND created_at > ?", sessionId, now - MCP_SESSION_KEPT_MS).toArray()[0];
    return row ? (row.protocol_version as string) : null;
  }

  /** A session began (its initialize answered) or ended (null: DELETE on the endpoint). */
  record(sessionId: string, protocolVersion: string | null, now: number): void {
    if (protocolVersion === null) this.forget(sessionId);
    else this.remember(sessionId, protocolVersion, now);
  }

  /** Remembers a session; sessions past their keeping time go at the same moment (so the table needs no timer). */
  private remember(sessionId: string, protocolVersion: string, now: number): void {
    this.sql.exec("DELETE FROM mcp_sessions WHERE created_at <= ?", now - MCP_SESSION_KEPT_MS);
    this.sql.exec(
      "INSERT INTO mcp_sessions (session_id, protocol_version, created_at) VALUES (?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET protocol_version = excluded.protocol_version, created_at = excluded.created_at",
      sessionId,
      protocolVersion,
      now,
    );
  }

  private forget(sessionId: string): void {
    this.sql.exec("DELETE FROM mcp_sessions WHERE session_id = ?", sessionId);
  }
}
