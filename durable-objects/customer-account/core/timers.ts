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
  /** Due times, mirrored from the table (so a timer already due earlier costs no write). */
  private due = new Map<string, number>();
  /** The alarm time last asked of the runtime; null when unknown (a fresh instance, an alarm run). */
  private armedAt: number | null = null;

  constructor(
    private readonly sql: SqlStorage,
    private readonly storage: DurableObjectStorage,
  ) {}

  load(): void {
    this.due = new Map(
      this.sql
        .exec("SELECT name, due_at FROM timers")
        .toArray()
        .map((r) => [r.name as string, r.due_at as number]),
    );
  }

  /** Due no later than `at` (keeps an earlier due time). */
  at(name: string, at: number): void {
    const current = this.due.get(name);
    // Already due earlier: no write, but make sure the alarm is armed for it (after a load or a
    // migration that wrote timers, it may not be yet).
    if (current !== undefined && current <= at) this.rearm();
    else this.set(name, at);
  }

  /** Due exactly at `at`, or not at all with null. */
  set(name: string, at: number | null): void {
    if (at === null) {
      this.sql.exec("DELETE FROM timers WHERE name = ?", name);
      this.due.delete(name);
    } else {
      this.sql.exec("INSERT INTO timers (name, due_at) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET due_at = excluded.due_at", name, at);
      this.due.set(name, at);
    }
    this.rearm();
  }

  dueAt(name: string): number | null {
    return this.due.get(name) ?? null;
  }

  /** At the start of an alarm run: the alarm that fired is spent; removes and returns the due timers. */
  takeDue(now: number): string[] {
    this.armedAt = null;
    const names = this.sql
      .exec("DELETE FROM timers WHERE due_at <= ? RETURNING name", now)
      .toArray()
      .map((r) => r.name as string);
    for (const name of names) this.due.delete(name);
    return names;
  }

  /** Points the alarm at the earliest timer (written with the caller's other writes; no await needed). */
  rearm(): void {
    let next: number | null = null;
    for (const at of this.due.values()) if (next === null || at < next) next = at;
    if (next === null || next === this.armedAt) return;
    this.armedAt = next;
    // A due time in the past (0 after an upgrade) fires at once; the runtime refuses 0 itself.
    void this.storage.setAlarm(Math.max(next, 1));
  }
}
