/**
 * Group commit for a hot customer: requests that arrive while the object's last writes are being
 * committed share the next commit. Each step still runs synchronously, one at a time and in
 * arrival order, so no step can spend what another spent; what changes is that the steps queued
 * during one commit run back to back and are made durable by one commit instead of one each.
 *
 * Every caller gets its result only once the commit holding its own writes is durable (a queued
 * step's reply waits for `storage.sync()`; the runtime's output gate holds every reply until then
 * anyway), so:
 * - no reply leaves before its debit is durable;
 * - no request passes without credit (each step sees every step before it).
 *
 * A step that throws rejects only its own caller: each step's writes are atomic on their own (a
 * plain charge is one row, see journal.ts; anything more runs in its own transaction). A failed
 * commit rejects every caller whose writes it held.
 */
export class GroupCommit {
  private queue: { step: () => unknown; resolve: (value: unknown) => void; reject: (error: unknown) => void }[] = [];
  private committing = false;
  /** Commits made and steps they carried, for the benchmark's and the tests' view of the grouping. */
  readonly stats = { commits: 0, steps: 0, largest: 0 };

  constructor(private readonly storage: DurableObjectStorage) {}

  /**
   * Runs `step` now when no commit is pending (its reply leaves once that commit is durable: the
   * runtime's output gate holds it), or queues it for the batch that runs when the pending commit
   * is durable.
   */
  run<T>(step: () => T): T | Promise<T> {
    if (this.committing) {
      return new Promise<T>((resolve, reject) => {
        this.queue.push({ step, resolve: resolve as (value: unknown) => void, reject });
      });
    }
    const [outcome] = this.execute([{ step }]);
    this.committing = true;
    void this.storage.sync().then(
      () => this.drain(),
      () => this.drain(),
    );
    if (!outcome!.ok) throw outcome!.error;
    return outcome!.value as T;
  }

  /** Runs a batch's steps, one after another; each step's outcome. */
  private execute(batch: { step: () => unknown }[]): ({ ok: true; value: unknown } | { ok: false; error: unknown })[] {
    this.stats.commits++;
    this.stats.steps += batch.length;
    this.stats.largest = Math.max(this.stats.largest, batch.length);
    return batch.map(({ step }) => {
      try {
        return { ok: true as const, value: step() };
      } catch (error) {
        return { ok: false as const, error };
      }
    });
  }

  /** The pending commit is durable: the steps that queued meanwhile run as one batch, and so on. */
  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0);
      const outcomes = this.execute(batch);
      try {
        await this.storage.sync();
      } catch (error) {
        for (const { reject } of batch) reject(error);
        continue;
      }
      batch.forEach(({ resolve, reject }, i) => {
        const outcome = outcomes[i]!;
        if (outcome.ok) resolve(outcome.value);
        else reject(outcome.error);
      });
    }
    this.committing = false;
  }
}
