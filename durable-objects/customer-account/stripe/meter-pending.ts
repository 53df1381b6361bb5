/**
 * Post-paid usage not reported yet, as a quantity per meter (`meter_pending`, owned by reports.ts).
 * A journaled post-paid charge (core/journal.ts) adds to it in memory only; the fold writes it
 * with the grants, the usage rows and the balance, and a restart replays it from the charge rows.
 */
export class MeterPending {
  private readonly pending = new Map<string, number>();
  private deferring = false;
  /** Called before a write that is not deferred: the journal folds in first. */
  beforeWrite: () => void = () => {};

  constructor(private readonly sql: SqlStorage) {}

  add(meter: string, quantity: number): void {
    if (this.deferring) {
      this.pending.set(meter, (this.pending.get(meter) ?? 0) + quantity);
      return;
    }
    this.beforeWrite();
    this.write(meter, quantity);
  }

  /** While on, quantities are summed in memory until flush(). */
  defer(on: boolean): void {
    this.deferring = on;
  }

  /** Writes each meter's kept-back quantity once. */
  flush(): void {
    for (const [meter, quantity] of this.pending) this.write(meter, quantity);
    this.pending.clear();
  }

  /** After a (re)load from SQLite: nothing kept back (the journal's replay adds it again). */
  reset(): void {
    this.pending.clear();
    this.deferring = false;
  }

  private write(meter: string, quantity: number): void {
    this.sql.exec(
      `INSERT INTO meter_pending (meter, quantity) VALUES (?, ?)
       ON CONFLICT (meter) DO UPDATE SET quantity = quantity + excluded.quantity`,
      meter,
      quantity,
    );
  }
}
