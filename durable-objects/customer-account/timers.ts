export const TIMER_TABLES = {
  v2: `CREATE TABLE IF NOT EXISTS timers (name TEXT PRIMARY KEY, due_at INTEGER NOT NULL);
INSERT INTO timers (name, due_at) VALUES ('directory', 0) ON CONFLICT (name) DO NOTHING;`,
};

/**
 * An object has one alarm; modules share it through named timers, kept in SQLite so they survive
 * eviction. The alarm is always set to the earliest due timer; when it fires, every due timer is
 * cleared and its handler runs (a handler sets its timer again if it has more to do).
 */
export class Timers {
  /** The alarm time last asked of the runtime; null when unknown (a fresh instance, an alarm run). */
  private armedAt: number | null = null;

  constructor(
    private readonly sql: SqlStorage,
    private readonly storage: DurableObjectStorage,
  ) {}

  /** Due no later than `at` (keeps an earlier due time). */
  at(name: string, at: number): void {
    this.sql.exec(
      "INSERT INTO timers (name, due_at) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET due_at = MIN(due_at, excluded.due_at)",
      name,
      at,
    );
    this.rearm();
  }

  /** Due exactly at `at`, or not at all with null. */
  set(name: string, at: number | null): void {
    if (at === null) this.sql.exec("DELETE FROM timers WHERE name = ?", name);
    else this.sql.exec("INSERT INTO timers (name, due_at) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET due_at = excluded.due_at", name, at);
    this.rearm();
  }

  dueAt(name: string): number | null {
    return (this.sql.exec("SELECT due_at FROM timers WHERE name = ?", name).toArray()[0]?.due_at as number | undefined) ?? null;
  }

  /** At the start of an alarm run: the alarm that fired is spent; removes and returns the due timers. */
  takeDue(now: number): string[] {
    this.armedAt = null;
    return this.sql.exec("DELETE FROM timers WHERE due_at <= ? RETURNING name", now).toArray().map((r) => r.name as string);
  }

  /** Points the alarm at the earliest timer (written with the caller's other writes; no await needed). */
  rearm(): void {
    const next = this.sql.exec("SELECT MIN(due_at) AS t FROM timers").one().t as number | null;
    if (next === null || next === this.armedAt) return;
    this.armedAt = next;
    // A due time in the past (0 after an upgrade) fires at once; the runtime refuses 0 itself.
    void this.storage.setAlarm(Math.max(next, 1));
  }
}
