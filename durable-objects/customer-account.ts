import { DurableObject } from "cloudflare:workers";
import type Stripe from "stripe";
import { COHORTS, getConfig, meterByName, type Cohort, type Config } from "../src/config";
import { sendViaMailChannels } from "../src/email/mailchannels";
import { generateApiKey, newId, sha256Hex } from "../src/keys";
import { MAX_AMOUNT_CENTS, MICROS_PER_CENT, centsToMicros, formatCents, formatMoney, microsToWholeCents } from "../src/money";
import { describeError, isTransientStripeError, stripeClient } from "../src/stripe/client";
import { mergeValues } from "../src/merge";
import { escapeHtml, renderString } from "../src/template";
import type { AuthorizeResult, CustomerProfile, CycleResult, DirectorySnapshot, Plan, ProfilePatch } from "../src/types";
import type { Directory } from "./directory";

const SCHEMA = `
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
);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  name TEXT,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS ledger (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  meter TEXT,
  bucket INTEGER,
  amount INTEGER NOT NULL,
  count INTEGER NOT NULL DEFAULT 1,
  reference TEXT UNIQUE,
  reason TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_aggregate ON ledger(kind, meter, bucket) WHERE kind IN ('usage', 'refund');
CREATE TABLE IF NOT EXISTS meter_pending (meter TEXT PRIMARY KEY, quantity INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS reports (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  report_id TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  amount INTEGER NOT NULL,
  meter TEXT,
  event_name TEXT,
  event_timestamp INTEGER,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  verify INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  last_error TEXT,
  stripe_id TEXT,
  created_at INTEGER NOT NULL,
  sent_at INTEGER
);
CREATE INDEX IF NOT EXISTS reports_status ON reports(status, seq);
CREATE TABLE IF NOT EXISTS stripe_events (id TEXT PRIMARY KEY, type TEXT NOT NULL, received_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS invoices (id TEXT PRIMARY KEY, status TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cohorts (
  cohort TEXT PRIMARY KEY,
  enrollment INTEGER NOT NULL,
  entered_at INTEGER NOT NULL,
  exited_at INTEGER
);
CREATE TABLE IF NOT EXISTS cohort_history (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  cohort TEXT NOT NULL, enrollment INTEGER NOT NULL, entered_at INTEGER NOT NULL, exited_at INTEGER
);
CREATE TABLE IF NOT EXISTS emails (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  cohort TEXT NOT NULL,
  enrollment INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  to_email TEXT NOT NULL,
  subject TEXT NOT NULL,
  text TEXT NOT NULL,
  html TEXT,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  sent_at INTEGER,
  UNIQUE (cohort, enrollment, seq)
);
`;

const STRIPE_EVENT_RETENTION_MS = 30 * 86_400_000;
const MAX_REPORT_ATTEMPTS = 20;
const MAX_EMAIL_ATTEMPTS = 8;
/** Stripe keeps idempotency keys at least 24 hours; past this age a retry is verified first. */
const IDEMPOTENCY_SAFE_MS = 23 * 3_600_000;

type Row = Record<string, SqlStorageValue>;

interface AccountRow {
  customer_id: string;
  email: string | null;
  name: string | null;
  metadata: string;
  plan: Plan;
  minimum_balance_cents: number | null;
  balance: number;
  pending_usage: number;
  last_topup_cents: number | null;
  deleted_at: number | null;
  profile_event_at: number;
  stripe_balance: number | null;
  stripe_balance_at: number | null;
  reconcile_needed: number;
  directory_seq: number;
  directory_due_at: number | null;
  created_at: number;
  updated_at: number;
}

interface ReportRow {
  seq: number;
  report_id: string;
  kind: "usage_debit" | "grant" | "topup" | "meter_event";
  idempotency_key: string;
  amount: number;
  meter: string | null;
  event_name: string | null;
  event_timestamp: number | null;
  status: "pending" | "sent" | "failed";
  attempts: number;
  verify: number;
  next_attempt_at: number | null;
  last_error: string | null;
  stripe_id: string | null;
  created_at: number;
  sent_at: number | null;
}

interface EmailRow {
  id: number;
  cohort: Cohort;
  enrollment: number;
  seq: number;
  to_email: string;
  subject: string;
  text: string;
  html: string | null;
  status: "sending" | "sent" | "outbox" | "retry" | "failed" | "unknown";
  attempts: number;
  next_attempt_at: number | null;
  last_error: string | null;
  created_at: number;
  sent_at: number | null;
}

interface GrantInput {
  customerId: string;
  amountCents: number;
  reason: string;
  reference?: string;
  kind?: "grant" | "topup";
}

interface GrantResult {
  applied: boolean;
  /** The reference was used before with another amount. */
  conflict: boolean;
  balanceMicros: number;
  entryId: number | null;
}

interface Membership {
  enrollment: number;
  entered_at: number;
}

function backoffMs(attempts: number): number {
  return Math.min(30_000 * 2 ** Math.max(0, attempts - 1), 3_600_000);
}

/**
 * One customer's account: profile, API key hashes, credit balance and ledger, cohort
 * membership, Stripe reports and behavioral emails. Every balance change is synchronous SQL
 * with no await in between, so concurrent requests can never overdraw it.
 */
