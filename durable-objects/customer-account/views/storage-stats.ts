/** Rows per table of one customer's object, and its database size: what its state costs. */
export function storageStats(storage: DurableObjectStorage): { database_bytes: number; tables: Record<string, number> } {
  const sql = storage.sql;
  // SQLite's own tables and the runtime's (`_cf_…`) are not the gateway's state.
  const names = sql
    .exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' ORDER BY name")
    .toArray()
    .map((r) => r.name as string);
  return {
    database_bytes: sql.databaseSize,
    tables: Object.fromEntries(names.map((name) => [name, sql.exec(`SELECT COUNT(*) AS n FROM "${name}"`).one().n as number])),
  };
}
