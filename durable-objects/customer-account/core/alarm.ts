import { log } from "../../../src/lib/log";
import { RECORD_TIMER, recordPaymentsInStripe } from "../agent-payments/stripe-record";
import { AUTO_TOPUP_TIMER } from "../auto-topup/auto-topup";
import { runAutoTopUp } from "../auto-topup/payment";
import { NOTICE_TIMER } from "../cohorts/notices";
import { expireGrants } from "../credit/credits";
import { LEASE_TIMER, runLeaseTimer } from "../leases/sync";
import { DIRECTORY_TIMER } from "../notify/directory-sync";
import { WEBHOOK_TIMER } from "../notify/provider-webhooks";
import { ROLLUP_TIMER } from "../notify/rollup";
import { CHARGES_TIMER, pruneCharges, pruneIdempotency } from "../request/authorize";
import { HOLDS_TIMER } from "../request/holds";
import { IDEMPOTENCY_TIMER } from "../request/idempotency";
import { expireHolds } from "../request/settlement";
import { EMAIL_RETENTION_TIMER } from "../retention/emails";
import { REPORT_RETENTION_TIMER } from "../retention/reports";
import { USAGE_RETENTION_TIMER } from "../retention/usage";
import { STRIPE_TIMER } from "../stripe/events";
import { pushToStripe, syncWithStripe } from "../stripe/sync";
import { type AccountContext, EXPIRY_TIMER } from "./context";

const TIMER_RETRY_MS = 5_000;

/** Runs `fn` under the object's lock (work that awaits Stripe or MailChannels). */
export type Locked = <T>(fn: () => Promise<T>) => Promise<T>;

/**
 * The one alarm, shared by named timers (timers.ts): each due timer's handler runs; a failed one
 * is retried a few seconds later, the others still run.
 */
export async function runDueTimers(context: AccountContext, locked: Locked): Promise<void> {
  const handlers: Record<string, (now: number) => Promise<unknown> | unknown> = {
    [DIRECTORY_TIMER]: () => context.directory.push(),
    [EXPIRY_TIMER]: (now) => locked(async () => (expireGrants(context, now) > 0 ? pushToStripe(context) : undefined)),
    [CHARGES_TIMER]: (now) => pruneCharges(context, now),
    [HOLDS_TIMER]: (now) => expireHolds(context, now),
    [IDEMPOTENCY_TIMER]: (now) => pruneIdempotency(context, now),
    [STRIPE_TIMER]: (now) => locked(() => syncWithStripe(context, now)),
    [WEBHOOK_TIMER]: () => context.outbox.handOff(),
    [EMAIL_RETENTION_TIMER]: async () => void context.emails.prune(Date.now()),
    [ROLLUP_TIMER]: () => context.rollup.push(),
    // A top-up whose credit landed queued a Stripe credit report: the stripe timer sends it.
    [AUTO_TOPUP_TIMER]: (now) => locked(async () => (await runAutoTopUp(context, now)) && context.timers.at(STRIPE_TIMER, Date.now())),
    [NOTICE_TIMER]: (now) => locked(() => context.notices.send(now)),
    [RECORD_TIMER]: (now) => locked(() => recordPaymentsInStripe(context, now)),
    [REPORT_RETENTION_TIMER]: (now) => context.reports.retention.prune(now),
    [USAGE_RETENTION_TIMER]: (now) => context.usageRetention.fold(now),
    [LEASE_TIMER]: (now) => runLeaseTimer(context, now),
  };
  const now = Date.now();
  for (const name of context.timers.takeDue(now)) {
    try {
      // Charges journaled while an earlier handler awaited are folded in before this one reads SQLite.
      context.journal.fold();
      await handlers[name]?.(now);
    } catch (error) {
      log.warn(`timer ${name} failed; retrying in ${TIMER_RETRY_MS / 1000} s`, error);
      context.timers.at(name, Date.now() + TIMER_RETRY_MS);
    }
  }
  context.usageRetention.keepArmed(now);
  context.timers.rearm();
}
