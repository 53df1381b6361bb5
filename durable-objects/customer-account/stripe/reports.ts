import { newId } from "../../../src/lib/api-key-format";
import { type Config, meterByName } from "../../../src/lib/config";
import type { Plan } from "../../../src/lib/customer";
import { log } from "../../../src/lib/log";
import { formatCents, MAX_STRIPE_AMOUNT_CENTS, MICROS_PER_CENT } from "../../../src/lib/money";
import { IDEMPOTENCY_SAFE_MS } from "../../../src/lib/stripe-client";
import type { AccountRow, AccountStore } from "../core/account";
import type { Timers } from "../core/timers";
import type { ProviderWebhookOutbox } from "../notify/provider-webhooks";
import { ReportRetention } from "../retention/reports";
import type { MeterPending } from "./meter-pending";
import { ReportBatching } from "./report-batching";

export const REPORT_TABLES = {
  v1: `
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
CREATE INDEX IF NOT EXISTS reports_status ON reports(status, seq);`,
  // v16: post-paid cost of meters priced per tool or per model and kind, by meter and model, in
  // micro-cents until whole cents are reported; a meter event's model goes in its payload.
  v16: `
CREATE TABLE IF NOT EXISTS cost_pending (meter TEXT NOT NULL, model TEXT NOT NULL, micros INTEGER NOT NULL, PRIMARY KEY (meter, model));
ALTER TABLE reports ADD COLUMN model TEXT;`,
};

/** Attempts Stripe could not answer (5xx, 429, timeouts) before a report counts as failed. */
export const MAX_ATTEMPTS = 20;

export interface ReportRow {
  seq: number;
  report_id: string;
  kind: ReportKind;
  idempotency_key: string;
  amount: number;
  meter: string | null;
  event_name: string | null;
  event_timestamp: number | null;
  /** A cost meter's meter event: the model it is for (sent as payload[model]); null otherwise. */
  model: string | null;
  /** resolved: an operator settled a failed report by hand at Stripe. */
  status: "pending" | "sent" | "failed" | "resolved";
  attempts: number;
  verify: number;
  next_attempt_at: number | null;
  last_error: string | null;
  stripe_id: string | null;
  created_at: number;
  sent_at: number | null;
}

export type SendOutcome = "sent" | "failed" | "retry" | "rate_limited";

/**
 * Credit given at the edge (grant, top-up, a clawback given back) or taken away (expiry, void,
 * clawback, deduction), usage, meter events.
 */
export type ReportKind = "usage_debit" | "grant" | "topup" | "expiry" | "void" | "clawback" | "clawback_reversal" | "deduction" | "meter_event";

export const DESCRIPTIONS: Record<Exclude<ReportKind, "meter_event">, string> = {
  usage_debit: "API usage",
  grant: "Credit grant",
  topup: "Credit top-up",
  expiry: "Credit expired",
  void: "Credit voided",
  clawback: "Credit taken back (refund or dispute)",
  clawback_reversal: "Credit given back (failed refund or reinstated dispute)",
  deduction: "Credit adjustment",
};

/**
 * How much of the unreported prepaid usage is due to Stripe now: whole cents, toward zero; the
 * sub-cent remainder waits for the next report.
 */
export function dueToStripe(pendingUsageMicros: number): { cents: number; remainderMicros: number } {
  const cents = Math.trunc(pendingUsageMicros / MICROS_PER_CENT);
  return { cents, remainderMicros: pendingUsageMicros - cents * MICROS_PER_CENT };
}

/**
 * Usage and credit reported to Stripe exactly once. Each report is a row written before any
 * network call; its id is the idempotency key and `metadata[payg_report]`. A retry after a 5xx
 * (Stripe replays a saved 500 forever) or past 23 hours (keys expire) first looks the
 * transaction up, and only then sends again under a fresh key.
 */
