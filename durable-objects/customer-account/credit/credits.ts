import { newId } from "../../../src/lib/api-key-format";
import { log } from "../../../src/lib/log";
import { centsToMicros, microsToWholeCents } from "../../../src/lib/money";
import { DAY_MS } from "../../../src/lib/time";
import type { AccountContext } from "../core/context";
import type { CheckoutSlot } from "./checkout-limit";
import { settleDisputes } from "./disputes";
import { type Grant, type GrantCategory, type GrantSource, spendable } from "./grants";
import { settleRefunds } from "./refunds";
import { MAX_BALANCE_MICROS, MAX_PAID_BALANCE_MICROS } from "./wallet";

export interface GrantInput {
  customerId: string;
  /** Whole cents, > 0. */
  amountCents: number;
  category?: GrantCategory;
  priority?: number;
  /** Unix seconds. */
  expiresAt?: number | null;
  meters?: string[] | null;
  reason: string;
  /** Makes it idempotent: the same reference again returns the first grant. */
  reference?: string;
  source?: GrantSource;
  paymentIntent?: string | null;
}

export type GrantResult =
  | { status: "created" | "existing"; grant: Grant; entryId: number | null; balanceMicros: number }
  | { status: "conflict" | "balance_limit"; grant?: undefined; entryId?: undefined; balanceMicros: number };

/** What the credits endpoint answers for a positive amount (a paid, never-expiring grant). */
export function creditOutcome(result: GrantResult) {
  return {
    applied: result.status === "created",
    conflict: result.status === "conflict",
    limit: result.status === "balance_limit",
    entryId: result.entryId ?? null,
    balanceMicros: result.balanceMicros,
  };
}

/** Whether `micros` more credit keeps the balance within `limit` (by default the largest balance an account holds). */
export function fitsBalance(context: AccountContext, micros: number, limit = MAX_BALANCE_MICROS): boolean {
  return context.account.row.balance + micros <= limit;
}

/** The same request again (an Idempotency-Key reused) must describe the same grant. */
function sameGrant(g: Grant, input: GrantInput): boolean {
  return (
    g.amount === centsToMicros(input.amountCents) &&
    g.category === (input.category ?? "paid") &&
    g.priority === (input.priority ?? 50) &&
    g.expires_at === (input.expiresAt ?? null) &&
    JSON.stringify(g.meters) === JSON.stringify(input.meters ?? null)
  );
}

/**
 * A credit grant, synchronous (so it is also safe inside the lock). With Stripe on it is queued
 * for Stripe's customer balance too, whatever the plan (a post-paid customer's credit then
 * counts against its invoices, and survives a switch back to prepaid).
 */
export function createGrant(context: AccountContext, input: GrantInput): GrantResult {
  context.ensure(input.customerId);
  if (input.reference) {
    const existing = context.grants.byReference(input.reference);
    if (existing) {
      const status = sameGrant(existing, input) ? "existing" : "conflict";
      return status === "existing"
        ? { status, grant: existing, entryId: context.ledger.byReference(input.reference)?.id ?? null, balanceMicros: context.account.row.balance }
        : { status, balanceMicros: context.account.row.balance };
    }
  }
  const amount = centsToMicros(input.amountCents);
  const source = input.source ?? "admin";
  // Money already paid is credited past MAX_BALANCE_MICROS: a Checkout session opens only while its
  // top-up fits (takeCheckoutSlot) and auto top-up charges only below its threshold, so only
  // sessions opened earlier land past it. They may take it up to MAX_PAID_BALANCE_MICROS, still
  // exact; a payment past even that is not credited, and the log says so.
  const paid = source === "checkout" || source === "auto_topup" || source === "x402" || source === "mpp";
  if (!fitsBalance(context, amount, paid ? MAX_PAID_BALANCE_MICROS : MAX_BALANCE_MICROS)) {
    if (paid) log.error(`${input.reason}: paid, but ${input.amountCents} cents would take the balance past exact integers; not credited (refund it)`);
    return { status: "balance_limit", balanceMicros: context.account.row.balance };
  }
  const now = Date.now();
  const created = context.atomically(() => {
    const result = context.wallet.grant(
      {
        amount,
        category: input.category ?? "paid",
        priority: input.priority ?? 50,
        expiresAt: input.expiresAt ?? null,
        meters: input.meters ?? null,
        source,
        reason: input.reason,
        reference: input.reference ?? null,
        paymentIntent: input.paymentIntent ?? null,
      },
      now,
      paid ? { last_topup_cents: input.amountCents } : {},
    );
    const kind = paid ? "topup" : "grant";
    // Stripe scopes idempotency keys to the account, so the customer id is part of the key.
    const customer = context.account.row.customer_id;
    context.reports.queueCredit(kind, input.reference ? `payg_${kind}_${customer}_${input.reference}` : newId(`payg_${kind}_${customer}`), input.amountCents);
    // A refund or dispute of this payment may have arrived before the payment itself.
    if (input.paymentIntent) {
      settleRefunds(context, result.grant, now);
      settleDisputes(context, result.grant, now);
    }
    warnExpiring(context, now);
    context.scheduleExpiry(now);
    context.changed(now);
    return result;
  });
  return { status: "created", grant: created.grant, entryId: created.entryId, balanceMicros: context.account.row.balance };
}

