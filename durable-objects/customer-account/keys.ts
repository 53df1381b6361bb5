import { generateApiKey, newId, sha256Hex } from "../../src/keys";

export const KEY_TABLES = {
  v1: `
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  name TEXT,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);`,
  // Keys issued before then have no mac (signed = 0); the admin API lists them for rotation.
  v3: `ALTER TABLE api_keys ADD COLUMN signed INTEGER NOT NULL DEFAULT 0;`,
};

export interface KeyInfo {
  id: string;
  prefix: string;
  name: string | null;
  created_at: number;
  revoked_at: number | null;
  /** Carries a mac of KEY_SIGNING_SECRET, so the worker can check it before the object. */
  signed: boolean;
}

/** API keys, stored only as SHA-256 hashes; the key itself is shown once, at creation. */
export class KeyStore {
  constructor(
    private readonly sql: SqlStorage,
    private readonly signingSecret: () => string | undefined,
  ) {}

  async create(customerId: string, name: string | null): Promise<{ id: string; key: string; prefix: string; created_at: number; signed: boolean }> {
    const { key, prefix, signed } = await generateApiKey(customerId, this.signingSecret());
    const hash = await sha256Hex(key);
    const id = newId("key");
    const created_at = Date.now();
    this.sql.exec(
      "INSERT INTO api_keys (id, hash, prefix, name, created_at, signed) VALUES (?, ?, ?, ?, ?, ?)",
      id,
      hash,
      prefix,
      name,
      created_at,
      signed ? 1 : 0,
    );
    return { id, key, prefix, created_at, signed };
  }

  revoke(keyId: string): boolean {
    return this.sql.exec("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", Date.now(), keyId).rowsWritten > 0;
  }

  list(): KeyInfo[] {
    return this.sql
      .exec<Omit<KeyInfo, "signed"> & { signed: number }>("SELECT id, prefix, name, created_at, revoked_at, signed FROM api_keys ORDER BY created_at")
      .toArray()
      .map((row) => ({ ...row, signed: row.signed === 1 }));
  }

  isValid(keyHash: string): boolean {
    const row = this.sql.exec("SELECT revoked_at FROM api_keys WHERE hash = ?", keyHash).toArray()[0];
    return row !== undefined && row.revoked_at === null;
  }
}
