import { log } from "../../../src/lib/log";
import { AUTO_TOPUP_TIMER } from "../auto-topup/auto-topup";
import { runAutoTopUp } from "../auto-topup/payment";
import { expireGrants } from "../credit/credits";
import { DIRECTORY_TIMER } from "../notify/directory-sync";
import { EMAIL_RETENTION_TIMER } from "../retention/emails";
import { HOLDS_TIMER } from "../request/holds";
import { IDEMPOTENCY_TIMER } from "../request/idempotency";
import { NOTICE_TIMER } from "../cohorts/notices";
import { WEBHOOK_TIMER } from "../notify/provider-webhooks";
import { REPORT_RETENTION_TIMER } from "../retention/reports";
import { expireHolds } from "../request/settlement";
import { CHARGES_TIMER, pruneCharges, pruneIdempotency } from "../request/authorize";
import { EXPIRY_TIMER, type Room } from "./context";
import { ROLLUP_TIMER } from "../notify/rollup";
import { STRIPE_TIMER } from "../stripe/events";
import { pushToStripe, syncWithStripe } from "../stripe/sync";
import { USAGE_RETENTION_TIMER } from "../retention/usage";

const TIMER_RETRY_MS = 5_000;

/** Runs `fn` under the object's lock (work that awaits Stripe or MailChannels). */
export type Locked = <T>(fn: () => Promise<T>) => Promise<T>;

/**
 * The one alarm, shared by named timers (timers.ts): each due timer's handler runs; a failed one
 * is retried a few seconds later, the others still run.
 */
export async function runDueTimers(room: Room, locked: Locked): Promise<void> {
  const handlers: Record<string, (now: number) => Promise<unknown> | unknown> = {
    [DIRECTORY_TIMER]: () => room.directory.push(),
    [EXPIRY_TIMER]: (now) => locked(async () => (expireGrants(room, now) > 0 ? pushToStripe(room) : undefined)),
    [CHARGES_TIMER]: (now) => pruneCharges(room, now),
    [HOLDS_TIMER]: (now) => expireHolds(room, now),
    [IDEMPOTENCY_TIMER]: (now) => pruneIdempotency(room, now),
    [STRIPE_TIMER]: (now) => locked(() => syncWithStripe(room, now)),
    [WEBHOOK_TIMER]: () => room.outbox.handOff(),
    [EMAIL_RETENTION_TIMER]: async () => void room.emails.prune(Date.now()),
    [ROLLUP_TIMER]: () => room.rollup.push(),
    // A top-up whose credit landed queued a Stripe credit report: the stripe timer sends it.
    [AUTO_TOPUP_TIMER]: (now) => locked(async () => (await runAutoTopUp(room, now)) && room.timers.at(STRIPE_TIMER, Date.now())),
    [NOTICE_TIMER]: (now) => locked(() => room.notices.send(now)),
    [REPORT_RETENTION_TIMER]: (now) => room.reports.retention.prune(now),
    [USAGE_RETENTION_TIMER]: (now) => room.usageRetention.fold(now),
  };
  const now = Date.now();
  for (const name of room.timers.takeDue(now)) {
    try {
      // Charges journaled while an earlier handler awaited are folded in before this one reads SQLite.
      room.journal.fold();
      await handlers[name]?.(now);
    } catch (error) {
      log.warn(`timer ${name} failed; retrying in ${TIMER_RETRY_MS / 1000} s`, error);
      room.timers.at(name, Date.now() + TIMER_RETRY_MS);
    }
  }
  room.usageRetention.keepArmed(now);
  room.timers.rearm();
}
