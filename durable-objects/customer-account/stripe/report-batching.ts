import type { Config } from "../../../src/lib/config";
import { MICROS_PER_CENT } from "../../../src/lib/money";
import type { AccountStore } from "../core/account";

/** At most this, and a tenth of max_report_delay_seconds, is left for the sweep to come for held usage. */
const HELD_MARGIN_MS = 5 * 60_000;

/**
 * Report batching, as this customer sees it: while its directory shard batches reports (more
 * customers due than the Stripe budget can report), prepaid usage waits until it is worth a call.
 * Only the account row's batching fields are read and written here (core/account.ts owns them).
 */
export class ReportBatching {
  constructor(
    private readonly config: () => Config,
    private readonly account: AccountStore,
  ) {}

  /**
   * Whether the unreported prepaid usage (a whole cent at least) goes with the next cycle: always,
   * unless the directory shard batches reports; then once it reaches min_report_cents, once
   * max_report_delay_seconds have passed since the last usage report, or when forced (a cohort
   * crossing, a plan change).
   */
  usageWorthReporting(now: number): boolean {
    const a = this.account.row;
    if (Math.abs(a.pending_usage) < MICROS_PER_CENT) return false;
    if (!a.report_batching || a.report_forced) return true;
    const b = this.config().stripeBudget;
    return Math.abs(a.pending_usage) >= b.minReportMicros || now >= this.heldUntil();
  }

  /**
   * When held usage is due whatever its size: max_report_delay_seconds after the last usage
   * report, less the few minutes a busy sweep takes to come for it (HELD_MARGIN_MS), so the
   * report is sent within max_report_delay_seconds.
   */
  heldUntil(): number {
    const a = this.account.row;
    const maxDelay = this.config().stripeBudget.maxReportDelayMs;
    return (a.usage_cut_at ?? a.created_at) + maxDelay - Math.min(HELD_MARGIN_MS, maxDelay / 10);
  }

  /** Since when usage has been held back by batching (the directory lists it), or null. */
  heldSince(now: number): number | null {
    const a = this.account.row;
    if (!a.report_batching || Math.abs(a.pending_usage) < MICROS_PER_CENT || this.usageWorthReporting(now)) return null;
    return a.usage_cut_at ?? a.created_at;
  }

  /** Whether a charge of `micros` keeps held usage held (no cohort or directory work needed for it). */
  staysHeld(now: number, micros: number): boolean {
    const a = this.account.row;
    return a.report_batching === 1 && !a.report_forced && Math.abs(a.pending_usage) + micros < this.config().stripeBudget.minReportMicros && now < this.heldUntil();
  }

  /** The shard's batching, as its last grant said; usage must go now if a cohort boundary is crossed meanwhile. */
  setBatching(on: boolean): void {
    if (this.account.row.report_batching !== (on ? 1 : 0)) this.account.set({ report_batching: on ? 1 : 0 });
  }

  /** The next cycle reports the usage whatever its size (a cohort crossing, a plan change). */
  force(): void {
    const a = this.account.row;
    if (a.report_batching && !a.report_forced && Math.abs(a.pending_usage) >= MICROS_PER_CENT) this.account.set({ report_forced: 1 });
  }
}