export class StripeReports {
  readonly retention: ReportRetention;
  /** Whether usage waits for a report worth its call (STRIPE_BUDGET): report-batching.ts. */
  readonly batching: ReportBatching;
  /** Until when Stripe work waits because the budget had no calls for it (in memory: after a reload it just asks again). */
  budgetWaitUntil = 0;

  constructor(
    private readonly sql: SqlStorage,
    readonly config: () => Config,
    readonly account: AccountStore,
    private readonly outbox: Pick<ProviderWebhookOutbox, "emit">,
    timers: Timers,
    /** Post-paid quantities, kept back while the journal defers (meter-pending.ts). */
    readonly meterPending: MeterPending,
  ) {
    this.retention = new ReportRetention(sql, timers, config);
    this.batching = new ReportBatching(config, account);
  }

  /**
   * Unreported usage to add with a charge (amount < 0) or a refund: prepaid usage in micro-cents,
   * post-paid usage as a meter quantity (requests, or units for a meter that reads them from the
   * response; 0 for free requests). Returns the account fields to write in the same step.
   */
  accrue(plan: Plan, meter: string, amount: number, quantity: number): Partial<AccountRow> {
    if (!this.config().stripeEnabled) return {};
    if (plan === "prepaid") return { pending_usage: this.account.row.pending_usage - amount };
    if (quantity !== 0) this.meterPending.add(meter, quantity);
    return {};
  }

  /**
   * Post-paid cost of a meter whose units have no one price (CompiledMeter.reportsCost): added up
   * per meter and model in micro-cents; whole cents are reported, the fraction carried.
   */
  accrueCost(plan: Plan, meter: string, model: string | null, micros: number): void {
    if (!this.config().stripeEnabled || plan !== "postpaid" || micros === 0) return;
    this.sql.exec(
      `INSERT INTO cost_pending (meter, model, micros) VALUES (?, ?, ?)
       ON CONFLICT (meter, model) DO UPDATE SET micros = micros + excluded.micros`,
      meter,
      model ?? "",
      micros,
    );
  }

  /** Credit given at the edge: Stripe's balance gains the same whole cents. */
  queueCredit(kind: "grant" | "topup", reportId: string, cents: number): void {
    if (this.config().stripeEnabled) this.insert(kind, reportId, -cents);
  }

  /**
   * Credit taken away at the edge (micros > 0), or a clawback given back (`clawback_reversal`,
   * micros < 0): whole cents now, the sub-cent rest with the next usage report (as unreported
   * usage). Returns the account fields to write in the same step.
   */
  queueDebit(kind: "expiry" | "void" | "clawback" | "clawback_reversal" | "deduction", reportId: string, micros: number): Partial<AccountRow> {
    if (!this.config().stripeEnabled || micros === 0) return {};
    const due = dueToStripe(micros);
    if (due.cents !== 0) this.insert(kind, reportId, due.cents);
    return due.remainderMicros !== 0 ? { pending_usage: this.account.row.pending_usage + due.remainderMicros } : {};
  }

  /** Report times are wall-clock: Stripe compares them with its own (meter event windows, key expiry). */
  insert(kind: ReportRow["kind"], reportId: string, amount: number, meter?: { name: string; eventName: string; model?: string }): void {
    this.retention.due(Date.now());
    this.sql.exec(
      `INSERT INTO reports (report_id, kind, idempotency_key, amount, meter, event_name, model, event_timestamp, status, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT (report_id) DO NOTHING`,
      reportId,
      kind,
      reportId,
      amount,
      meter?.name ?? null,
      meter?.eventName ?? null,
      meter?.model || null,
      Math.floor(Date.now() / 1000),
      Date.now(),
    );
  }

