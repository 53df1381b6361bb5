import type { AccountContext } from "../core/context";
import { STRIPE_TIMER } from "./events";

/** An operator's retry of a failed Stripe report (looked up first, from the stripe timer); a ledger note records it. */
export function retryReport(context: AccountContext, reportId: string) {
  const now = Date.now();
  const row = context.atomically(() => {
    const row = context.reports.retry(reportId, now);
    if (typeof row !== "string") context.ledger.entry({ kind: "note", amount: 0, reason: `Stripe report ${reportId} retried by an operator`, now });
    return row;
  });
  if (typeof row !== "string") context.timers.at(STRIPE_TIMER, now);
  return row;
}

/** An operator settled a failed Stripe report by hand: it counts as reported; a ledger note records it. */
export function resolveReport(context: AccountContext, reportId: string, note: string) {
  const now = Date.now();
  return context.atomically(() => {
    const row = context.reports.resolve(reportId, now);
    if (typeof row !== "string") context.ledger.entry({ kind: "note", amount: 0, reason: `Stripe report ${reportId} resolved by an operator: ${note}`, now });
    return row;
  });
}
