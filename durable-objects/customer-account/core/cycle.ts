import type { CycleResult } from "../contract";
import { expireGrants } from "../credit/credits";
import type { Room } from "./context";
import { syncWithStripe } from "../stripe/sync";

/**
 * One cron visit, run under the object's lock: reports usage to Stripe and sends the emails that
 * are due. Safe to run twice or concurrently.
 */
export async function runCycle(room: Room, now: number): Promise<CycleResult> {
  const result: CycleResult = { reported: 0, reportErrors: 0, emailed: 0 };
  if (!room.account.exists) return result;
  // The expiry timer does this on time; the cron, at its own scheduled time, is the safety net.
  expireGrants(room, now);
  if (room.config.stripeEnabled) {
    room.atomically(() => room.reports.cut());
    const flushed = await syncWithStripe(room, now);
    result.reported = flushed.sent;
    result.reportErrors = flushed.errors;
  }
  // Charges journaled while this visit awaited are folded in before SQLite is read again.
  room.journal.fold();
  result.emailed = await room.emails.sendDue(room.cohorts.current, now);
  room.journal.fold();
  room.rollup.changed();
  await room.directory.push();
  return result;
}
