import type { KeyStore } from "../access/key-store";
import type { GrantBook } from "../credit/grants";
import type { Ledger } from "../credit/ledger";
import type { Wallet } from "../credit/wallet";
import type { ChargeLog, ChargeRow } from "../request/charges";
import type { HoldRow } from "../request/holds";
import type { MeterPending } from "../stripe/meter-pending";
import type { AccountStore } from "./account";
import type { BatchedWrites } from "./group-commit";

export const JOURNAL_TABLES = {
  v12: `
ALTER TABLE charges ADD COLUMN seq INTEGER;
ALTER TABLE charges ADD COLUMN pending_usage INTEGER NOT NULL DEFAULT 0;
ALTER TABLE account ADD COLUMN folded_seq INTEGER NOT NULL DEFAULT 0;`,
};

/**
 * Unfolded charges at which the next charge folds the journal in first (journal.makeRoom). It
 * bounds what a restart replays; 400, not 100, since a hot customer's charges share batch rows
 * (the replay reads a row per batch) and each fold writes about three rows (one-row-per-batch.md).
 */
export const FOLD_EVERY = 400;

/**
 * A charge kept back in memory. `pendingUsage` (the row's `pending_usage`) is what it owes Stripe,
 * decided when it was made: micro-cents of usage for a prepaid charge, the meter quantity (0 or 1)
 * for a post-paid one.
 */
export type JournaledCharge = Omit<ChargeRow, "status" | "refunded_at"> & { pendingUsage: number };

/**
 * The charge journal: a plain charge writes one row, its charge row, and nothing else. What it
 * moves (the grants it drains, its hour's usage row, the account's balance) changes in memory
 * only, and is written later, all at once, by fold(). The charge row is the durable record: an
 * object that restarts before a fold replays every charge row past the account's `folded_seq`
 * onto what SQLite holds, so no charge is lost and none is applied twice. A hold's take, extension
 * and settlement are journaled the same way, their hold row the record (request/hold-journal.ts).
 *
 * The rules that keep that true:
 * - fold() writes the kept-back rows and `folded_seq` in one transaction;
 * - every other write to the grants, the usage rows, a capped key's spend or the account folds first (their
 *   beforeWrite hook), so a written row never already holds an unfolded charge;
 * - every RPC other than authorize, finishIdempotent (which reads only its key's rows), extendHold
 *   and settleHold (which read only hold and charge rows from SQLite, and fold before a step
 *   written with its effects) folds before it starts, and the alarm before each timer's handler
 *   and the cron visit after each await, so readers of SQLite (summaries, reports, the rollup,
 *   pruning) see every charge;
 * - a charge's fallible writes (this fold when the journal is full, its timers) come before its
 *   row, and nothing after the row writes: a request that fails leaves nothing charged;
 * - a failed transaction reloads memory from SQLite and replays the journal (AccountContext.load).
 *
 * Under group commit (docs/design/one-row-per-batch.md) a batch's charges are held and written as
 * one row when the batch ends, before its commit (close()), or before anything else writes: the
 * fold, and every step written with its effects (AccountContext.atomically), write the held row
 * first, so SQLite never holds the effects of a charge whose row is not written.
 */
export class ChargeJournal implements BatchedWrites {
  /** The last sequence number given to a charge row. */
  private seq = 0;
  private unfolded = 0;
  /** A group-commit batch is running: charges are held for its row (open() to close()). */
  private batching = false;
  /** Charges held since open(), and how many of them are written (BatchedWrites). */
  kept = 0;
  written = 0;

  constructor(
    private readonly deps: {
      storage: DurableObjectStorage;
      account: AccountStore;
      grants: GrantBook;
      keys: KeyStore;
      ledger: Ledger;
      meterPending: MeterPending;
      wallet: Wallet;
      charges: ChargeLog;
      holds: { unfolded(foldedSeq: number): HoldRow[] };
      /** What a journaled hold event moved, applied again (request/hold-journal.ts). */
      replayHold: (hold: HoldRow, event: "take" | "extend" | "settle") => void;
      reload: () => void;
    },
  ) {}

  /**
   * Before a charge: folds when FOLD_EVERY charges are unfolded, so a fold that fails fails the
   * request before its charge row is written.
   */
  makeRoom(): void {
    // Not in the middle of a batch (its held charges would become a row of their own), unless the
    // batch alone has run the journal to twice its size: the next batch's first charge folds.
    if (this.unfolded >= FOLD_EVERY && (this.deps.charges.heldCount === 0 || this.unfolded >= 2 * FOLD_EVERY)) this.fold();
  }

  /**
   * Records a charge: its row first (a request id already charged fails right here, before
   * anything has moved), then the drain, the usage and the balance in memory. Nothing after the
   * row writes to SQLite.
   */
  record(charge: JournaledCharge): void {
    const seq = this.seq + 1;
    if (this.batching) {
      this.deps.charges.hold({ ...charge, seq });
      this.kept++;
    } else {
      this.deps.charges.insert(charge, { seq, pendingUsage: charge.pendingUsage });
    }
    this.seq = seq;
    this.unfolded++;
    this.applying(
      () => this.apply(charge),
      () => {
        if (!this.batching) return;
        this.deps.charges.unhold(charge.request_id);
        this.kept--;
      },
    );
  }

