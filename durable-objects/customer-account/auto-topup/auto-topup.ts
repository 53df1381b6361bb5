import { newId } from "../../../src/lib/api-key-format";
import type { Config } from "../../../src/lib/config";
import { centsToMicros } from "../../../src/lib/money";
import { DAY_MS } from "../../../src/lib/time";
import { NOTICE_TIMER, type Notices } from "../cohorts/notices";
import type { AccountStore } from "../core/account";
import type { Timers } from "../core/timers";
import type { ProviderWebhookOutbox } from "../notify/provider-webhooks";
import { liftedByNewCard, raised } from "./notice";
import { type AutoTopUpSettings, monthOf, nextUtcDay, planTopUp, type TopUpPlan, termsOf } from "./plan";

export const AUTO_TOPUP_TABLES = {
  v9: `
CREATE TABLE IF NOT EXISTS auto_topup (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  enabled INTEGER NOT NULL DEFAULT 0,
  threshold_cents INTEGER,
  amount_cents INTEGER,
  monthly_cap_cents INTEGER,
  paused_at INTEGER,
  paused_reason TEXT,
  paused_topup_id TEXT,
  pending_topup_id TEXT,
  saved_payment_method TEXT,
  saved_at INTEGER,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS topups (
  id TEXT PRIMARY KEY,
  amount_cents INTEGER NOT NULL,
  currency TEXT NOT NULL,
  month TEXT NOT NULL,
  status TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  payment_intent TEXT,
  payment_method TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  verify INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  reason TEXT,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  settled_at INTEGER
);
CREATE INDEX IF NOT EXISTS topups_month ON topups(month, status);
CREATE INDEX IF NOT EXISTS topups_payment_intent ON topups(payment_intent) WHERE payment_intent IS NOT NULL;`,
  // The rate limits, the PaymentIntent that saved the card (a refund or dispute of it pauses), and
  // started top-ups by time. Auto top-up that charged the default card, or whose threshold is not
  // below its amount, is paused here and the customer told once (the notices timer sends it).
  v14: `
ALTER TABLE auto_topup ADD COLUMN min_interval_seconds INTEGER NOT NULL DEFAULT 600;
ALTER TABLE auto_topup ADD COLUMN max_per_day INTEGER NOT NULL DEFAULT 4;
ALTER TABLE auto_topup ADD COLUMN saved_payment_intent TEXT;
CREATE INDEX IF NOT EXISTS topups_created ON topups(created_at);
INSERT INTO notices (kind, details, created_at)
  SELECT 'auto_topup_changed',
         json_object('type', 'paused', 'reason', CASE WHEN saved_payment_method IS NULL THEN 'no_saved_card' ELSE 'invalid_settings' END, 'migration', json('true')),
         CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
  FROM auto_topup WHERE enabled = 1 AND (saved_payment_method IS NULL OR threshold_cents >= amount_cents);
UPDATE auto_topup
  SET paused_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
      paused_reason = CASE WHEN saved_payment_method IS NULL THEN 'no_saved_card' ELSE 'invalid_settings' END,
      paused_topup_id = NULL
  WHERE enabled = 1 AND (saved_payment_method IS NULL OR threshold_cents >= amount_cents);
INSERT INTO timers (name, due_at) SELECT '${NOTICE_TIMER}', 0 WHERE EXISTS (SELECT 1 FROM notices) ON CONFLICT (name) DO NOTHING;`,
  // Stripe's receipt for each top-up, to the email the customer had when it started.
  v17: `ALTER TABLE topups ADD COLUMN receipt_email TEXT;`,
};

/** The auto top-up timer: creates the pending top-up's PaymentIntent, or starts one a limit held back, under the object's lock. */
export const AUTO_TOPUP_TIMER = "auto_topup";

interface SettingsRow extends Record<keyof AutoTopUpSettings, number | null> {
  enabled: number;
  paused_at: number | null;
  paused_reason: string | null;
  paused_topup_id: string | null;
  pending_topup_id: string | null;
  saved_payment_method: string | null;
  saved_payment_intent: string | null;
  saved_at: number | null;
  updated_at: number;
}

export type { AutoTopUpSettings, TopUpRow, TopUpStatus } from "./plan";

import type { TopUpRow, TopUpStatus } from "./plan";

/**
 * A customer's auto top-up: its settings (cached, read on every balance change), its top-ups, and
 * the step that starts one. At most one top-up is pending at a time: its id is on the settings
 * row, written in the same synchronous step as the debit that crossed the threshold. It charges
 * only the card a Checkout top-up saved for it.
 */
