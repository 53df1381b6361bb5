/**
 * The one migration runner of the three objects. Each object's schema is an append-only list of
 * migrations; migration N takes a database at version N-1 to version N, each once, in its own
 * transaction, under blockConcurrencyWhile. The version lives in `schema_version`; an object
 * created before versions existed is at version 0, so every first migration is all
 * `CREATE … IF NOT EXISTS` and runs harmlessly over it.
 */

export function schemaVersion(sql: SqlStorage): number {
  const table = sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").toArray();
  if (!table.length) return 0;
  return (sql.exec("SELECT version FROM schema_version WHERE id = 1").toArray()[0]?.version as number | undefined) ?? 0;
}

/** Brings the database to the last of `migrations`; returns the version it started from. */
export function migrate(storage: DurableObjectStorage, migrations: readonly string[]): number {
  const sql = storage.sql;
  const from = schemaVersion(sql);
  for (let version = from + 1; version <= migrations.length; version++) {
    storage.transactionSync(() => {
      sql.exec(migrations[version - 1]!);
      sql.exec("CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, migrated_at INTEGER NOT NULL)");
      sql.exec(
        `INSERT INTO schema_version (id, version, migrated_at) VALUES (1, ?, ?)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version, migrated_at = excluded.migrated_at`,
        version,
        Date.now(),
      );
    });
  }
  return from;
}