export interface DeductionInput {
  customerId: string;
  /** Whole cents, > 0. */
  amountCents: number;
  reason: string;
  reference?: string;
}

/** Takes credit away across grants in drain order (the rest becomes debt); idempotent with a reference. */
export function deduct(context: AccountContext, input: DeductionInput): { applied: boolean; conflict: boolean; entryId: number | null; balanceMicros: number } {
  context.ensure(input.customerId);
  const amount = centsToMicros(input.amountCents);
  if (input.reference) {
    const existing = context.ledger.byReference(input.reference);
    if (existing) return { applied: false, conflict: existing.amount !== -amount, entryId: existing.id, balanceMicros: context.account.row.balance };
  }
  const now = Date.now();
  context.atomically(() => {
    const customer = context.account.row.customer_id;
    const reportId = input.reference ? `payg_deduction_${customer}_${input.reference}` : newId(`payg_deduction_${customer}`);
    context.wallet.deduct(amount, "deduction", input.reason, now, input.reference, context.reports.queueDebit("deduction", reportId, amount));
    context.changed(now);
  });
  return {
    applied: true,
    conflict: false,
    entryId: input.reference ? (context.ledger.byReference(input.reference)?.id ?? null) : null,
    balanceMicros: context.account.row.balance,
  };
}

/** Voids what remains of a grant, as a ledger entry (and, with Stripe on, a balance transaction). */
export function voidGrant(context: AccountContext, grantId: string): Grant | null {
  const grant = context.grants.all.find((g) => g.id === grantId);
  if (!grant) return null;
  const now = Date.now();
  context.atomically(() => {
    const removed = grant.remaining;
    context.wallet.close(grant, "voided", now, `voided ${grant.id}`, context.reports.queueDebit("void", `payg_void_${context.account.row.customer_id}_${grant.id}`, removed));
    context.scheduleExpiry(now);
    context.changed(now);
  });
  return grant;
}

/** `credit.expiring`, once per grant, when it comes within EMAILS.expiry_warning_days of its expiry. */
function warnExpiring(context: AccountContext, now: number): void {
  const window = (context.config.EMAILS?.expiry_warning_days ?? 7) * DAY_MS;
  for (const g of context.grants.all) {
    if (g.expires_at === null || g.expiry_warned || g.expires_at * 1000 <= now || g.expires_at * 1000 > now + window || spendable(g) === 0) continue;
    context.grants.markExpiryWarned(g);
    context.outbox.emit("credit.expiring", { grant_id: g.id, amount_cents: microsToWholeCents(spendable(g)), expires_at: g.expires_at });
  }
}

/** The expiry timer: writes every grant past its expiry out of the balance (and to Stripe), and warns of those close to it. */
export function expireGrants(context: AccountContext, now: number): number {
  let expired = 0;
  for (const grant of context.grants.expired(now)) {
    context.atomically(() => {
      const removed = grant.remaining;
      const reportId = `payg_expiry_${context.account.row.customer_id}_${grant.id}`;
      context.wallet.close(grant, "expired", now, `${grant.id} expired`, context.reports.queueDebit("expiry", reportId, removed));
    });
    expired++;
  }
  context.atomically(() => warnExpiring(context, now));
  context.scheduleExpiry(now);
  context.changed(now);
  return expired;
}

/**
 * One Checkout session of the customer's hourly allowance (GOVERNANCE.checkout_limit_per_hour),
 * and only while a top-up of `amountCents` fits under the largest balance: once paid, a top-up
 * is credited whatever the balance is by then (createGrant).
 */
export function takeCheckoutSlot(context: AccountContext, input: { limit: number; amountCents: number; now?: number }): CheckoutSlot | { ok: false; balanceLimit: true } {
  if (!context.account.exists) throw new Error("unknown customer");
  if (!fitsBalance(context, centsToMicros(input.amountCents))) return { ok: false, balanceLimit: true };
  return context.checkouts.take(input.limit, input.now ?? Date.now());
}