export class AutoTopUp {
  private row: SettingsRow | null = null;
  /** While set, changed() starts nothing (a clawback, a paid credit landing: see quietly()). */
  private quiet = 0;
  /** A rate limit holds the next top-up until then (a cache: plan() then skips its queries). */
  private waitUntil: number | null = null;

  constructor(
    private readonly sql: SqlStorage,
    private readonly deps: {
      timers: Timers;
      account: AccountStore;
      config: () => Config;
      availableMicros: (now: number) => number;
      currencyMismatch: () => string | null;
      outbox: ProviderWebhookOutbox;
      notices: Notices;
    },
  ) {}

  load(): void {
    this.row = (this.sql.exec("SELECT * FROM auto_topup WHERE id = 1").toArray()[0] as unknown as SettingsRow | undefined) ?? null;
    this.waitUntil = null;
  }

  /** The settings while auto top-up is on (paused or not), else null. */
  get settings(): (AutoTopUpSettings & { paused: boolean }) | null {
    const terms = this.terms();
    return terms && this.row!.enabled ? { ...terms, paused: this.row!.paused_at !== null } : null;
  }

  private terms(): AutoTopUpSettings | null {
    const r = this.row;
    if (!r || r.threshold_cents === null || r.amount_cents === null || r.monthly_cap_cents === null) return null;
    return {
      threshold_cents: r.threshold_cents,
      amount_cents: r.amount_cents,
      monthly_cap_cents: r.monthly_cap_cents,
      min_interval_seconds: r.min_interval_seconds ?? 600,
      max_per_day: r.max_per_day ?? 4,
    };
  }

  /** The settings row as stored (the admin view reads it), null until auto top-up was first set. */
  get stored(): Readonly<SettingsRow> | null {
    return this.row;
  }

  /** The settings last set, on or off (null until first set). */
  get lastSet(): AutoTopUpSettings | null {
    return this.terms();
  }

  get pausedReason(): string | null {
    return this.row?.paused_reason ?? null;
  }

  get savedPaymentMethod(): string | null {
    return this.row?.saved_payment_method ?? null;
  }

  /** Why auto top-up cannot run for this customer at all, or null. */
  inactive(): string | null {
    const config = this.deps.config();
    const a = this.deps.account.row;
    if (!config.stripeEnabled) return "Stripe is not configured";
    if (a.deleted_at !== null) return "the customer is deleted";
    if (a.plan !== "prepaid") return "post-paid customers are invoiced";
    const mismatch = this.deps.currencyMismatch();
    return mismatch ? `the Stripe customer's currency is ${mismatch}` : null;
  }

  /** Whether a top-up may be sent now: on, not paused, active, with a saved card. */
  get on(): boolean {
    const settings = this.settings;
    return settings !== null && !settings.paused && this.inactive() === null && this.savedPaymentMethod !== null;
  }

  private write(fields: Partial<SettingsRow>, now: number): void {
    const current: SettingsRow = this.row ?? {
      enabled: 0,
      threshold_cents: null,
      amount_cents: null,
      monthly_cap_cents: null,
      min_interval_seconds: 600,
      max_per_day: 4,
      paused_at: null,
      paused_reason: null,
      paused_topup_id: null,
      pending_topup_id: null,
      saved_payment_method: null,
      saved_payment_intent: null,
      saved_at: null,
      updated_at: now,
    };
    const next = { ...current, ...fields, updated_at: now };
    const columns = Object.keys(next) as (keyof SettingsRow)[];
    this.sql.exec(
      `INSERT INTO auto_topup (id, ${columns.join(", ")}) VALUES (1, ${columns.map(() => "?").join(", ")})
       ON CONFLICT (id) DO UPDATE SET ${columns.map((c) => `${c} = excluded.${c}`).join(", ")}`,
      ...columns.map((c) => next[c]),
    );
    this.row = next;
    this.waitUntil = null;
  }

  /** What `auto_topup.updated` carries as the old and new settings (null: never set). */
  private snapshot() {
    const terms = this.terms();
    return terms && { enabled: this.row!.enabled === 1, ...terms, paused_reason: this.row!.paused_reason };
  }

