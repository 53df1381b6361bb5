import type { Config } from "../../src/config";
import { newId } from "../../src/keys";
import { centsToMicros } from "../../src/money";
import type { AccountStore } from "./account";
import type { Timers } from "./timers";

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
};

/** The auto top-up timer: creates the pending top-up's PaymentIntent, under the object's lock. */
export const AUTO_TOPUP_TIMER = "auto_topup";

/** What the admin API sets (`auto_topup` in `PUT /admin/customers/{id}`), whole cents. */
export interface AutoTopUpSettings {
  threshold_cents: number;
  amount_cents: number;
  monthly_cap_cents: number;
}

interface SettingsRow {
  enabled: number;
  threshold_cents: number | null;
  amount_cents: number | null;
  monthly_cap_cents: number | null;
  paused_at: number | null;
  paused_reason: string | null;
  paused_topup_id: string | null;
  pending_topup_id: string | null;
  saved_payment_method: string | null;
  saved_at: number | null;
  updated_at: number;
}

export type TopUpStatus = "pending" | "succeeded" | "failed" | "canceled";

export interface TopUpRow {
  id: string;
  amount_cents: number;
  currency: string;
  /** The UTC calendar month it started in ("2026-11"): the monthly cap counts by it. */
  month: string;
  status: TopUpStatus;
  idempotency_key: string;
  payment_intent: string | null;
  payment_method: string | null;
  attempts: number;
  /** 1 after Stripe answered 5xx: the next attempt looks the PaymentIntent up before sending. */
  verify: number;
  next_attempt_at: number | null;
  reason: string | null;
  last_error: string | null;
  created_at: number;
  settled_at: number | null;
}

export function monthOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 7);
}

/**
 * Whether a top-up starts now, with no I/O: only with none pending, below the threshold, and
 * only if it keeps the month's top-ups (pending and succeeded) within the cap; otherwise the
 * customer is `capped` (the auto_topup_capped cohort).
 */
export function planTopUp(s: {
  settings: AutoTopUpSettings;
  pending: boolean;
  availableMicros: number;
  monthTotalCents: number;
}): "start" | "capped" | "none" {
  if (s.pending || s.availableMicros >= centsToMicros(s.settings.threshold_cents)) return "none";
  return s.monthTotalCents + s.settings.amount_cents > s.settings.monthly_cap_cents ? "capped" : "start";
}

/**
 * A customer's auto top-up: its settings (cached, read on every balance change), its top-ups, and
 * the step that starts one. At most one top-up is pending at a time: its id is on the settings
 * row, written in the same synchronous step as the debit that crossed the threshold.
 */
export class AutoTopUp {
  private row: SettingsRow | null = null;

  constructor(
    private readonly sql: SqlStorage,
    private readonly deps: {
      timers: Timers;
      account: AccountStore;
      config: () => Config;
      availableMicros: (now: number) => number;
      currencyMismatch: () => string | null;
    },
  ) {}

  load(): void {
    this.row = (this.sql.exec("SELECT * FROM auto_topup WHERE id = 1").toArray()[0] as unknown as SettingsRow | undefined) ?? null;
  }

