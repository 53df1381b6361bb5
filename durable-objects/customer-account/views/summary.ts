import { formatCents, formatMoney, microsToWholeCents } from "../../../src/lib/money";
import { DAY_MS } from "../../../src/lib/time";
import { PaymentLog } from "../agent-payments/payment-log";
import { autoTopUpView, topUpView } from "../auto-topup/view";
import type { AccountContext } from "../core/context";
import { type Grant, spendable } from "../credit/grants";
import { ignoredPayments } from "../credit/ignored-payments";
import { bucketOf } from "../credit/ledger";

/** A grant as the admin API shows it: every amount in cents, like the rest of the API. */
export function grantView(g: Grant, nowMs: number) {
  const status = g.closed_reason ?? (g.expires_at !== null && g.expires_at * 1000 <= nowMs ? "expired" : "open");
  return {
    id: g.id,
    amount_cents: microsToWholeCents(g.amount),
    remaining_cents: microsToWholeCents(g.remaining),
    remaining_exact_cents: formatCents(g.remaining),
    frozen_cents: microsToWholeCents(g.frozen),
    frozen_exact_cents: formatCents(g.frozen),
    category: g.category,
    priority: g.priority,
    expires_at: g.expires_at,
    meters: g.meters,
    source: g.source,
    reason: g.reason,
    payment_intent: g.payment_intent,
    status,
    created_at: g.created_at,
    closed_at: g.closed_at,
  };
}

/** The admin API's view of one customer. */
export function summary(context: AccountContext): Record<string, unknown> {
  const a = context.account.row;
  const config = context.config;
  const currency = config.PRICING.currency;
  const now = Date.now();
  const available = context.wallet.spendableTotal(now);
  const frozen = context.grants.all.reduce((sum, g) => sum + Math.min(g.frozen, g.remaining), 0);
  const mismatch = context.currencyMismatch();
  return {
    customer: { ...context.account.profile(), created_at: a.created_at, updated_at: a.updated_at },
    balance: {
      available_cents: microsToWholeCents(available),
      available_exact_cents: formatCents(available),
      available: formatMoney(available, currency),
      total_exact_cents: formatCents(a.balance),
      debt_exact_cents: formatCents(a.debt),
      frozen_cents: microsToWholeCents(frozen),
      expiring_soon_cents: microsToWholeCents(context.expiringSoonMicros(now)),
      minimum_cents: microsToWholeCents(context.minimumMicros()),
      currency,
      ledger_sum_exact_cents: formatCents(context.ledger.sum()),
      ...(mismatch ? { blocked: `the Stripe customer's currency is ${mismatch}, not ${currency}: its credit is not usable here` } : {}),
    },
    grants: context.grants.all.filter((g) => spendable(g) > 0 || g.frozen > 0).map((g) => grantView(g, now)),
    usage_last_24h: context.ledger.usageSince(bucketOf(now - DAY_MS, config.PRICING.usage_bucket_seconds)),
    ledger_summary: context.ledger.summaryByKind(),
    refunds: { denied_total: a.refunds_denied, last_denied_at: a.last_refund_denied_at },
    cohorts: context.cohorts.view(),
    unpaid_invoices: context.invoices.unpaidIds(),
    stripe: { ...context.reports.view(), currency: a.stripe_currency, last_reconciled_at: a.last_reconciled_at },
    // Webhook events written here and not yet handed to the dispatcher (normally 0 within seconds).
    webhooks_pending: context.outbox.pending(),
    emails: context.emails.view(),
    // Payments that credited nothing (other currency, no top-up metadata, balance limit, …), newest first.
    ignored_payments: ignoredPayments(context.sql),
    // null when auto top-up was never set; else its settings, state (paused and why, capped) and this month's total.
    auto_topup: autoTopUpView(context.autoTopUp, now),
    // Agents' payments of a 402 (x402, MPP) and, for x402 with record_in_stripe, how their Stripe recordings stand.
    agent_payments: new PaymentLog(context.sql).view(),
  };
}

/** Exact micro-cent numbers, for tests and reconciliation checks. */
export function balanceCheck(context: AccountContext) {
  const { account, ledger, grants } = context;
  return {
    balanceMicros: account.row.balance,
    ledgerSumMicros: ledger.sum(),
    grantsRemainingMicros: grants.remaining(),
    debtMicros: account.row.debt,
    pendingUsageMicros: account.row.pending_usage,
    rows: ledger.rows(),
  };
}

/** One grant as the admin API shows it, or null. */
export function grantById(context: AccountContext, grantId: string): ReturnType<typeof grantView> | null {
  const grant = context.account.exists ? context.grants.get(grantId) : undefined;
  return grant ? grantView(grant, Date.now()) : null;
}

/** The latest grants, newest first. */
export function grantList(context: AccountContext, limit: number): ReturnType<typeof grantView>[] {
  return context.account.exists ? context.grants.list(limit).map((g) => grantView(g, Date.now())) : [];
}

/** Auto top-up settings, state and recent top-ups; null for an unknown customer. */
export function autoTopUpState(context: AccountContext, limit: number) {
  if (!context.account.exists) return null;
  return { auto_topup: autoTopUpView(context.autoTopUp, Date.now()), topups: context.autoTopUp.recent(limit).map(topUpView) };
}