  /**
   * Moves unreported usage into report rows before any network call, so a crash loses nothing;
   * each row within Stripe's 8 digits of minor units. While reports are batched, prepaid usage
   * is cut only once it is worth a call (usageWorthReporting); meter events (what post-paid
   * invoices bill) are cut every cycle.
   */
  cut(now = Date.now()): void {
    const config = this.config();
    const due = dueToStripe(this.account.row.pending_usage);
    if (due.cents !== 0 && this.batching.usageWorthReporting(now)) {
      for (let left = due.cents; left !== 0; ) {
        const part = Math.sign(left) * Math.min(Math.abs(left), MAX_STRIPE_AMOUNT_CENTS);
        this.insert("usage_debit", newId("payg_usage"), part);
        left -= part;
      }
      this.account.set({ pending_usage: due.remainderMicros, usage_cut_at: now, report_forced: 0 });
    }
    for (const row of this.sql.exec("SELECT meter, quantity FROM meter_pending WHERE quantity > 0").toArray()) {
      const meter = meterByName(config, row.meter as string);
      const eventName = meter?.stripeEventName ?? config.PRICING.default_stripe_event_name;
      // The customer id in the identifier lets Stripe's meter error events be traced back here.
      const reportId = `payg_meter.${this.account.row.customer_id}.${newId("m").slice(2)}`;
      this.insert("meter_event", reportId, row.quantity as number, { name: row.meter as string, eventName });
      this.sql.exec("UPDATE meter_pending SET quantity = 0 WHERE meter = ?", row.meter);
    }
    for (const row of this.sql.exec("SELECT meter, model, micros FROM cost_pending WHERE micros >= ?", MICROS_PER_CENT).toArray()) {
      const meter = meterByName(config, row.meter as string);
      const cents = Math.floor((row.micros as number) / MICROS_PER_CENT);
      const reportId = `payg_meter.${this.account.row.customer_id}.${newId("m").slice(2)}`;
      this.insert("meter_event", reportId, cents, {
        name: row.meter as string,
        eventName: meter?.stripeEventName ?? config.PRICING.default_stripe_event_name,
        model: row.model as string,
      });
      this.sql.exec("UPDATE cost_pending SET micros = micros - ? WHERE meter = ? AND model = ?", cents * MICROS_PER_CENT, row.meter, row.model);
    }
  }

  /** Calls the due reports need, per endpoint: what a cycle asks its shard for, in one RPC. */
  callsDue(now: number): { balance: number; lookups: number; meter: number } {
    const q = `SELECT COALESCE(SUM(kind != 'meter_event'), 0) AS balance, COALESCE(SUM(kind != 'meter_event' AND (verify = 1 OR created_at < ?)), 0) AS lookups, COALESCE(SUM(kind = 'meter_event'), 0)
      + (SELECT COUNT(*) FROM meter_pending WHERE quantity > 0) + (SELECT COUNT(*) FROM cost_pending WHERE micros >= ?) AS meter FROM reports WHERE status = 'pending' AND COALESCE(next_attempt_at, 0) <= ?`;
    const r = this.sql.exec(q, Date.now() - IDEMPOTENCY_SAFE_MS, MICROS_PER_CENT, now).one();
    const usage = this.batching.usageWorthReporting(now) ? Math.ceil(Math.abs(dueToStripe(this.account.row.pending_usage).cents) / MAX_STRIPE_AMOUNT_CENTS) : 0;
    return { balance: (r.balance as number) + usage, lookups: r.lookups as number, meter: r.meter as number };
  }

  /** Usage or reports for Stripe right now (whatever the plan: usage from before a plan change counts). */
  hasWorkNow(now: number): boolean {
    const a = this.account.row;
    if (!this.config().stripeEnabled) return false;
    if (this.batching.usageWorthReporting(now) || a.reconcile_needed) return true;
    if (this.sql.exec("SELECT 1 FROM meter_pending WHERE quantity > 0 LIMIT 1").toArray().length) return true;
    // A cost meter's fraction of a cent waits for the next cent.
    if (this.sql.exec("SELECT 1 FROM cost_pending WHERE micros >= ? LIMIT 1", MICROS_PER_CENT).toArray().length) return true;
    return this.sql.exec("SELECT 1 FROM reports WHERE status = 'pending' AND COALESCE(next_attempt_at, 0) <= ? LIMIT 1", now).toArray().length > 0;
  }