  /**
   * Turns auto top-up on with these settings (lifting any pause), or off with null. Turning it off
   * cancels a pending top-up Stripe has not been asked for yet; one already sent settles through
   * Stripe. Any change sends `auto_topup.updated`; turning it on (or back on from a pause) or
   * letting it charge more also emails the customer (`auto_topup_changed`), whoever asked.
   */
  configure(settings: AutoTopUpSettings | null, now: number): void {
    const before = this.snapshot();
    const wasOn = before?.enabled && before.paused_reason === null;
    const resume = { paused_at: null, paused_reason: null, paused_topup_id: null };
    if (settings) this.write({ enabled: 1, ...termsOf(settings), ...resume }, now);
    else {
      this.write({ enabled: 0, ...resume }, now);
      const pending = this.pending();
      if (pending && pending.attempts === 0) this.finish(pending.id, { status: "canceled", reason: "auto top-up turned off" }, now);
    }
    const after = this.snapshot();
    if (JSON.stringify(before) === JSON.stringify(after)) return;
    this.deps.outbox.emit("auto_topup.updated", { previous: before, current: after });
    if (!settings) return;
    const previous = before && termsOf(before);
    if (!wasOn || raised(previous!, settings, this.deps.config().PRICING.currency).length) {
      this.deps.notices.queue("auto_topup_changed", { type: "updated", turned_on: !wasOn, previous, current: termsOf(settings) }, now);
    }
  }

  /**
   * A card saved for off-session use by a Checkout top-up (`payment_intent` saved it): the next
   * top-ups charge it. It lifts a pause for a card failure only; the later saving wins.
   */
  saveCard(paymentMethod: string, paymentIntent: string, savedAt: number, now: number): boolean {
    if (this.row?.saved_at !== null && this.row?.saved_at !== undefined && this.row.saved_at > savedAt) return false;
    const lift = liftedByNewCard(this.pausedReason) ? { paused_at: null, paused_reason: null, paused_topup_id: null } : {};
    this.write({ saved_payment_method: paymentMethod, saved_payment_intent: paymentIntent, saved_at: savedAt, ...lift }, now);
    return true;
  }

  /**
   * Pauses auto top-up (while it is on) and sends `auto_topup.paused`. `topUpId` is the top-up
   * whose payment failed (a card failure), null for the other reasons; a pause that only setting
   * `auto_topup` again lifts replaces a card failure's and is emailed to the customer.
   */
  pause(reason: string, topUpId: string | null, now: number): boolean {
    if (!this.settings) return false;
    const current = this.pausedReason;
    if (current !== null && (!liftedByNewCard(current) || liftedByNewCard(reason))) return false;
    this.write({ paused_at: now, paused_reason: reason, paused_topup_id: topUpId }, now);
    this.deps.outbox.emit("auto_topup.paused", { reason, topup_id: topUpId });
    if (!liftedByNewCard(reason)) this.deps.notices.queue("auto_topup_changed", { type: "paused", reason }, now);
    return true;
  }

  resumeAfter(topUpId: string, now: number): void {
    if (this.row?.paused_topup_id === topUpId) this.write({ paused_at: null, paused_reason: null, paused_topup_id: null }, now);
  }

  /**
   * A refund or dispute of a payment: when it was made with the auto top-up card (a top-up, the
   * Checkout payment that saved the card, or any charge of that card), auto top-up pauses.
   */
  paymentReversed(reason: "refund" | "dispute", payment: { paymentIntent: string | null; paymentMethod: string | null }, now: number): boolean {
    const r = this.row;
    if (!r) return false;
    const { paymentIntent: pi, paymentMethod: pm } = payment;
    const withCard =
      (pm !== null && pm === r.saved_payment_method) ||
      (pi !== null && (pi === r.saved_payment_intent || this.sql.exec("SELECT 1 FROM topups WHERE payment_intent = ?", pi).toArray().length > 0));
    return withCard && this.pause(reason, null, now);
  }

  /** Runs `fn` (a clawback, a freeze, a paid credit landing) with no top-up started by it. */
  quietly<T>(fn: () => T): T {
    this.quiet++;
    try {
      return fn();
    } finally {
      this.quiet--;
    }
  }

  get(id: string): TopUpRow | undefined {
    return this.sql.exec("SELECT * FROM topups WHERE id = ?", id).toArray()[0] as unknown as TopUpRow | undefined;
  }

  pending(): TopUpRow | undefined {
    const id = this.row?.pending_topup_id;
    return id ? this.get(id) : undefined;
  }

  recent(limit: number): TopUpRow[] {
    return this.sql.exec("SELECT * FROM topups ORDER BY created_at DESC, rowid DESC LIMIT ?", limit).toArray() as unknown as TopUpRow[];
  }

  /** Whole cents of the month's top-ups that are pending or succeeded. */
  monthTotal(month: string): number {
    return this.sql.exec("SELECT COALESCE(SUM(amount_cents), 0) AS n FROM topups WHERE month = ? AND status IN ('pending', 'succeeded')", month).one().n as number;
  }

