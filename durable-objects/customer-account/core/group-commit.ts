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
 *
 * Steps may keep writes back for the batch's end (`writes`: the journal holds a batch's charges for
 * one row, docs/design/one-row-per-batch.md). Those are written before the batch's commit; when
 * they cannot be, every step whose write was still kept back is rejected, the others stand.
 */
export interface BatchedWrites {
  open(): void;
  /** Writes kept back since open(): a step that raised it kept one back, numbered by it. */
  readonly kept: number;
  /** How many of those are written already (numbers up to it). */
  readonly written: number;
  /** Writes what is still kept back; throws when it cannot (then none of that is written). */
  close(): void;
}

type Outcome = { ok: true; value: unknown; kept: number } | { ok: false; error: unknown };

export class GroupCommit {
  private queue: { step: () => unknown; resolve: (value: unknown) => void; reject: (error: unknown) => void }[] = [];
  private committing = false;
  /** The last batch had more than one step: the next request at an idle object waits a turn for company. */
  private concurrent = false;
  /** Commits made and steps they carried, for the benchmark's and the tests' view of the grouping. */
  readonly stats = { commits: 0, steps: 0, largest: 0 };

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly writes?: BatchedWrites,
  ) {}

  /**
   * Runs `step` now when no commit is pending (its reply leaves once that commit is durable: the
   * runtime's output gate holds it), or queues it for the batch that runs when the pending commit
   * is durable. While requests come concurrently (the last batch had more than one step), one that
   * finds no commit pending is queued for the event loop's next turn instead of running alone, so
   * the requests delivered with it share its batch and its charge row (one-row-per-batch.md).
   */
  run<T>(step: () => T): T | Promise<T> {
    if (this.committing || this.concurrent) {
      const result = new Promise<T>((resolve, reject) => {
        this.queue.push({ step, resolve: resolve as (value: unknown) => void, reject });
      });
      if (!this.committing) {
        this.committing = true;
        setTimeout(() => void this.drain(), 0);
      }
      return result;
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
  private execute(batch: { step: () => unknown }[]): Outcome[] {
    this.stats.commits++;
    this.stats.steps += batch.length;
    this.stats.largest = Math.max(this.stats.largest, batch.length);
    this.concurrent = batch.length > 1;
    const writes = this.writes;
    writes?.open();
    const outcomes = batch.map(({ step }): Outcome => {
      const before = writes?.kept ?? 0;
      try {
        const value = step();
        const kept = writes?.kept ?? 0;
        return { ok: true, value, kept: kept > before ? kept : 0 };
      } catch (error) {
        return { ok: false, error };
      }
    });
    try {
      writes?.close();
    } catch (error) {
      const written = writes!.written;
      return outcomes.map((outcome) => (outcome.ok && outcome.kept > written ? { ok: false, error } : outcome));
    }
    return outcomes;
  }

  /** The steps queued during the pending commit (or the turn) run as one batch, and so on. */
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
