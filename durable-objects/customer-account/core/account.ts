import type { CustomerProfile, Plan, ProfilePatch } from "../../../src/lib/customer";

export const ACCOUNT_TABLES = {
  v1: `
CREATE TABLE IF NOT EXISTS account (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  customer_id TEXT NOT NULL,
  email TEXT, name TEXT,
  metadata TEXT NOT NULL DEFAULT '{}',
  plan TEXT NOT NULL DEFAULT 'prepaid',
  minimum_balance_cents INTEGER,
  balance INTEGER NOT NULL DEFAULT 0,
  pending_usage INTEGER NOT NULL DEFAULT 0,
  last_topup_cents INTEGER,
  deleted_at INTEGER,
  profile_event_at INTEGER NOT NULL DEFAULT 0,
  stripe_balance INTEGER,
  stripe_balance_at INTEGER,
  reconcile_needed INTEGER NOT NULL DEFAULT 0,
  directory_seq INTEGER NOT NULL DEFAULT 0,
  directory_due_at INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);`,
  v3: `
ALTER TABLE account ADD COLUMN stripe_currency TEXT;
ALTER TABLE account ADD COLUMN last_reconciled_at INTEGER;
ALTER TABLE account ADD COLUMN reconcile_attempted_at INTEGER;
ALTER TABLE account ADD COLUMN refunds_denied INTEGER NOT NULL DEFAULT 0;
ALTER TABLE account ADD COLUMN last_refund_denied_at INTEGER;`,
  v19: `
ALTER TABLE account ADD COLUMN report_batching INTEGER NOT NULL DEFAULT 0;
ALTER TABLE account ADD COLUMN report_forced INTEGER NOT NULL DEFAULT 0;
ALTER TABLE account ADD COLUMN usage_cut_at INTEGER;`,
};

/** The one account row: profile, balance (micro-cents) and bookkeeping for Stripe and the directory. */
export interface AccountRow {
  customer_id: string;
  email: string | null;
  name: string | null;
  metadata: string;
  plan: Plan;
  minimum_balance_cents: number | null;
  /** Micro-cents: what remains of the grants, less debt (always the ledger's sum). */
  balance: number;
  /** Micro-cents owed: charges no grant covered (an overdraft the minimum allowed) and clawbacks of spent credit. */
  debt: number;
  /** Prepaid usage (micro-cents) not yet cut into a Stripe report. */
  pending_usage: number;
  last_topup_cents: number | null;
  deleted_at: number | null;
  profile_event_at: number;
  stripe_balance: number | null;
  stripe_balance_at: number | null;
  /** The Stripe customer's currency, when Stripe has set one. */
  stripe_currency: string | null;
  last_reconciled_at: number | null;
  /** The last periodic reconcile tried (succeeded or not): the next is due an interval later. */
  reconcile_attempted_at: number | null;
  reconcile_needed: number;
  /** Failed requests left charged because the refund limit was reached. */
  refunds_denied: number;
  last_refund_denied_at: number | null;
  directory_seq: number;
  directory_due_at: number | null;
  /** 1 while the directory shard batches reports (STRIPE_BUDGET): usage waits until it is worth a call. */
  report_batching: number;
  /** 1 when usage must go with the next cycle whatever its size (a cohort crossing, a plan change). */
  report_forced: number;
  /** When unreported usage was last cut into a report (batching's max_report_delay_seconds counts from it). */
  usage_cut_at: number | null;
  /** The last journaled charge folded into the grants, the usage rows and this row (journal.ts). */
  folded_seq: number;
  created_at: number;
  updated_at: number;
}

/** The account row, cached in memory and written through on every change (or kept back, see defer). */
export class AccountStore {
  private current: AccountRow | null = null;
  /** Fields changed while deferring (journaled charges), written by flush(). */
  private pending: Partial<AccountRow> = {};
  private deferring = false;
  /** Runs before any write goes through: the context folds the journal first (journal.ts). */
  beforeWrite: () => void = () => {};

  constructor(private readonly sql: SqlStorage) {}

  load(): void {
    this.current = (this.sql.exec("SELECT * FROM account WHERE id = 1").toArray()[0] as unknown as AccountRow | undefined) ?? null;
    this.pending = {};
    this.deferring = false;
  }

  get exists(): boolean {
    return this.current !== null;
  }

  /** The row; only called once the account exists. */
  get row(): AccountRow {
    if (!this.current) throw new Error("no account in this object");
    return this.current;
  }

  create(customerId: string, now: number): void {
    this.sql.exec("INSERT INTO account (id, customer_id, created_at, updated_at) VALUES (1, ?, ?, ?)", customerId, now, now);
    this.load();
  }

  set(fields: Partial<AccountRow>): void {
    if (this.deferring) {
      Object.assign(this.pending, fields);
      Object.assign(this.row, fields);
      return;
    }
    this.beforeWrite();
    this.write(fields);
  }

  /** While on, changed fields are kept in memory until flush(). */
  defer(on: boolean): void {
    this.deferring = on;
  }

  /** Writes what was kept back, with `also`, in one statement. */
  flush(also: Partial<AccountRow> = {}): void {
    const fields = { ...this.pending, ...also };
    this.pending = {};
    if (Object.keys(fields).length) this.write(fields);
  }

  private write(fields: Partial<AccountRow>): void {
    const entries = Object.entries({ ...fields, updated_at: Date.now() });
    this.sql.exec(`UPDATE account SET ${entries.map(([k]) => `${k} = ?`).join(", ")} WHERE id = 1`, ...entries.map(([, v]) => (v === undefined ? null : (v as SqlStorageValue))));
    Object.assign(this.row, fields);
  }

  profile(): CustomerProfile {
    const a = this.row;
    return {
      id: a.customer_id,
      email: a.email,
      name: a.name,
      metadata: JSON.parse(a.metadata) as Record<string, string>,
      plan: a.plan,
      minimum_balance_cents: a.minimum_balance_cents,
      deleted: a.deleted_at !== null,
    };
  }

  /** The fields a profile patch changes; `planChanged` tells the caller to settle with Stripe. */
  patchFields(patch: ProfilePatch): { fields: Partial<AccountRow>; planChanged: boolean } {
    const fields: Partial<AccountRow> = {};
    if (patch.email !== undefined) fields.email = patch.email;
    if (patch.name !== undefined) fields.name = patch.name;
    if (patch.metadata !== undefined) fields.metadata = JSON.stringify(patch.metadata);
    const planChanged = patch.plan !== undefined && patch.plan !== this.row.plan;
    if (planChanged) fields.plan = patch.plan!;
    if (patch.minimum_balance_cents !== undefined) fields.minimum_balance_cents = patch.minimum_balance_cents;
    return { fields, planChanged };
  }
}
