import type { KeyStore } from "../access/key-store";
import type { GrantBook, Receipt } from "../credit/grants";
import type { Ledger } from "../credit/ledger";
import type { Wallet } from "../credit/wallet";
import type { ChargeLog, ChargeRow } from "../request/charges";
import type { HoldRow } from "../request/holds";
import type { MeterPending } from "../stripe/meter-pending";
import type { AccountStore } from "./account";

export const JOURNAL_TABLES = {
  v12: `
ALTER TABLE charges ADD COLUMN seq INTEGER;
ALTER TABLE charges ADD COLUMN pending_usage INTEGER NOT NULL DEFAULT 0;
ALTER TABLE account ADD COLUMN folded_seq INTEGER NOT NULL DEFAULT 0;`,
};

/** Unfolded charges at which the next charge folds the journal in first (journal.makeRoom). */
export const FOLD_EVERY = 100;

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
 * - every RPC other than authorize, extendHold and settleHold (which read only hold and charge
 *   rows from SQLite, and fold before a step written with its effects) folds before it starts,
 *   and the alarm before each timer's handler and the cron visit after each await, so readers of
 *   SQLite (summaries, reports, the rollup, pruning) see every charge;
 * - a charge's fallible writes (this fold when the journal is full, its timers) come before its
 *   row, and nothing after the row writes: a request that fails leaves nothing charged;
 * - a failed transaction reloads memory from SQLite and replays the journal (AccountContext.load).
 */
export class ChargeJournal {
  /** The last sequence number given to a charge row. */
  private seq = 0;
  private unfolded = 0;

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
    if (this.unfolded >= FOLD_EVERY) this.fold();
  }

  /**
   * Records a charge: its row first (a request id already charged fails right here, before
   * anything has moved), then the drain, the usage and the balance in memory. Nothing after the
   * row writes to SQLite.
   */
  record(charge: JournaledCharge): void {
    const seq = this.seq + 1;
    this.deps.charges.insert(charge, { seq, pendingUsage: charge.pendingUsage });
    this.seq = seq;
    this.unfolded++;
    this.applying(() => this.apply(charge));
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

  private applying(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.deps.reload();
      throw error;
    }
  }

  /** Writes what the unfolded charges moved, and how far that goes, in one transaction. */
  fold(): void {
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
   * memory in the order they were made.
   */
  replay(sql: SqlStorage): void {
    const folded = this.deps.account.row.folded_seq;
    const rows = sql
      .exec("SELECT seq, request_id, meter, bucket, plan, amount, receipt, key_id, created_at, pending_usage FROM charges WHERE seq > ? ORDER BY seq", folded)
      .toArray();
    const events: [number, () => void][] = rows.map((row) => [row.seq as number, () => this.applyRow(row)]);
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

  private applyRow(row: Record<string, SqlStorageValue>): void {
    this.apply({
      request_id: row.request_id as string,
      meter: row.meter as string,
      bucket: row.bucket as number,
      plan: row.plan as ChargeRow["plan"],
      amount: row.amount as number,
      receipt: JSON.parse(row.receipt as string) as Receipt,
      key_id: row.key_id as string | null,
      created_at: row.created_at as number,
      pendingUsage: row.pending_usage as number,
    });
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
