import type { CycleResult } from "../contract";
import { expireGrants } from "../credit/credits";
import { syncWithStripe } from "../stripe/sync";
import type { AccountContext } from "./context";

/**
 * One cron visit, run under the object's lock: reports usage to Stripe and sends the emails that
 * are due. Safe to run twice or concurrently.
 */
export async function runCycle(context: AccountContext, now: number): Promise<CycleResult> {
  const result: CycleResult = { reported: 0, reportErrors: 0, emailed: 0 };
  if (!context.account.exists) return result;
  // The expiry timer does this on time; the cron, at its own scheduled time, is the safety net.
  expireGrants(context, now);
  if (context.config.stripeEnabled) {
    const flushed = await syncWithStripe(context, now, { cut: true });
    result.reported = flushed.sent;
    result.reportErrors = flushed.errors;
  }
  // Charges journaled while this visit awaited are folded in before SQLite is read again.
  context.journal.fold();
  result.emailed = await context.emails.sendDue(context.cohorts.current, now);
  context.journal.fold();
  context.rollup.changed();
  await context.directory.push();
  return result;
}
