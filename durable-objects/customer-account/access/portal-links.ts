import { generatePortalLinkToken, sha256Hex } from "../../../src/lib/api-key-format";
import { DAY_MS } from "../../../src/lib/time";

export const PORTAL_TABLES = {
  v7: `CREATE TABLE IF NOT EXISTS portal_links (
  hash TEXT PRIMARY KEY,
  expires_at INTEGER NOT NULL,
  used_at INTEGER,
  created_at INTEGER NOT NULL
);`,
};

/**
 * One-time customer portal links: the token is shown once (in the link) and stored as its
 * SHA-256, like API keys. Opening the link only looks it up (to name the account on a
 * confirmation page); confirming consumes it.
 */
export class PortalLinks {
  constructor(
    private readonly sql: SqlStorage,
    private readonly signingSecret: () => string | undefined,
  ) {}

  /**
   * A new link token `<customerId>.<secret>[.<mac>]` (the id routes the worker to this object):
   * an API key's shape without its prefix, signed under the portal links' own key derived from
   * KEY_SIGNING_SECRET, so the worker refuses a made-up id before any object is touched.
   */
  async create(customerId: string, expiresAt: number, now: number): Promise<string> {
    const token = await generatePortalLinkToken(customerId, this.signingSecret());
    this.sql.exec("DELETE FROM portal_links WHERE expires_at < ?", now - DAY_MS);
    this.sql.exec("INSERT INTO portal_links (hash, expires_at, created_at) VALUES (?, ?, ?)", await sha256Hex(token), expiresAt, now);
    return token;
  }

  /** Whether the token is unexpired and unused; changes nothing (link scanners open links too). */
  isOpen(hash: string, now: number): boolean {
    return this.sql.exec("SELECT 1 FROM portal_links WHERE hash = ? AND used_at IS NULL AND expires_at > ?", hash, now).toArray().length > 0;
  }

  /** True once per unexpired token; every later try (or an expired token) is false. */
  consume(hash: string, now: number): boolean {
    return this.sql.exec("UPDATE portal_links SET used_at = ? WHERE hash = ? AND used_at IS NULL AND expires_at > ?", now, hash, now).rowsWritten > 0;
  }
}
