import type Stripe from "stripe";
import { log } from "../../../src/lib/log";
import { ENDPOINTS, type StripePermit } from "../../../src/lib/stripe-budget";
import { describeError, IDEMPOTENCY_SAFE_MS, isBudgetSpent, isTransientStripeError, stripeClient } from "../../../src/lib/stripe-client";
import { backoffMs } from "../core/backoff";
import { DESCRIPTIONS, MAX_ATTEMPTS, type ReportKind, type ReportRow, type SendOutcome, type StripeReports } from "./reports";

/*
 * Sending the report rows (reports.ts) to Stripe, exactly once: each row's id is the idempotency
 * key and `metadata[payg_report]`. A retry after a 5xx (Stripe replays a saved 500 forever) or
 * past 23 hours (keys expire) first looks the transaction up, and only then sends again under a
 * fresh key.
 */

/** Sends pending reports whose backoff has passed (all of them with ignoreBackoff). */
export async function flushReports(reports: StripeReports, permit: StripePermit, now: number, ignoreBackoff = false): Promise<{ sent: number; errors: number; pending: number }> {
  let sent = 0;
  let errors = 0;
  const due = reports.due(now, ignoreBackoff);
  for (const report of due) {
    // No call left in this batch's grant: the rest wait for a later cycle, with no attempt counted.
    if (!permit.has(report.kind === "meter_event" ? ENDPOINTS.meterEventCreate : ENDPOINTS.balanceTransactionCreate)) {
      waitForBudget(reports, permit);
      break;
    }
    const outcome = await sendReport(reports, permit, report, now);
    if (outcome === "sent") sent++;
    else errors++;
    if (outcome === "rate_limited") break;
  }
  return { sent, errors, pending: reports.pendingCount() };
}

/**
 * Before a reconcile that a balance change in Stripe asked for: settles the pending balance
 * reports now, whatever their backoff. Each is looked up at Stripe first (its response may have
 * been lost on the way back), and sent only if it is not there; a report still unsettled keeps
 * the reconcile waiting, and a lookup Stripe cannot answer stops here (the backoff resumes).
 */
export async function settleBalanceReports(reports: StripeReports, permit: StripePermit, now: number): Promise<void> {
  const stripe = stripeClient(reports.config(), permit);
  const customerId = reports.account.row.customer_id;
  const rows = reports.pendingBalanceReports();
  for (const report of rows) {
    let found: Stripe.CustomerBalanceTransaction | null;
    try {
      found = await findTransaction(stripe, customerId, report);
    } catch (error) {
      log.warn(`stripe report ${report.report_id}: lookup before a reconcile failed`, describeError(error));
      return;
    }
    if (found) reports.markSent(report, found.id, found.ending_balance, now);
    else if ((await sendReport(reports, permit, reports.byId(report.report_id)!, now)) === "rate_limited") return;
  }
}

/** Stripe work waits until the budget is likely to have calls again (the directory is told when). */
export function waitForBudget(reports: StripeReports, permit: StripePermit): void {
  reports.budgetWaitUntil = Math.max(reports.budgetWaitUntil, Date.now() + Math.max(1000, permit.retryAfterMs));
}

async function sendReport(reports: StripeReports, permit: StripePermit, report: ReportRow, now: number): Promise<SendOutcome> {
  const config = reports.config();
  const stripe = stripeClient(config, permit);
  const customerId = reports.account.row.customer_id;
  let key = report.idempotency_key;
  const theirs = reports.account.row.stripe_currency;
  if (report.kind !== "meter_event" && theirs && theirs !== config.PRICING.currency) {
    // Stripe would put it in invoice_credit_balance, where `balance` never shows it.
    return reports.fail(report, `currency_mismatch: the Stripe customer's currency is ${theirs}; a ${config.PRICING.currency} balance transaction would not reach its balance`);
  }
  try {
    if (report.kind === "meter_event" && report.verify) {
      // A saved 500 replays under its key forever; the identifier still dedupes at Stripe.
      key = reports.rotateKey(report);
    } else if (report.kind !== "meter_event" && (report.verify || Date.now() - report.created_at > IDEMPOTENCY_SAFE_MS)) {
      const found = await findTransaction(stripe, customerId, report);
      if (found) {
        reports.markSent(report, found.id, found.ending_balance, now);
        return "sent";
      }
      key = reports.rotateKey(report);
    }
    reports.attempted(report);
    if (report.kind === "meter_event") {
      const event = await stripe.billing.meterEvents.create(
        {
          event_name: report.event_name!,
          payload: { stripe_customer_id: customerId, value: String(report.amount), ...(report.model ? { model: report.model } : {}) },
          identifier: report.report_id,
          timestamp: report.event_timestamp!,
        },
        { idempotencyKey: key },
      );
      reports.markSent(report, event.identifier, null, now);
    } else {
      const txn = await stripe.customers.createBalanceTransaction(
        customerId,
        {
          amount: report.amount,
          currency: config.PRICING.currency,
          description: DESCRIPTIONS[report.kind as Exclude<ReportKind, "meter_event">],
          metadata: { payg_report: report.report_id },
        },
        { idempotencyKey: key },
      );
      reports.markSent(report, txn.id, txn.ending_balance, now);
    }
    return "sent";
  } catch (error) {
    if (isBudgetSpent(error)) {
      // It never reached Stripe: the attempt it counted is given back.
      reports.notAttempted(report);
      waitForBudget(reports, permit);
      return "rate_limited";
    }
    const attempts = report.attempts + 1;
    const message = describeError(error);
    const status = (error as { statusCode?: number }).statusCode;
    if (isTransientStripeError(error) && attempts < MAX_ATTEMPTS) {
      reports.retryLater(report, (status !== undefined && status >= 500) || report.verify === 1, now + backoffMs(attempts), message);
      return status === 429 ? "rate_limited" : "retry";
    }
    // Never failed without looking: an earlier attempt may have landed after all.
    if (report.kind !== "meter_event") {
      try {
        const found = await findTransaction(stripe, customerId, report);
        if (found) {
          reports.markSent(report, found.id, found.ending_balance, now);
          return "sent";
        }
      } catch (lookup) {
        if (isTransientStripeError(lookup)) {
          reports.retryLater(report, true, now + backoffMs(attempts), message);
          return "retry";
        }
      }
    }
    return reports.fail(report, message);
  }
}

/** The balance transaction a report posted, looked up by its metadata (newest first, back to a little before the report), or null. */
async function findTransaction(stripe: Stripe, customerId: string, report: ReportRow) {
  const since = Math.floor(report.created_at / 1000) - 300;
  for await (const txn of stripe.customers.listBalanceTransactions(customerId, { limit: 100 })) {
    if (txn.metadata?.payg_report === report.report_id) return txn;
    if (txn.created < since) break;
  }
  return null;
}