  /** The earliest time a pending report may be retried, or null. */
  nextAttemptAt(): number | null {
    return this.sql.exec("SELECT MIN(COALESCE(next_attempt_at, 0)) AS t FROM reports WHERE status = 'pending'").one().t as number | null;
  }

  /** Reports per status (pending and failed ones are never deleted: the rollup counts the rows). */
  countsByStatus(): Record<string, number> {
    return Object.fromEntries(
      this.sql
        .exec("SELECT status, COUNT(*) AS n FROM reports GROUP BY status")
        .toArray()
        .map((r) => [r.status as string, r.n as number]),
    );
  }

  pendingCount(): number {
    return this.sql.exec("SELECT COUNT(*) AS n FROM reports WHERE status = 'pending'").one().n as number;
  }

  /** Balance transactions not settled yet (meter events never move Stripe's balance). */
  pendingBalanceCount(): number {
    return this.sql.exec("SELECT COUNT(*) AS n FROM reports WHERE status = 'pending' AND kind != 'meter_event'").one().n as number;
  }

  /** Balance transactions queued and not sent yet, in cents as they will be posted. */
  unsentBalanceCents(): number {
    return this.sql.exec("SELECT COALESCE(SUM(amount), 0) AS s FROM reports WHERE status = 'pending' AND kind != 'meter_event'").one().s as number;
  }

  /**
   * Balance transactions Stripe refused for good, in cents as posted (credit negative): the edge
   * moved its balance by them, Stripe's balance never did.
   */
  failedBalanceCents(): number {
    return this.sql.exec("SELECT COALESCE(SUM(amount), 0) AS s FROM reports WHERE status = 'failed' AND kind != 'meter_event'").one().s as number;
  }

  /** Pending reports whose backoff has passed at `now` (all of them with ignoreBackoff), oldest first. */
  due(now: number, ignoreBackoff = false): ReportRow[] {
    return this.sql
      .exec("SELECT * FROM reports WHERE status = 'pending' AND COALESCE(next_attempt_at, 0) <= ? ORDER BY seq", ignoreBackoff ? Number.MAX_SAFE_INTEGER : now)
      .toArray() as unknown as ReportRow[];
  }

  /** Pending balance transactions (not meter events), oldest first. */
  pendingBalanceReports(): ReportRow[] {
    return this.sql.exec("SELECT * FROM reports WHERE status = 'pending' AND kind != 'meter_event' ORDER BY seq").toArray() as unknown as ReportRow[];
  }

  /** An attempt begins: counted before the call, so a crash mid-call still counts it. */
  attempted(report: ReportRow): void {
    this.sql.exec("UPDATE reports SET attempts = attempts + 1 WHERE seq = ?", report.seq);
  }

  /** The budget kept an attempt from leaving (a lookup's page, say): it does not count. */
  notAttempted(report: ReportRow): void {
    this.sql.exec("UPDATE reports SET attempts = MAX(0, attempts - 1) WHERE seq = ? AND attempts > ?", report.seq, report.attempts);
  }

  /** Stripe could not answer: tried again at `at`; `verify` makes the next attempt look the report up first. */
  retryLater(report: ReportRow, verify: boolean, at: number, message: string): void {
    this.sql.exec("UPDATE reports SET verify = ?, next_attempt_at = ?, last_error = ? WHERE seq = ?", verify ? 1 : 0, at, message, report.seq);
  }

  /** Stripe refused it for good: the row stays (nothing is lost), visible in the admin API and announced. */
  fail(report: ReportRow, message: string): "failed" {
    this.sql.exec("UPDATE reports SET status = 'failed', last_error = ? WHERE seq = ?", message, report.seq);
    this.outbox.emit("report.failed", { report_id: report.report_id, kind: report.kind, amount: report.amount, meter: report.meter, error: message });
    log.error(`stripe report ${report.report_id} failed permanently: ${message}`);
    return "failed";
  }