  /** Top-ups started (not canceled) this UTC day, and when the latest started within the interval or the day. */
  recentStarts(now: number, intervalSeconds: number): { dayCount: number; lastStartedAt: number | null } {
    const dayStart = nextUtcDay(now) - DAY_MS;
    const row = this.sql
      .exec(
        "SELECT COALESCE(SUM(created_at >= ?), 0) AS today, MAX(created_at) AS last FROM topups WHERE created_at >= ? AND status != 'canceled'",
        dayStart,
        Math.min(dayStart, now - intervalSeconds * 1000),
      )
      .one();
    return { dayCount: row.today as number, lastStartedAt: row.last as number | null };
  }

  /** Pure planning over this customer's state: null while off, paused, inactive or without a card. */
  plan(now: number): TopUpPlan | null {
    const settings = this.settings;
    if (!settings || !this.on) return null;
    const pending = this.row!.pending_topup_id !== null;
    // Above the threshold there is nothing to sum: the common case on the request path costs no query.
    const availableMicros = this.deps.availableMicros(now);
    if (pending || availableMicros >= centsToMicros(settings.threshold_cents)) return { kind: "none" };
    if (this.waitUntil !== null && now < this.waitUntil) return { kind: "wait", at: this.waitUntil };
    const plan = planTopUp({ settings, pending, availableMicros, monthTotalCents: this.monthTotal(monthOf(now)), ...this.recentStarts(now, settings.min_interval_seconds), now });
    this.waitUntil = plan.kind === "wait" ? plan.at : null;
    return plan;
  }

  /**
   * How much more may be charged before changed() could start a top-up or change its cohort:
   * unlimited without settings, paused or with no saved card (only a step that calls changed()
   * leaves those), the distance to the threshold while it is active and idle, and nothing in any
   * other state (every charge then looks again).
   */
  slack(now: number): number {
    const settings = this.settings;
    if (!settings || settings.paused || this.savedPaymentMethod === null) return Infinity;
    if (!this.on || this.row!.pending_topup_id !== null) return 0;
    return Math.max(0, this.deps.availableMicros(now) - centsToMicros(settings.threshold_cents));
  }

  /**
   * After every balance change (context.changed(), in the same synchronous step): starts a top-up
   * when the plan says so, as a pending row the auto top-up timer sends, or arms that timer for
   * when a rate limit allows it. Returns the cohort the customer is in for auto top-up, if any.
   */
  changed(now: number): "topup_failed" | "auto_topup_capped" | null {
    if (this.settings?.paused) return liftedByNewCard(this.pausedReason) ? "topup_failed" : null;
    const plan = this.plan(now);
    if (plan?.kind === "capped") return "auto_topup_capped";
    if (this.quiet) return null;
    if (plan?.kind === "wait") this.deps.timers.at(AUTO_TOPUP_TIMER, plan.at);
    if (plan?.kind === "start") this.start(now);
    return null;
  }

  private start(now: number): void {
    const settings = this.settings!;
    const id = newId("topup");
    const customer = this.deps.account.row.customer_id;
    this.sql.exec(
      `INSERT INTO topups (id, amount_cents, currency, month, status, idempotency_key, payment_method, receipt_email, created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?)`,
      id,
      settings.amount_cents,
      this.deps.config().PRICING.currency,
      monthOf(now),
      // Stripe scopes idempotency keys to the account, so the customer id is part of the key.
      `payg_auto_topup_${customer}_${id}`,
      this.savedPaymentMethod,
      this.deps.account.row.email,
      now,
    );
    this.write({ pending_topup_id: id }, now);
    this.deps.timers.at(AUTO_TOPUP_TIMER, now);
  }

  /** Records what a send learned; the row stays pending. */
  update(id: string, fields: Partial<Pick<TopUpRow, "payment_intent" | "payment_method" | "attempts" | "verify" | "next_attempt_at" | "last_error" | "idempotency_key">>): void {
    const entries = Object.entries(fields);
    if (!entries.length) return;
    this.sql.exec(`UPDATE topups SET ${entries.map(([k]) => `${k} = ?`).join(", ")} WHERE id = ?`, ...entries.map(([, v]) => v as SqlStorageValue), id);
  }

  /** Settles a top-up (succeeded, failed or canceled); it no longer blocks the next one. */
  finish(id: string, fields: { status: Exclude<TopUpStatus, "pending">; reason?: string | null; payment_intent?: string | null }, now: number): void {
    this.sql.exec(
      "UPDATE topups SET status = ?, reason = ?, payment_intent = COALESCE(?, payment_intent), settled_at = ?, next_attempt_at = NULL WHERE id = ?",
      fields.status,
      fields.reason ?? null,
      fields.payment_intent ?? null,
      now,
      id,
    );
    if (this.row?.pending_topup_id === id) this.write({ pending_topup_id: null }, now);
  }
}
