import type { Config } from "../../../src/lib/config";
import type { DirectorySnapshot } from "../../directory/contract";
import { directoryFor } from "../../directory/contract";
import type { CohortStore } from "../cohorts/cohorts";
import type { EmailLog } from "../cohorts/emails";
import type { AccountStore } from "../core/account";
import type { Timers } from "../core/timers";
import type { StripeReports } from "../stripe/reports";

export const DIRECTORY_TIMER = "directory";

/**
 * Keeps this customer's directory shard's view of this customer (profile, cohorts, when the cron is
 * next due) current. Pushed from the object's alarm, only when one of those changes: never per
 * request.
 */
export class DirectorySync {
  constructor(
    private readonly deps: {
      env: Env;
      timers: Timers;
      config: () => Config;
      account: AccountStore;
      cohorts: CohortStore;
      emails: EmailLog;
      reports: StripeReports;
      /** Other work the cron should come for (credit expiring), or null. */
      otherWorkAt: () => number | null;
      /** When the periodic reconcile with Stripe is due, or null. */
      reconcileAt: () => number | null;
      pushWholeRollup: () => Promise<void>;
    },
  ) {}

  /** Pushes a snapshot soon (from the alarm), outside the caller's transaction. */
  schedule(): void {
    this.deps.timers.at(DIRECTORY_TIMER, Date.now());
  }

  /** When the cron should next visit this customer, or null when there is nothing to do. */
  nextDueAt(now: number): number | null {
    const work = this.nextWorkAt(now);
    const reconcile = this.deps.config().stripeEnabled ? this.deps.reconcileAt() : null;
    if (reconcile === null) return work;
    const at = Math.max(reconcile, this.deps.reports.budgetWaitUntil);
    return work === null ? at : Math.min(work, at);
  }

  /**
   * The same, leaving out the periodic reconcile: what the sweep visits first when the budget
   * cannot visit everyone (a backlog of reconciles never holds reports or emails back).
   */
  nextWorkAt(now: number): number | null {
    const { config, reports, cohorts, emails, otherWorkAt } = this.deps;
    const times: number[] = [];
    const other = otherWorkAt();
    if (other !== null) times.push(other);
    if (config().stripeEnabled) {
      // Stripe work the budget had no calls for waits until it likely has (never sooner).
      const stripe: number[] = [];
      if (reports.hasWorkNow(now)) stripe.push(now);
      const retry = reports.nextAttemptAt();
      if (retry !== null) stripe.push(retry);
      if (reports.batching.heldSince(now) !== null) stripe.push(reports.batching.heldUntil());
      times.push(...stripe.map((t) => Math.max(t, reports.budgetWaitUntil)));
    }
    for (const [cohort, m] of cohorts.current) {
      const at = emails.plan(cohort, m)?.at;
      if (at !== undefined) times.push(at);
    }
    return times.length ? Math.min(...times) : null;
  }

  async push(): Promise<void> {
    const { account, cohorts, env } = this.deps;
    if (!account.exists) return;
    const a = account.row;
    const seq = a.directory_seq + 1;
    const now = Date.now();
    const dueAt = this.nextDueAt(now);
    account.set({ directory_seq: seq });
    const snapshot: DirectorySnapshot = {
      customerId: a.customer_id,
      email: a.email,
      name: a.name,
      deleted: a.deleted_at !== null,
      cohorts: [...cohorts.current.entries()].map(([cohort, m]) => ({ cohort, entered_at: m.entered_at })),
      dueAt,
      workAt: this.nextWorkAt(now),
      heldSince: this.deps.reports.batching.heldSince(now),
      seq,
    };
    const { fresh } = await directoryFor(env, a.customer_id, this.deps.config().DIRECTORY_SHARDS).sync(snapshot);
    // A shard that never listed this customer, though it was listed before (it moved there after
    // DIRECTORY_SHARDS changed), gets its whole rollup; a new customer's rollup follows on its own.
    if (fresh && seq > 1) await this.deps.pushWholeRollup();
    // Recorded only once the directory has it: until then requests keep asking for a sync.
    if (account.row.directory_seq !== seq) return;
    account.set({ directory_due_at: dueAt });
    // Requests charged during the call saw the old due time and asked for nothing: if they made
    // the cron due sooner than the directory now says, push again.
    const again = this.nextDueAt(Date.now());
    if (again !== null && (dueAt === null || again < dueAt)) this.schedule();
  }
}