export class CustomerAccount extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private account: AccountRow | null = null;
  private cohorts = new Map<Cohort, Membership>();
  private lockTail: Promise<unknown> = Promise.resolve();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    ctx.blockConcurrencyWhile(async () => {
      // The schema is written with the account, so a request with a made-up customer id
      // (a forged key) leaves no storage behind.
      if (this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'account'").toArray().length) {
        this.sql.exec(SCHEMA);
        this.load();
      }
    });
  }

  private get config(): Config {
    return getConfig(this.env);
  }

  private load(): void {
    this.account = (this.sql.exec("SELECT * FROM account WHERE id = 1").toArray()[0] as unknown as AccountRow) ?? null;
    this.cohorts.clear();
    for (const row of this.sql.exec("SELECT cohort, enrollment, entered_at FROM cohorts WHERE exited_at IS NULL")) {
      this.cohorts.set(row.cohort as Cohort, { enrollment: row.enrollment as number, entered_at: row.entered_at as number });
    }
  }

  /** Serializes work that awaits Stripe or MailChannels; the request path never takes it. */
  private withLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lockTail.then(fn, fn);
    this.lockTail = run.catch(() => undefined);
    return run;
  }

  /** Several writes as one transaction; on failure the in-memory copy is reloaded from SQLite. */
  private atomically<T>(fn: () => T): T {
    try {
      return this.ctx.storage.transactionSync(fn);
    } catch (error) {
      this.load();
      throw error;
    }
  }

  private setAccount(fields: Partial<AccountRow>): void {
    const entries = Object.entries({ ...fields, updated_at: Date.now() });
    this.sql.exec(
      `UPDATE account SET ${entries.map(([k]) => `${k} = ?`).join(", ")} WHERE id = 1`,
      ...entries.map(([, v]) => (v === undefined ? null : (v as SqlStorageValue))),
    );
    Object.assign(this.account!, fields);
  }

  private ensureAccount(customerId: string): AccountRow {
    if (!this.account) {
      this.sql.exec(SCHEMA);
      const now = Date.now();
      this.sql.exec(
        "INSERT INTO account (id, customer_id, created_at, updated_at) VALUES (1, ?, ?, ?)",
        customerId,
        now,
        now,
      );
      this.load();
      this.scheduleDirectorySync();
    }
    return this.account!;
  }

  private profile(): CustomerProfile {
    const a = this.account!;
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

  private minimumMicros(): number {
    return centsToMicros(this.account!.minimum_balance_cents ?? this.config.GOVERNANCE.minimum_balance_cents);
  }

  private unpaid(): boolean {
    return this.sql.exec("SELECT 1 FROM invoices WHERE status = 'failed' LIMIT 1").toArray().length > 0;
  }

  // ---------------------------------------------------------------- profile and keys

  upsertProfile(customerId: string, patch: ProfilePatch): { created: boolean; customer: CustomerProfile } {
    const created = this.account === null;
    this.ensureAccount(customerId);
    const fields: Partial<AccountRow> = {};
    if (patch.email !== undefined) fields.email = patch.email;
    if (patch.name !== undefined) fields.name = patch.name;
    if (patch.metadata !== undefined) fields.metadata = JSON.stringify(patch.metadata);
    if (patch.plan !== undefined && patch.plan !== this.account!.plan) {
      fields.plan = patch.plan;
      // Settle with Stripe under the new plan: prepaid takes its balance from Stripe again.
      if (this.config.stripeEnabled) fields.reconcile_needed = 1;
    }
    if (patch.minimum_balance_cents !== undefined) fields.minimum_balance_cents = patch.minimum_balance_cents;
    if (Object.keys(fields).length) this.setAccount(fields);
    this.afterBalanceChange();
    this.scheduleDirectorySync();
    return { created, customer: this.profile() };
  }

  async createKey(name: string | null): Promise<{ id: string; key: string; prefix: string; created_at: number } | null> {
    if (!this.account) return null;
    const { key, prefix } = generateApiKey(this.account.customer_id);
    const hash = await sha256Hex(key);
    const id = newId("key");
    const created_at = Date.now();
    this.sql.exec("INSERT INTO api_keys (id, hash, prefix, name, created_at) VALUES (?, ?, ?, ?, ?)", id, hash, prefix, name, created_at);
    return { id, key, prefix, created_at };
  }

  revokeKey(keyId: string): boolean {
    if (!this.account) return false;
    const result = this.sql.exec("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", Date.now(), keyId);
    return result.rowsWritten > 0;
  }

  listKeys(): { id: string; prefix: string; name: string | null; created_at: number; revoked_at: number | null }[] {
    if (!this.account) return [];
    return this.sql
      .exec("SELECT id, prefix, name, created_at, revoked_at FROM api_keys ORDER BY created_at")
      .toArray() as unknown as ReturnType<CustomerAccount["listKeys"]>;
  }

  private keyIsValid(keyHash: string): boolean {
    const row = this.sql.exec("SELECT revoked_at FROM api_keys WHERE hash = ?", keyHash).toArray()[0];
    return row !== undefined && row.revoked_at === null;
  }

  identify(keyHash: string): CustomerProfile | null {
    if (!this.account || !this.keyIsValid(keyHash) || this.account.deleted_at !== null) return null;
    return this.profile();
  }

  // ---------------------------------------------------------------- the request path

  /** Checks the key, applies the governance rule and debits, in one synchronous step. */
  authorize(input: { keyHash: string; meter: string; priceMicros: number; now?: number }): AuthorizeResult {
    if (!this.account || !this.keyIsValid(input.keyHash)) return { outcome: "invalid_key" };
    const a = this.account;
    if (a.deleted_at !== null) return { outcome: "customer_deleted" };
    const minimumMicros = this.minimumMicros();
    const denied = (outcome: "insufficient_credit" | "payment_overdue"): AuthorizeResult => ({
      outcome,
      customer: this.profile(),
      balanceMicros: a.balance,
      minimumMicros,
      priceMicros: input.priceMicros,
    });
    if (a.plan === "postpaid") {
      if (this.config.GOVERNANCE.block_postpaid_when_unpaid && this.unpaid()) return denied("payment_overdue");
    } else if (input.priceMicros > 0 && a.balance - input.priceMicros < minimumMicros) {
      return denied("insufficient_credit");
    }
    const now = input.now ?? Date.now();
    const bucket = this.bucketOf(now);
    this.atomically(() => this.recordUsage(input.meter, bucket, -input.priceMicros, 1, now));
    return { outcome: "ok", customerId: a.customer_id, chargedMicros: input.priceMicros, balanceMicros: a.balance, bucket };
  }

  /** Gives back a charge whose request the origin failed (configurable), into the same bucket. */
  refund(input: { meter: string; priceMicros: number; bucket: number }): { balanceMicros: number } {
    if (!this.account) throw new Error("unknown customer");
    this.atomically(() => this.recordUsage(input.meter, input.bucket, input.priceMicros, -1, Date.now()));
    return { balanceMicros: this.account.balance };
  }

  private bucketOf(now: number): number {
    const size = this.config.PRICING.usage_bucket_seconds * 1000;
    return Math.floor(now / size) * size;
  }

  /** amount < 0 with count 1 is a charge; amount > 0 with count -1 is its refund. */
  private recordUsage(meter: string, bucket: number, amount: number, count: number, now: number): void {
    const kind = amount <= 0 && count > 0 ? "usage" : "refund";
    this.sql.exec(
      `INSERT INTO ledger (kind, meter, bucket, amount, count, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (kind, meter, bucket) WHERE kind IN ('usage', 'refund')
       DO UPDATE SET amount = amount + excluded.amount, count = count + excluded.count, updated_at = excluded.updated_at`,
      kind,
      meter,
      bucket,
      amount,
      Math.abs(count),
      now,
      now,
    );
    const a = this.account!;
    const fields: Partial<AccountRow> = { balance: a.balance + amount };
    if (this.config.stripeEnabled) {
      if (a.plan === "prepaid") fields.pending_usage = a.pending_usage - amount;
      else if (amount !== 0) {
        this.sql.exec(
          `INSERT INTO meter_pending (meter, quantity) VALUES (?, ?)
           ON CONFLICT (meter) DO UPDATE SET quantity = quantity + excluded.quantity`,
          meter,
          count,
        );
      }
    }
    this.setAccount(fields);
    this.afterBalanceChange();
  }

  // ---------------------------------------------------------------- credits

  /**
   * Grants (amount > 0) or deducts (amount < 0) whole cents. A reference makes it idempotent:
   * the same reference twice changes nothing the second time. With Stripe on, the change is
   * also pushed to the Stripe customer balance so Stripe stays the book of record.
   */
  async grant(input: GrantInput): Promise<GrantResult> {
    return this.withLock(async () => {
      const result = this.applyGrant(input);
      if (result.applied && this.config.stripeEnabled) {
        const flushed = await this.flushReports(Date.now()).catch((error) => {
          console.error("stripe push failed", error);
          return { pending: 1 };
        });
        // Not pushed yet: make sure the cron comes back for it.
        if (flushed.pending > 0) this.scheduleDirectorySync();
      }
      return result;
    });
  }

  /** Synchronous, so it is also safe inside the lock (webhooks); a reference makes it idempotent. */
  private applyGrant(input: GrantInput): GrantResult {
    this.ensureAccount(input.customerId);
    const kind = input.kind ?? "grant";
    const amount = centsToMicros(input.amountCents);
    if (input.reference) {
      const existing = this.sql.exec("SELECT id, amount FROM ledger WHERE reference = ?", input.reference).toArray()[0];
      if (existing) {
        return { applied: false, conflict: existing.amount !== amount, balanceMicros: this.account!.balance, entryId: existing.id as number };
      }
    }
    const now = Date.now();
    const entryId = this.atomically(() => {
      const id = this.sql
        .exec(
          "INSERT INTO ledger (kind, amount, count, reference, reason, created_at, updated_at) VALUES (?, ?, 1, ?, ?, ?, ?) RETURNING id",
          kind,
          amount,
          input.reference ?? null,
          input.reason,
          now,
          now,
        )
        .one().id as number;
      const fields: Partial<AccountRow> = { balance: this.account!.balance + amount };
      if (kind === "topup" && input.amountCents > 0) fields.last_topup_cents = input.amountCents;
      this.setAccount(fields);
      if (this.config.stripeEnabled && this.account!.plan === "prepaid") {
        // Stripe scopes idempotency keys to the account, so the customer id is part of the key.
        const customer = this.account!.customer_id;
        const reportId = input.reference ? `payg_${kind}_${customer}_${input.reference}` : newId(`payg_${kind}_${customer}`);
        this.insertReport(kind, reportId, -input.amountCents);
      }
      return id;
    });
    this.afterBalanceChange();
    return { applied: true, conflict: false, balanceMicros: this.account!.balance, entryId };
  }

  // ---------------------------------------------------------------- reads

  summary(): Record<string, unknown> | null {
    if (!this.account) return null;
    const a = this.account;
    const currency = this.config.PRICING.currency;
    const usage = this.sql
      .exec(
        `SELECT meter, SUM(CASE WHEN kind = 'usage' THEN count ELSE -count END) AS requests, -SUM(amount) AS micros
         FROM ledger WHERE kind IN ('usage', 'refund') AND bucket >= ? GROUP BY meter ORDER BY meter`,
        this.bucketOf(Date.now() - 86_400_000),
      )
      .toArray()
      .map((r) => ({ meter: r.meter, requests: r.requests, charged_cents: formatCents(r.micros as number) }));
    const ledger = this.sql
      .exec("SELECT kind, COUNT(*) AS entries, SUM(amount) AS micros, SUM(count) AS count FROM ledger GROUP BY kind ORDER BY kind")
      .toArray()
      .map((r) => ({ kind: r.kind, entries: r.entries, count: r.count, total_cents: formatCents(r.micros as number) }));
    const ledgerSum = (this.sql.exec("SELECT COALESCE(SUM(amount), 0) AS s FROM ledger").one().s as number) ?? 0;
    return {
      customer: { ...this.profile(), created_at: a.created_at, updated_at: a.updated_at },
      balance: {
        available_cents: microsToWholeCents(a.balance),
        available_exact_cents: formatCents(a.balance),
        available: formatMoney(a.balance, currency),
        minimum_cents: microsToWholeCents(this.minimumMicros()),
        currency,
        ledger_sum_exact_cents: formatCents(ledgerSum),
      },
      usage_last_24h: usage,
      ledger_summary: ledger,
      cohorts: this.cohortView(),
      unpaid_invoices: this.sql.exec("SELECT id FROM invoices WHERE status = 'failed'").toArray().map((r) => r.id),
      stripe: this.stripeView(),
    };
  }

  private stripeView(): Record<string, unknown> {
    const a = this.account!;
    const reports = this.sql.exec("SELECT * FROM reports ORDER BY seq DESC LIMIT 20").toArray() as unknown as ReportRow[];
    const totals = this.sql
      .exec("SELECT kind, status, COUNT(*) AS n, SUM(amount) AS amount FROM reports GROUP BY kind, status")
      .toArray();
    return {
      enabled: this.config.stripeEnabled,
      pending_usage_exact_cents: formatCents(a.pending_usage),
      pending_meter_quantities: Object.fromEntries(
        this.sql.exec("SELECT meter, quantity FROM meter_pending WHERE quantity != 0").toArray().map((r) => [r.meter, r.quantity]),
      ),
      last_known_stripe_balance: a.stripe_balance,
      last_known_stripe_balance_at: a.stripe_balance_at,
      edge_balance_exact_cents: formatCents(a.balance),
      reconcile_needed: a.reconcile_needed === 1,
      report_totals: totals,
      recent_reports: reports.map((r) => ({
        id: r.report_id,
        kind: r.kind,
        amount: r.amount,
        meter: r.meter,
        status: r.status,
        attempts: r.attempts,
        last_error: r.last_error,
        stripe_id: r.stripe_id,
        created_at: r.created_at,
        sent_at: r.sent_at,
      })),
    };
  }

  ledgerPage(input: { before?: number; limit: number }): { entries: Row[]; next_cursor: number | null } {
    if (!this.account) return { entries: [], next_cursor: null };
    const rows = this.sql
      .exec(
        "SELECT id, kind, meter, bucket, amount, count, reference, reason, created_at, updated_at FROM ledger WHERE id < ? ORDER BY id DESC LIMIT ?",
        input.before ?? Number.MAX_SAFE_INTEGER,
        input.limit + 1,
      )
      .toArray();
    const page: Row[] = rows.slice(0, input.limit).map((r) => ({ ...r, amount_exact_cents: formatCents(r.amount as number) }));
    return { entries: page, next_cursor: rows.length > input.limit ? (page.at(-1)!.id as number) : null };
  }

  /** Exact micro-cent numbers, for tests and reconciliation checks. */
  balanceCheck(): { balanceMicros: number; ledgerSumMicros: number; pendingUsageMicros: number; rows: number } | null {
    if (!this.account) return null;
    return {
      balanceMicros: this.account.balance,
      ledgerSumMicros: this.sql.exec("SELECT COALESCE(SUM(amount), 0) AS s FROM ledger").one().s as number,
      pendingUsageMicros: this.account.pending_usage,
      rows: this.sql.exec("SELECT COUNT(*) AS n FROM ledger").one().n as number,
    };
  }

  emails(limit = 50): EmailRow[] {
    if (!this.account) return [];
    return this.sql.exec("SELECT * FROM emails ORDER BY id DESC LIMIT ?", limit).toArray() as unknown as EmailRow[];
  }

  // ---------------------------------------------------------------- cohorts

  private cohortView() {
    const current = [...this.cohorts.entries()].map(([cohort, m]) => ({ cohort, enrollment: m.enrollment, entered_at: m.entered_at }));
    const history = this.sql
      .exec("SELECT cohort, enrollment, entered_at, exited_at FROM cohort_history ORDER BY id DESC LIMIT 20")
      .toArray();
    return { current, history };
  }

  /** Cohort membership is decided here on every balance change, so it is never stale. */
  private afterBalanceChange(): void {
    const a = this.account!;
    const next = new Set<Cohort>();
    if (a.deleted_at === null) {
      const headroom = a.balance - this.minimumMicros();
      if (a.plan === "prepaid") {
        const cheapest = Math.max(1, this.config.PRICING.fallback.priceMicros);
        if (headroom < cheapest) next.add("out_of_credits");
        else {
          const emails = this.config.EMAILS;
          const absolute = centsToMicros(emails?.low_balance_threshold_cents ?? 0);
          const percent = emails?.low_balance_threshold_percent ?? 0;
          const relative = a.last_topup_cents ? Math.floor((centsToMicros(a.last_topup_cents) * percent) / 100) : 0;
          if (headroom < Math.max(absolute, relative)) next.add("low_balance");
        }
      } else if (this.unpaid()) next.add("payment_failed");
    }
    const now = Date.now();
    let changed = false;
    for (const cohort of COHORTS) {
      const inNow = this.cohorts.has(cohort);
      if (next.has(cohort) && !inNow) {
        const previous = this.sql.exec("SELECT enrollment FROM cohorts WHERE cohort = ?", cohort).toArray()[0];
        const enrollment = ((previous?.enrollment as number | undefined) ?? 0) + 1;
        this.sql.exec(
          `INSERT INTO cohorts (cohort, enrollment, entered_at, exited_at) VALUES (?, ?, ?, NULL)
           ON CONFLICT (cohort) DO UPDATE SET enrollment = excluded.enrollment, entered_at = excluded.entered_at, exited_at = NULL`,
          cohort,
          enrollment,
          now,
        );
        this.sql.exec("INSERT INTO cohort_history (cohort, enrollment, entered_at) VALUES (?, ?, ?)", cohort, enrollment, now);
        this.cohorts.set(cohort, { enrollment, entered_at: now });
        changed = true;
      } else if (!next.has(cohort) && inNow) {
        const m = this.cohorts.get(cohort)!;
        this.sql.exec("UPDATE cohorts SET exited_at = ? WHERE cohort = ?", now, cohort);
        this.sql.exec("UPDATE cohort_history SET exited_at = ? WHERE cohort = ? AND enrollment = ?", now, cohort, m.enrollment);
        this.cohorts.delete(cohort);
        changed = true;
      }
    }
    if (changed) {
      this.sql.exec("DELETE FROM cohort_history WHERE id <= (SELECT MAX(id) - 200 FROM cohort_history)");
      this.scheduleDirectorySync();
    } else if ((a.directory_due_at === null || a.directory_due_at > now) && this.hasWorkNow()) {
      // Usage to report and the directory does not list us as due now (at most once per report).
      this.scheduleDirectorySync();
    }
  }

  // ---------------------------------------------------------------- directory sync

  private scheduleDirectorySync(): void {
    void this.ctx.storage.setAlarm(Date.now());
  }

  override async alarm(): Promise<void> {
    await this.syncDirectory();
  }

  /** Usage or reports for Stripe right now (whatever the plan: usage from before a plan change counts). */
  private hasWorkNow(now = Date.now()): boolean {
    const a = this.account!;
    if (!this.config.stripeEnabled) return false;
    if (Math.abs(a.pending_usage) >= MICROS_PER_CENT || a.reconcile_needed) return true;
    if (this.sql.exec("SELECT 1 FROM meter_pending WHERE quantity > 0 LIMIT 1").toArray().length) return true;
    return this.sql.exec("SELECT 1 FROM reports WHERE status = 'pending' AND COALESCE(next_attempt_at, 0) <= ? LIMIT 1", now).toArray().length > 0;
  }

  /** When the cron should next visit this customer, or null when there is nothing to do. */
  private nextDueAt(now: number): number | null {
    const a = this.account!;
    const times: number[] = [];
    if (this.config.stripeEnabled) {
      if (this.hasWorkNow(now)) times.push(now);
      const report = this.sql.exec("SELECT MIN(COALESCE(next_attempt_at, 0)) AS t FROM reports WHERE status = 'pending'").one();
      if (report.t !== null) times.push(report.t as number);
    }
    for (const [cohort, m] of this.cohorts) {
      const t = this.nextEmailAt(cohort, m);
      if (t !== null) times.push(t);
    }
    return times.length ? Math.min(...times) : null;
  }

  private async syncDirectory(): Promise<void> {
    if (!this.account) return;
    const a = this.account;
    const seq = a.directory_seq + 1;
    const dueAt = this.nextDueAt(Date.now());
    this.setAccount({ directory_seq: seq });
    const snapshot: DirectorySnapshot = {
      customerId: a.customer_id,
      email: a.email,
      name: a.name,
      deleted: a.deleted_at !== null,
      cohorts: [...this.cohorts.entries()].map(([cohort, m]) => ({ cohort, entered_at: m.entered_at })),
      dueAt,
      seq,
    };
    const directory = this.env.DIRECTORY as DurableObjectNamespace<Directory>;
    await directory.get(directory.idFromName("global")).sync(snapshot);
    // Recorded only once the directory has it: until then requests keep asking for a sync.
    if (this.account.directory_seq === seq) this.setAccount({ directory_due_at: dueAt });
  }

  // ---------------------------------------------------------------- the cron cycle

  /** Reports usage to Stripe and sends due emails. Safe to run twice or concurrently. */
  runCycle(now: number): Promise<CycleResult> {
    return this.withLock(async () => {
      const result: CycleResult = { reported: 0, reportErrors: 0, emailed: 0 };
      if (!this.account) return result;
      if (this.config.stripeEnabled) {
        this.cutReports();
        const flushed = await this.flushReports(now);
        result.reported = flushed.sent;
        result.reportErrors = flushed.errors;
        if (this.account.reconcile_needed && flushed.pending === 0) await this.reconcile().catch((e) => console.error(e));
      }
      result.emailed = await this.sendDueEmails(now);
      await this.syncDirectory();
      return result;
    });
  }

  /** Report times are wall-clock: Stripe compares them with its own (meter event windows, key expiry). */
  private insertReport(kind: ReportRow["kind"], reportId: string, amount: number, meter?: { name: string; eventName: string }) {
    this.sql.exec(
      `INSERT INTO reports (report_id, kind, idempotency_key, amount, meter, event_name, event_timestamp, status, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT (report_id) DO NOTHING`,
      reportId,
      kind,
      reportId,
      amount,
      meter?.name ?? null,
      meter?.eventName ?? null,
      Math.floor(Date.now() / 1000),
      Date.now(),
    );
  }

  /** Moves unreported usage into report rows before any network call, so a crash loses nothing. */
  private cutReports(): void {
    this.atomically(() => {
      const a = this.account!;
      const cents = Math.trunc(a.pending_usage / MICROS_PER_CENT);
      if (cents !== 0) {
        this.insertReport("usage_debit", newId("payg_usage"), cents);
        this.setAccount({ pending_usage: a.pending_usage - cents * MICROS_PER_CENT });
      }
      for (const row of this.sql.exec("SELECT meter, quantity FROM meter_pending WHERE quantity > 0").toArray()) {
        const meter = meterByName(this.config, row.meter as string);
        const eventName = meter?.stripeEventName ?? this.config.PRICING.default_stripe_event_name;
        this.insertReport("meter_event", newId("payg_meter"), row.quantity as number, { name: row.meter as string, eventName });
        this.sql.exec("UPDATE meter_pending SET quantity = 0 WHERE meter = ?", row.meter);
      }
    });
  }

  /** Sends pending reports whose backoff has passed (all of them with ignoreBackoff). */
  private async flushReports(now: number, ignoreBackoff = false): Promise<{ sent: number; errors: number; pending: number }> {
    let sent = 0;
    let errors = 0;
    const due = this.sql
      .exec(
        "SELECT * FROM reports WHERE status = 'pending' AND COALESCE(next_attempt_at, 0) <= ? ORDER BY seq",
        ignoreBackoff ? Number.MAX_SAFE_INTEGER : now,
      )
      .toArray() as unknown as ReportRow[];
    for (const report of due) {
      const outcome = await this.sendReport(report, now);
      if (outcome === "sent") sent++;
      else errors++;
      if (outcome === "rate_limited") break;
    }
    const pending = this.sql.exec("SELECT COUNT(*) AS n FROM reports WHERE status = 'pending'").one().n as number;
    return { sent, errors, pending };
  }

  private async sendReport(report: ReportRow, now: number): Promise<"sent" | "failed" | "retry" | "rate_limited"> {
    const stripe = stripeClient(this.config);
    const customerId = this.account!.customer_id;
    let key = report.idempotency_key;
    try {
      if (report.kind === "meter_event" && report.verify) {
        // A saved 500 replays under its key forever; the identifier still dedupes at Stripe.
        key = `${report.report_id}_r${report.attempts}`;
        this.sql.exec("UPDATE reports SET idempotency_key = ?, verify = 0 WHERE seq = ?", key, report.seq);
      } else if (report.kind !== "meter_event" && (report.verify || Date.now() - report.created_at > IDEMPOTENCY_SAFE_MS)) {
        // A saved 500 replays under the same key forever, and keys expire after 24h: look for
        // the transaction itself before trying again under a fresh key.
        const found = await this.findReportedTransaction(stripe, customerId, report);
        if (found) {
          this.markReportSent(report, found.id, found.ending_balance, now);
          return "sent";
        }
        key = `${report.report_id}_r${report.attempts}`;
        this.sql.exec("UPDATE reports SET idempotency_key = ?, verify = 0 WHERE seq = ?", key, report.seq);
      }
      this.sql.exec("UPDATE reports SET attempts = attempts + 1 WHERE seq = ?", report.seq);
      if (report.kind === "meter_event") {
        const event = await stripe.billing.meterEvents.create(
          {
            event_name: report.event_name!,
            payload: { stripe_customer_id: customerId, value: String(report.amount) },
            identifier: report.report_id,
            timestamp: report.event_timestamp!,
          },
          { idempotencyKey: key },
        );
        this.markReportSent(report, event.identifier, null, now);
      } else {
        const txn = await stripe.customers.createBalanceTransaction(
          customerId,
          {
            amount: report.amount,
            currency: this.config.PRICING.currency,
            description: report.kind === "usage_debit" ? "API usage" : report.kind === "topup" ? "Credit top-up" : "Credit adjustment",
            metadata: { payg_report: report.report_id },
          },
          { idempotencyKey: key },
        );
        this.markReportSent(report, txn.id, txn.ending_balance, now);
      }
      return "sent";
    } catch (error) {
      const attempts = report.attempts + 1;
      const message = describeError(error);
      const status = (error as { statusCode?: number }).statusCode;
      if (isTransientStripeError(error) && attempts < MAX_REPORT_ATTEMPTS) {
        this.sql.exec(
          "UPDATE reports SET verify = ?, next_attempt_at = ?, last_error = ? WHERE seq = ?",
          status !== undefined && status >= 500 ? 1 : report.verify,
          now + backoffMs(attempts),
          message,
          report.seq,
        );
        return status === 429 ? "rate_limited" : "retry";
      }
      // Stripe refused it for good: keep the row (nothing is lost) and show it in the admin API.
      this.sql.exec("UPDATE reports SET status = 'failed', last_error = ? WHERE seq = ?", message, report.seq);
      console.error(`stripe report ${report.report_id} failed permanently: ${message}`);
      return "failed";
    }
  }

  private markReportSent(report: ReportRow, stripeId: string | null, endingBalance: number | null, now: number): void {
    this.sql.exec(
      "UPDATE reports SET status = 'sent', stripe_id = ?, sent_at = ?, last_error = NULL WHERE seq = ?",
      stripeId,
      now,
      report.seq,
    );
    if (endingBalance !== null) this.setAccount({ stripe_balance: endingBalance, stripe_balance_at: now });
  }

  private async findReportedTransaction(stripe: Stripe, customerId: string, report: ReportRow) {
    const since = Math.floor(report.created_at / 1000) - 300;
    for await (const txn of stripe.customers.listBalanceTransactions(customerId, { limit: 100 })) {
      if (txn.metadata?.payg_report === report.report_id) return txn;
      if (txn.created < since) break;
    }
    return null;
  }

  /**
   * Sets the edge balance from Stripe's: Stripe credit (−balance), less usage not yet reported,
   * less reports Stripe refused. Only run with every report settled, so Stripe's number is
   * never ambiguous about what it already contains.
   */
  private async reconcile(reason = "stripe reconcile"): Promise<void> {
    const stripe = stripeClient(this.config);
    const customer = await stripe.customers.retrieve(this.account!.customer_id);
    const now = Date.now();
    if ("deleted" in customer && customer.deleted) {
      this.markDeleted();
      this.setAccount({ reconcile_needed: 0 });
      return;
    }
    const stripeBalance = (customer as Stripe.Customer).balance;
    const a = this.account!;
    this.setAccount({ stripe_balance: stripeBalance, stripe_balance_at: now, reconcile_needed: 0 });
    if (a.plan !== "prepaid") return;
    const failed = this.sql
      .exec("SELECT COALESCE(SUM(amount), 0) AS s FROM reports WHERE status = 'failed' AND kind != 'meter_event'")
      .one().s as number;
    const expected = -stripeBalance * MICROS_PER_CENT - a.pending_usage - failed * MICROS_PER_CENT;
    const delta = expected - a.balance;
    if (delta !== 0) {
      this.sql.exec(
        "INSERT INTO ledger (kind, amount, count, reason, created_at, updated_at) VALUES ('stripe_sync', ?, 1, ?, ?, ?)",
        delta,
        reason,
        now,
        now,
      );
      this.setAccount({ balance: a.balance + delta });
      this.afterBalanceChange();
    }
  }

  private markDeleted(): void {
    if (this.account!.deleted_at === null) {
      this.setAccount({ deleted_at: Date.now() });
      this.afterBalanceChange();
      this.scheduleDirectorySync();
    }
  }

  // ---------------------------------------------------------------- Stripe webhooks

  /** Applies one verified Stripe event; duplicates are acknowledged and ignored. */
  applyStripeEvent(customerId: string, event: Stripe.Event): Promise<{ status: "applied" | "duplicate" | "ignored" }> {
    return this.withLock(async () => {
      this.ensureAccount(customerId);
      if (this.sql.exec("SELECT 1 FROM stripe_events WHERE id = ?", event.id).toArray().length) return { status: "duplicate" as const };
      let status: "applied" | "ignored" = "applied";
      switch (event.type) {
        case "customer.created":
        case "customer.updated": {
          const customer = event.data.object;
          if (event.created >= this.account!.profile_event_at) {
            this.upsertProfile(customerId, profileFromStripe(customer));
            this.setAccount({ profile_event_at: event.created });
          }
          const balanceChanged =
            event.type === "customer.created" || (event.data.previous_attributes as Record<string, unknown> | undefined)?.balance !== undefined;
          if (balanceChanged) {
            const flushed = await this.flushReports(Date.now(), true);
            if (flushed.pending > 0) {
              this.setAccount({ reconcile_needed: 1 });
              throw new Error("Stripe reports still pending; reconcile deferred");
            }
            await this.reconcile(`${event.type} ${event.id}`);
          }
          break;
        }
        case "customer.deleted":
          this.markDeleted();
          break;
        case "checkout.session.completed":
        case "checkout.session.async_payment_succeeded": {
          const session = event.data.object;
          if (session.payment_status !== "paid" || session.mode !== "payment") {
            status = "ignored";
            break;
          }
          // Only top-ups this gateway created: other payments on the account are not API credit.
          const credit = Number(session.metadata?.payg_credit_cents);
          if (!Number.isSafeInteger(credit) || credit <= 0 || session.currency !== this.config.PRICING.currency) {
            status = "ignored";
            break;
          }
          this.applyGrant({ customerId, amountCents: credit, reason: `Stripe Checkout ${session.id}`, reference: `checkout_${session.id}`, kind: "topup" });
          await this.flushReports(Date.now());
          break;
        }
        case "invoice.paid":
        case "invoice.payment_failed":
        case "invoice.voided":
        case "invoice.marked_uncollectible": {
          const invoice = event.data.object;
          const existing = this.sql.exec("SELECT status FROM invoices WHERE id = ?", invoice.id!).toArray()[0];
          // Paid, void and uncollectible are final: a late payment_failed must not block the customer.
          const next = event.type === "invoice.payment_failed" ? "failed" : event.type === "invoice.paid" ? "paid" : "closed";
          if (next !== "failed" || existing === undefined || existing.status === "failed") {
            this.sql.exec(
              "INSERT INTO invoices (id, status, updated_at) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
              invoice.id!,
              next,
              Date.now(),
            );
          }
          this.afterBalanceChange();
          break;
        }
        default:
          status = "ignored";
      }
      const now = Date.now();
      this.sql.exec("INSERT INTO stripe_events (id, type, received_at) VALUES (?, ?, ?)", event.id, event.type, now);
      this.sql.exec("DELETE FROM stripe_events WHERE received_at < ?", now - STRIPE_EVENT_RETENTION_MS);
      this.scheduleDirectorySync();
      return { status };
    });
  }

  // ---------------------------------------------------------------- behavioral emails

  private reenrollMs(cohort: Cohort): number {
    const emails = this.config.EMAILS!;
    return (emails.templates[cohort]?.reenroll_seconds ?? emails.reenroll_seconds) * 1000;
  }

  private lastEmail(cohort: Cohort, enrollment?: number): EmailRow | undefined {
    const rows =
      enrollment === undefined
        ? this.sql.exec("SELECT * FROM emails WHERE cohort = ? ORDER BY id DESC LIMIT 1", cohort)
        : this.sql.exec("SELECT * FROM emails WHERE cohort = ? AND enrollment = ? ORDER BY seq DESC LIMIT 1", cohort, enrollment);
    return rows.toArray()[0] as unknown as EmailRow | undefined;
  }

  /**
   * The next email for a cohort membership: when, and whether it is a retry of the last row or
   * a new one. The re-enrollment wait also runs across enrollments, so a customer flapping in
   * and out of a cohort is not emailed on every entry.
   */
  private emailPlan(cohort: Cohort, m: Membership): { at: number; retry: EmailRow | null; seq: number } | null {
    if (!this.config.EMAILS?.templates[cohort]) return null;
    const last = this.lastEmail(cohort, m.enrollment);
    const reenroll = this.reenrollMs(cohort);
    if (!last) {
      const previous = this.lastEmail(cohort);
      const window = reenroll || this.config.EMAILS.reenroll_seconds * 1000;
      const at = previous ? Math.max(m.entered_at, (previous.sent_at ?? previous.created_at) + window) : m.entered_at;
      return { at, retry: null, seq: 0 };
    }
    if (last.status === "retry") return { at: last.next_attempt_at ?? 0, retry: last, seq: last.seq };
    if (reenroll === 0 || last.status === "sending") return null;
    return { at: (last.sent_at ?? last.created_at) + reenroll, retry: null, seq: last.seq + 1 };
  }

  private nextEmailAt(cohort: Cohort, m: Membership): number | null {
    return this.emailPlan(cohort, m)?.at ?? null;
  }

  private async sendDueEmails(now: number): Promise<number> {
    const emails = this.config.EMAILS;
    if (!emails) return 0;
    let sent = 0;
    for (const cohort of COHORTS) {
      // Read afresh each time: a send awaits, and membership can change meanwhile.
      const m = this.cohorts.get(cohort);
      if (!m || !emails.templates[cohort]) continue;
      const stuck = this.lastEmail(cohort, m.enrollment);
      if (stuck?.status === "sending") {
        // A previous run died mid-send: MailChannels may have accepted it. Never send twice.
        this.sql.exec("UPDATE emails SET status = 'unknown', last_error = 'interrupted while sending' WHERE id = ?", stuck.id);
      }
      const plan = this.emailPlan(cohort, m);
      if (!plan || plan.at > now) continue;
      const row = plan.retry ?? this.createEmail(cohort, m.enrollment, plan.seq, now);
      if (row && (await this.deliver(row, now))) sent++;
    }
    return sent;
  }

  private createEmail(cohort: Cohort, enrollment: number, seq: number, now: number): EmailRow | undefined {
    const template = this.config.EMAILS!.templates[cohort]!;
    const a = this.account!;
    const values = mergeValues(this.config, { id: a.customer_id, name: a.name, email: a.email }, {
      balanceMicros: a.balance,
      minimumMicros: this.minimumMicros(),
      priceMicros: this.config.PRICING.fallback.priceMicros,
    });
    const inserted = this.sql
      .exec(
        `INSERT INTO emails (cohort, enrollment, seq, to_email, subject, text, html, status, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, 'sending', ?) ON CONFLICT (cohort, enrollment, seq) DO NOTHING RETURNING *`,
        cohort,
        enrollment,
        seq,
        a.email ?? "",
        renderString(template.subject, values),
        renderString(template.text, values),
        template.html ? renderString(template.html, escapeHtml(values)) : null,
        now,
      )
      .toArray()[0];
    return inserted as unknown as EmailRow | undefined;
  }

  private async deliver(row: EmailRow, now: number): Promise<boolean> {
    if (!row.to_email) {
      this.sql.exec("UPDATE emails SET status = 'failed', last_error = 'customer has no email address' WHERE id = ?", row.id);
      return false;
    }
    if (this.config.emailDelivery === "outbox") {
      this.sql.exec("UPDATE emails SET status = 'outbox', sent_at = ?, attempts = attempts + 1 WHERE id = ?", now, row.id);
      return true;
    }
    this.sql.exec("UPDATE emails SET status = 'sending', attempts = attempts + 1 WHERE id = ?", row.id);
    const result = await sendViaMailChannels(this.config, {
      to: row.to_email,
      ...(this.account!.name ? { toName: this.account!.name } : {}),
      subject: row.subject,
      text: row.text,
      ...(row.html ? { html: row.html } : {}),
    });
    const attempts = row.attempts + 1;
    if (result.outcome === "sent") {
      this.sql.exec("UPDATE emails SET status = 'sent', sent_at = ?, last_error = NULL WHERE id = ?", now, row.id);
      return true;
    }
    const status = result.outcome === "retry" && attempts < MAX_EMAIL_ATTEMPTS ? "retry" : result.outcome === "unknown" ? "unknown" : "failed";
    this.sql.exec(
      "UPDATE emails SET status = ?, last_error = ?, next_attempt_at = ? WHERE id = ?",
      status,
      result.error,
      status === "retry" ? now + backoffMs(attempts) : null,
      row.id,
    );
    return false;
  }
}

function profileFromStripe(customer: Stripe.Customer): ProfilePatch {
  const metadata = Object.fromEntries(Object.entries(customer.metadata ?? {}).map(([k, v]) => [k, String(v)]));
  const patch: ProfilePatch = { email: customer.email ?? null, name: customer.name ?? null, metadata };
  if (metadata.payg_plan === "prepaid" || metadata.payg_plan === "postpaid") patch.plan = metadata.payg_plan;
  const minimum = metadata.payg_minimum_balance_cents;
  if (minimum !== undefined && /^-?\d{1,10}$/.test(minimum) && Math.abs(Number(minimum)) <= MAX_AMOUNT_CENTS) {
    patch.minimum_balance_cents = Number(minimum);
  }
  return patch;
}