  /**
   * Records a hold's take or settlement (request/hold-journal.ts): `write` writes its row with the
   * sequence number (and may fail, before anything moved), then `apply` moves the money in memory.
   */
  recordHold(write: (seq: number) => void, apply: () => void): void {
    const seq = this.seq + 1;
    write(seq);
    this.seq = seq;
    this.unfolded++;
    this.applying(() => this.deferred(apply));
  }

  /** Moves the money in memory; if that throws, `undo` takes back what the step recorded and memory is reloaded from SQLite. */
  private applying(fn: () => void, undo: () => void = () => {}): void {
    try {
      fn();
    } catch (error) {
      undo();
      this.deps.reload();
      throw error;
    }
  }

  /** A group-commit batch starts: its charges are held for one row. */
  open(): void {
    this.batching = true;
    this.kept = 0;
    this.written = 0;
  }

  /**
   * Writes the held charges' row, outside any transaction (one that rolls back must not take it
   * with it). On failure they stay held, and stay applied in memory: close() writes them or drops them.
   */
  writeHeld(): void {
    this.deps.charges.writeHeld();
    this.written = this.kept;
  }

  /** The batch ran: its held charges' row is written before its commit; if it cannot be, none is charged. */
  close(): void {
    this.batching = false;
    try {
      this.writeHeld();
    } catch (error) {
      this.deps.charges.dropHeld();
      this.deps.reload();
      throw error;
    }
  }

  /** Writes what the unfolded charges moved, and how far that goes, in one transaction. */
  fold(): void {
    this.writeHeld();
    if (this.unfolded === 0) return;
    const { storage, grants, keys, ledger, meterPending, account } = this.deps;
    try {
      storage.transactionSync(() => {
        grants.flush();
        keys.flush();
        meterPending.flush();
        ledger.flush();
        account.flush({ folded_seq: this.seq });
      });
    } catch (error) {
      this.deps.reload();
      throw error;
    }
    this.unfolded = 0;
  }

  /**
   * After a (re)load from SQLite: the charges and hold events past `folded_seq`, applied again in
   * memory in the order they were made, then the charges a running batch holds (still to be
   * written, or dropped by close()).
   */
  replay(): void {
    const folded = this.deps.account.row.folded_seq;
    const charges = [...this.deps.charges.journaledAfter(folded), ...this.deps.charges.holding];
    const events: [number, () => void][] = charges.map(({ seq, ...charge }) => [seq, () => this.apply(charge)]);
    for (const hold of this.deps.holds.unfolded(folded)) {
      if (hold.taken_seq !== null && hold.taken_seq > folded) events.push([hold.taken_seq, () => this.deferred(() => this.deps.replayHold(hold, "take"))]);
      if (hold.extended_seq !== null && hold.extended_seq > folded) events.push([hold.extended_seq, () => this.deferred(() => this.deps.replayHold(hold, "extend"))]);
      if (hold.settled_seq !== null && hold.settled_seq > folded) events.push([hold.settled_seq, () => this.deferred(() => this.deps.replayHold(hold, "settle"))]);
    }
    events.sort((a, b) => a[0] - b[0]);
    // Set first: should a replay ever throw, the next charge still never reuses a sequence number.
    this.seq = events.length ? events[events.length - 1]![0] : folded;
    this.unfolded = events.length;
    for (const [, apply] of events) apply();
  }

  /** Runs `fn` with every store the journal folds keeping its writes in memory. */
  private deferred(fn: () => void): void {
    const { grants, keys, ledger, meterPending, account } = this.deps;
    const stores = [grants, keys, ledger, meterPending, account];
    for (const store of stores) store.defer(true);
    try {
      fn();
    } finally {
      for (const store of stores) store.defer(false);
    }
  }

  /** What wallet.charge does for a request, kept back in memory. */
  private apply(charge: JournaledCharge): void {
    const { keys, meterPending, account, wallet } = this.deps;
    this.deferred(() => {
      const prepaid = charge.plan === "prepaid";
      const accrual = prepaid && charge.pendingUsage ? { pending_usage: account.row.pending_usage + charge.pendingUsage } : {};
      wallet.charge({ meter: charge.meter, bucket: charge.bucket, now: charge.created_at }, charge.amount, accrual, 1, charge.receipt);
      // Post-paid usage owed to Stripe: the meter quantity the charge recorded (1 when Stripe was on then).
      if (!prepaid && charge.pendingUsage) meterPending.add(charge.meter, charge.pendingUsage);
      // A capped key's period spend (nothing for a key without a cap), counted in the charge's period.
      if (charge.key_id) keys.spend(charge.key_id, charge.amount, charge.created_at);
    });
  }
}