  /** The settings while auto top-up is on, else null. */
  get settings(): (AutoTopUpSettings & { paused: boolean }) | null {
    const r = this.row;
    if (!r?.enabled || r.threshold_cents === null || r.amount_cents === null || r.monthly_cap_cents === null) return null;
    return { threshold_cents: r.threshold_cents, amount_cents: r.amount_cents, monthly_cap_cents: r.monthly_cap_cents, paused: r.paused_at !== null };
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

  private write(fields: Partial<SettingsRow>, now: number): void {
    const current: SettingsRow = this.row ?? {
      enabled: 0,
      threshold_cents: null,
      amount_cents: null,
      monthly_cap_cents: null,
      paused_at: null,
      paused_reason: null,
      paused_topup_id: null,
      pending_topup_id: null,
      saved_payment_method: null,
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
  }

  /**
   * Turns auto top-up on with these settings (resuming it if a failure paused it), or off with
   * null. Turning it off cancels a pending top-up Stripe has not been asked for yet; one already
   * sent settles through Stripe.
   */
  configure(settings: AutoTopUpSettings | null, now: number): void {
    const resume = { paused_at: null, paused_reason: null, paused_topup_id: null };
    if (settings) return this.write({ enabled: 1, ...settings, ...resume }, now);
    this.write({ enabled: 0, ...resume }, now);
    const pending = this.pending();
    if (pending && pending.attempts === 0) this.finish(pending.id, { status: "canceled", reason: "auto top-up turned off" }, now);
  }

  /** A card saved for off-session use by a Checkout top-up: the next top-ups use it; a paused auto top-up resumes. */
  saveCard(paymentMethod: string, savedAt: number, now: number): boolean {
    if (this.row?.saved_at !== null && this.row?.saved_at !== undefined && this.row.saved_at > savedAt) return false;
    this.write({ saved_payment_method: paymentMethod, saved_at: savedAt, paused_at: null, paused_reason: null, paused_topup_id: null }, now);
    return true;
  }

  pause(topUpId: string, reason: string, now: number): void {
    if (this.settings) this.write({ paused_at: now, paused_reason: reason, paused_topup_id: topUpId }, now);
  }

  resumeAfter(topUpId: string, now: number): void {
    if (this.row?.paused_topup_id === topUpId) this.write({ paused_at: null, paused_reason: null, paused_topup_id: null }, now);
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

  /** Pure planning over this customer's state: null while off, paused or inactive. */
  plan(now: number): "start" | "capped" | "none" | null {
    const settings = this.settings;
    if (!settings || settings.paused || this.inactive()) return null;
    const pending = this.row!.pending_topup_id !== null;
    // Above the threshold there is nothing to sum: the common case on the request path costs no query.
    const availableMicros = this.deps.availableMicros(now);
    if (pending || availableMicros >= centsToMicros(settings.threshold_cents)) return "none";
    return planTopUp({ settings, pending, availableMicros, monthTotalCents: this.monthTotal(monthOf(now)) });
  }

  /**
   * How much more may be charged before changed() could start a top-up or change its cohort:
   * unlimited without settings, the distance to the threshold while it is active and idle, and
   * nothing in any other state (every charge then looks again).
   */
  slack(now: number): number {
    const settings = this.settings;
    if (!settings) return Infinity;
    if (settings.paused || this.inactive() || this.row!.pending_topup_id !== null) return 0;
    return Math.max(0, this.deps.availableMicros(now) - centsToMicros(settings.threshold_cents));
  }

  /**
   * After every balance change (room.changed(), in the same synchronous step): starts a top-up
   * when the plan says so, as a pending row the auto top-up timer sends. Returns the cohort the
   * customer is in for auto top-up, if any.
   */
  changed(now: number): "topup_failed" | "auto_topup_capped" | null {
    if (this.settings?.paused) return "topup_failed";
    const plan = this.plan(now);
    if (plan === "capped") return "auto_topup_capped";
    if (plan === "start") this.start(now);
    return null;
  }

  private start(now: number): void {
    const settings = this.settings!;
    const id = newId("topup");
    const customer = this.deps.account.row.customer_id;
    this.sql.exec(
      `INSERT INTO topups (id, amount_cents, currency, month, status, idempotency_key, created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)`,
      id,
      settings.amount_cents,
      this.deps.config().PRICING.currency,
      monthOf(now),
      // Stripe scopes idempotency keys to the account, so the customer id is part of the key.
      `payg_auto_topup_${customer}_${id}`,
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

  /** The admin API's view: settings, state (and why), this month's total, the pending and last top-up. */
  view(now: number) {
    const r = this.row;
    if (!r || r.threshold_cents === null) return null;
    const month = monthOf(now);
    const total = this.monthTotal(month);
    const inactive = this.inactive();
    const plan = this.plan(now);
    const pending = this.pending();
    const state = !r.enabled
      ? "off"
      : r.paused_at !== null
        ? "paused"
        : inactive
          ? "inactive"
          : pending
            ? "pending"
            : plan === "capped"
              ? "capped"
              : "active";
    const why =
      state === "paused"
        ? `top-up ${r.paused_topup_id} failed (${r.paused_reason}): set auto_topup again, or save a card with a Checkout top-up, to resume`
        : state === "inactive"
          ? inactive
          : state === "capped"
            ? `another top-up would take this month's top-ups past monthly_cap_cents (${total} of ${r.monthly_cap_cents} used)`
            : null;
    return {
      enabled: r.enabled === 1,
      threshold_cents: r.threshold_cents,
      amount_cents: r.amount_cents,
      monthly_cap_cents: r.monthly_cap_cents,
      state,
      why,
      paused: r.paused_at !== null,
      paused_at: r.paused_at,
      paused_reason: r.paused_reason,
      month,
      month_total_cents: total,
      month_remaining_cents: Math.max(0, (r.monthly_cap_cents ?? 0) - total),
      saved_payment_method: r.saved_payment_method,
      pending: pending ? topUpView(pending) : null,
      last: this.recent(1).map(topUpView)[0] ?? null,
    };
  }
}

export function topUpView(t: TopUpRow) {
  return {
    id: t.id,
    amount_cents: t.amount_cents,
    currency: t.currency,
    status: t.status,
    reason: t.reason,
    payment_intent: t.payment_intent,
    attempts: t.attempts,
    last_error: t.last_error,
    created_at: t.created_at,
    settled_at: t.settled_at,
  };
}