  /** An operator's retry of a failed report: it is looked up at Stripe first, then sent again if missing. */
  retry(reportId: string, now: number): ReportRow | "not_found" | "not_failed" {
    const row = this.byId(reportId);
    if (!row) return "not_found";
    if (row.status !== "failed") return "not_failed";
    this.sql.exec("UPDATE reports SET status = 'pending', verify = 1, attempts = 0, next_attempt_at = ? WHERE seq = ?", now, row.seq);
    return this.byId(reportId)!;
  }

  /** An operator settled a failed report by hand at Stripe: it counts as reported from now on. */
  resolve(reportId: string, now: number): ReportRow | "not_found" | "not_failed" {
    const row = this.byId(reportId);
    if (!row) return "not_found";
    if (row.status !== "failed") return "not_failed";
    this.sql.exec("UPDATE reports SET status = 'resolved', sent_at = ? WHERE seq = ?", now, row.seq);
    return this.byId(reportId)!;
  }

  byId(reportId: string): ReportRow | undefined {
    return this.sql.exec("SELECT * FROM reports WHERE report_id = ?", reportId).toArray()[0] as unknown as ReportRow | undefined;
  }

  /** Post-paid usage Stripe reported as refused (meter error events): failed and visible, never silent. */
  meterEventsFailed(identifiers: string[], reason: string): number {
    let failed = 0;
    for (const id of identifiers) {
      const row = this.byId(id);
      if (row?.kind !== "meter_event" || row.status === "failed") continue;
      this.fail(row, reason);
      failed++;
    }
    return failed;
  }

  /** A fresh idempotency key for a retry whose key is spent (a saved 500) or may have expired. */
  rotateKey(report: ReportRow): string {
    const key = `${report.report_id}_r${report.attempts}`;
    this.sql.exec("UPDATE reports SET idempotency_key = ?, verify = 0 WHERE seq = ?", key, report.seq);
    return key;
  }

  markSent(report: ReportRow, stripeId: string | null, endingBalance: number | null, now: number): void {
    this.sql.exec("UPDATE reports SET status = 'sent', stripe_id = ?, sent_at = ?, last_error = NULL WHERE seq = ?", stripeId, now, report.seq);
    if (endingBalance !== null) this.account.set({ stripe_balance: endingBalance, stripe_balance_at: now });
  }

  view(): Record<string, unknown> {
    const a = this.account.row;
    const reports = this.sql.exec("SELECT * FROM reports ORDER BY seq DESC LIMIT 20").toArray() as unknown as ReportRow[];
    return {
      enabled: this.config().stripeEnabled,
      pending_usage_exact_cents: formatCents(a.pending_usage),
      pending_meter_quantities: Object.fromEntries(
        this.sql
          .exec("SELECT meter, quantity FROM meter_pending WHERE quantity != 0")
          .toArray()
          .map((r) => [r.meter, r.quantity]),
      ),
      pending_costs: this.sql
        .exec("SELECT meter, model, micros FROM cost_pending WHERE micros != 0 ORDER BY meter, model")
        .toArray()
        .map((r) => ({ meter: r.meter, model: r.model || null, exact_cents: formatCents(r.micros as number) })),
      last_known_stripe_balance: a.stripe_balance,
      last_known_stripe_balance_at: a.stripe_balance_at,
      edge_balance_exact_cents: formatCents(a.balance),
      reconcile_needed: a.reconcile_needed === 1,
      ...this.retention.view(),
      recent_reports: reports.map((r) => ({
        id: r.report_id,
        kind: r.kind,
        amount: r.amount,
        meter: r.meter,
        ...(r.model ? { model: r.model } : {}),
        status: r.status,
        attempts: r.attempts,
        last_error: r.last_error,
        stripe_id: r.stripe_id,
        created_at: r.created_at,
        sent_at: r.sent_at,
      })),
    };
  }
}
