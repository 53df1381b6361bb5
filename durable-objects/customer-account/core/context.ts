import { type Config, getConfig } from "../../../src/lib/config";
import { log } from "../../../src/lib/log";
import { centsToMicros } from "../../../src/lib/money";
import { DAY_MS } from "../../../src/lib/time";
import { EndedSessions } from "../../shared/ended-sessions";
import { KeyStore } from "../access/key-store";
import { PortalLinks } from "../access/portal-links";
import { AutoTopUp } from "../auto-topup/auto-topup";
import { type CohortState, CohortStore, chargeSlack, cohortsFor } from "../cohorts/cohorts";
import { EmailLog } from "../cohorts/emails";
import { Notices } from "../cohorts/notices";
import { CheckoutLimit } from "../credit/checkout-limit";
import { DisputeStore } from "../credit/dispute-store";
import { GrantBook } from "../credit/grants";
import { Invoices } from "../credit/invoices";
import { Ledger } from "../credit/ledger";
import { RefundStore } from "../credit/refund-store";
import { type GiveBackFields, Wallet } from "../credit/wallet";
import { DirectorySync } from "../notify/directory-sync";
import { Live } from "../notify/live";
import { ProviderWebhookOutbox } from "../notify/provider-webhooks";
import { Rollup } from "../notify/rollup";
import { ChargeLog } from "../request/charges";
import { type HoldRow, Holds } from "../request/holds";
import { IdempotencyStore } from "../request/idempotency";
import { McpSessions } from "../request/mcp-sessions";
import { ModelUsage } from "../request/model-usage";
import { UsageRetention } from "../retention/usage";
import { StripeEventLog } from "../stripe/event-log";
import { MeterPending } from "../stripe/meter-pending";
import { StripeReports } from "../stripe/reports";
import { AccountStore } from "./account";
import { ChargeJournal } from "./journal";
import { migrate } from "./schema";
import { Timers } from "./timers";

export const EXPIRY_TIMER = "expiry";

/**
 * One customer's account: its modules wired together over the object's SQLite, plus the few
 * steps that cross modules (a balance change moves cohorts and the directory's view).
 */
export class AccountContext {
  readonly sql: SqlStorage;
  readonly account: AccountStore;
  readonly keys: KeyStore;
  readonly ledger: Ledger;
  readonly grants: GrantBook;
  readonly wallet: Wallet;
  readonly charges: ChargeLog;
  readonly journal: ChargeJournal;
  readonly holds: Holds;
  readonly idempotency: IdempotencyStore;
  readonly mcpSessions: McpSessions;
  readonly modelUsage: ModelUsage;
  readonly invoices: Invoices;
  readonly refunds: RefundStore;
  readonly disputes: DisputeStore;
  readonly cohorts: CohortStore;
  readonly emails: EmailLog;
  readonly reports: StripeReports;
  readonly stripeEvents: StripeEventLog;
  readonly directory: DirectorySync;
  readonly timers: Timers;
  readonly outbox: ProviderWebhookOutbox;
  /** Set when the account is created: its first cohort placement is where it starts, not a crossing. */
  private starting = false;
  /** How much more may be charged before a cohort could move (set by changed(), spent by charged()). */
  private cohortSlack = 0;
  private cohortEpoch = 0;
  /** Whether changed() has placed the cohorts since the last load (before, the slack is 0). */
  private placed = false;
  readonly checkouts: CheckoutLimit;
  readonly live: Live;
  readonly rollup: Rollup;
  readonly portalLinks: PortalLinks;
  readonly endedSessions: EndedSessions;
  readonly autoTopUp: AutoTopUp;
  readonly notices: Notices;
  readonly usageRetention: UsageRetention;

  constructor(
    readonly state: DurableObjectState,
    readonly env: Env,
    /** request/hold-journal.ts replayHold, handed in by the object: this module imports nothing that imports it. */
    replayHold: (context: AccountContext, hold: HoldRow, event: "take" | "extend" | "settle") => void,
  ) {
    this.sql = state.storage.sql;
    const config = () => this.config;
    this.account = new AccountStore(this.sql);
    this.timers = new Timers(this.sql, state.storage);
    this.outbox = new ProviderWebhookOutbox(this.sql, { env, timers: this.timers, account: this.account, availableMicros: () => this.wallet.spendableTotal(Date.now()) });
    this.keys = new KeyStore(this.sql, () => this.config.KEY_SIGNING_SECRET);
    this.checkouts = new CheckoutLimit(this.sql);
    this.ledger = new Ledger(this.sql, this.account);
    this.grants = new GrantBook(this.sql);
    this.wallet = new Wallet(this.grants, this.ledger, this.account);
    this.charges = new ChargeLog(this.sql);
    this.holds = new Holds(this.sql);
    const meterPending = new MeterPending(this.sql);
    this.journal = new ChargeJournal({
      storage: state.storage,
      account: this.account,
      grants: this.grants,
      keys: this.keys,
      ledger: this.ledger,
      meterPending,
      wallet: this.wallet,
      charges: this.charges,
      holds: this.holds,
      replayHold: (hold, event) => replayHold(this, hold, event),
      reload: () => this.load(),
    });
    const fold = () => this.journal.fold();
    for (const store of [this.grants, this.keys, this.ledger, meterPending, this.account]) store.beforeWrite = fold;
    this.idempotency = new IdempotencyStore(this.sql, config, this.timers, this.charges);
    this.mcpSessions = new McpSessions(this.sql);
    this.modelUsage = new ModelUsage(this.sql);
    this.invoices = new Invoices(this.sql);
    this.refunds = new RefundStore(this.sql);
    this.disputes = new DisputeStore(this.sql);
    this.cohorts = new CohortStore(this.sql);
    const amounts = (now: number) => ({
      balanceMicros: this.wallet.spendableTotal(now),
      minimumMicros: this.minimumMicros(),
      expiringSoonMicros: this.expiringSoonMicros(now),
    });
    this.emails = new EmailLog({
      sql: this.sql,
      config,
      account: this.account,
      amounts,
      timers: this.timers,
      memberships: this.cohorts.current,
      keys: this.keys,
      ledger: this.ledger,
    });
    this.notices = new Notices({ sql: this.sql, config, account: this.account, emails: this.emails, timers: this.timers, outbox: this.outbox, amounts });
    this.reports = new StripeReports(this.sql, config, this.account, this.outbox, this.timers, meterPending);
    this.stripeEvents = new StripeEventLog(this.sql);
    this.directory = new DirectorySync({
      env,
      timers: this.timers,
      config,
      account: this.account,
      cohorts: this.cohorts,
      emails: this.emails,
      reports: this.reports,
      otherWorkAt: () => this.timers.dueAt(EXPIRY_TIMER),
      reconcileAt: () => this.periodicReconcileAt(),
      pushWholeRollup: () => this.rollup.pushAll(),
    });
    this.live = new Live(state, { account: this.account, cohorts: this.cohorts, config, minimumMicros: () => this.minimumMicros() });
    this.rollup = new Rollup(this.sql, {
      env,
      timers: this.timers,
      account: this.account,
      config,
      emailCounts: () => this.emails.statusCounts(),
      reportCounts: () => this.reports.countsByStatus(),
      ledger: this.ledger,
      foldJournal: fold,
    });
    this.portalLinks = new PortalLinks(this.sql, () => this.config.KEY_SIGNING_SECRET);
    this.endedSessions = new EndedSessions(this.sql);
    this.autoTopUp = new AutoTopUp(this.sql, {
      timers: this.timers,
      account: this.account,
      config,
      availableMicros: (now) => this.wallet.spendableTotal(now),
      currencyMismatch: () => this.currencyMismatch(),
      outbox: this.outbox,
      notices: this.notices,
    });
    this.usageRetention = new UsageRetention(this.ledger, this.modelUsage, this.timers, config);
  }

  get config(): Config {
    return getConfig(this.env);
  }

  /** (Re)reads the in-memory copies from SQLite. */
  load(): void {
    this.cohortSlack = 0;
    this.cohortEpoch++;
    this.placed = false;
    this.account.load();
    this.keys.load();
    this.grants.load();
    this.ledger.reset();
    this.reports.meterPending.reset();
    this.cohorts.load();
    this.timers.load();
    this.rollup.load();
    this.autoTopUp.load();
    if (!this.account.exists) return;
    this.charges.load();
    this.holds.load();
    this.journal.replay();
    this.idempotency.load();
  }

  /**
   * Several writes as one transaction, after the journal is folded in (so what they read from
   * SQLite and write back holds every charge); on failure the in-memory copies are reloaded. The
   * charges a group-commit batch holds are written first, outside: a rollback must not take them.
   */
  atomically<T>(fn: () => T): T {
    try {
      this.journal.writeHeld();
      return this.state.storage.transactionSync(() => {
        this.journal.fold();
        return fn();
      });
    } catch (error) {
      this.load();
      throw error;
    }
  }

  /** Creates the account (and its schema) on first use; a made-up id never gets this far. */
  ensure(customerId: string): void {
    if (this.account.exists) return;
    migrate(this.state.storage);
    this.account.create(customerId, Date.now());
    this.starting = true;
    this.load();
    this.directory.schedule();
  }

  minimumMicros(): number {
    return centsToMicros(this.account.row.minimum_balance_cents ?? this.config.GOVERNANCE.minimum_balance_cents);
  }

  /** The Stripe customer's currency when it is set and is not ours: its credit is not ours to spend. */
  currencyMismatch(): string | null {
    const theirs = this.account.row.stripe_currency;
    return this.config.stripeEnabled && theirs && theirs !== this.config.PRICING.currency ? theirs : null;
  }

  /** When the periodic reconcile is due: every customer holding a key, every RECONCILE_INTERVAL_SECONDS. */
  periodicReconcileAt(): number | null {
    if (!this.config.stripeEnabled || !this.account.exists || !this.keys.hasActive()) return null;
    return (this.account.row.reconcile_attempted_at ?? 0) + this.config.RECONCILE_INTERVAL_SECONDS * 1000;
  }

  expiringSoonMicros(now: number): number {
    return this.grants.expiringWithin(now, (this.config.EMAILS?.expiry_warning_days ?? 7) * DAY_MS);
  }

  /**
   * Cohort membership is decided here on every balance change, so it is never stale; a crossing
   * writes its webhook events in the same synchronous step.
   */
  changed(now = Date.now()): void {
    this.live.changed();
    this.rollup.changed();
    const a = this.account.row;
    const config = this.config;
    const emails = config.EMAILS;
    const percent = emails?.low_balance_threshold_percent ?? 0;
    const minimumMicros = this.minimumMicros();
    const lowThresholdMicros = Math.max(
      centsToMicros(emails?.low_balance_threshold_cents ?? 0),
      a.last_topup_cents ? Math.floor((centsToMicros(a.last_topup_cents) * percent) / 100) : 0,
    );
    const meters =
      a.plan === "prepaid"
        ? [...config.PRICING.compiled, config.PRICING.fallback]
            .filter((m) => m.priceMicros > 0)
            .map((m) => ({ priceMicros: m.priceMicros, headroomMicros: this.wallet.available(m.name, now) - minimumMicros }))
        : [];
    const state: CohortState = {
      deleted: a.deleted_at !== null,
      plan: a.plan,
      meters,
      headroomMicros: this.wallet.spendableTotal(now) - minimumMicros,
      lowThresholdMicros,
      unpaid: a.plan === "postpaid" && a.deleted_at === null && this.invoices.unpaid(),
      expiringSoonMicros: this.expiringSoonMicros(now),
      // A debit below the threshold starts the one pending top-up here, in the same step.
      autoTopUp: this.autoTopUp.changed(now),
    };
    const next = cohortsFor(state);
    this.cohortSlack = chargeSlack(state, this.autoTopUp.slack(now));
    this.cohortEpoch++;
    this.placed = true;
    const moved = this.cohorts.apply(next, now);
    const starting = this.starting;
    this.starting = false;
    if (moved.entered.length || moved.left.length) {
      // Usage held back by report batching goes with the next cycle: Stripe sees the crossing too.
      this.reports.batching.force();
      this.directory.schedule();
      if (a.deleted_at === null && !starting) this.outbox.crossed(moved, { minimumMicros, lowThresholdMicros, unpaidInvoices: () => this.invoices.unpaidIds() });
    } else if ((a.directory_due_at === null || a.directory_due_at > now) && this.reports.hasWorkNow(now)) {
      // Usage to report and the directory does not list us as due now (at most once per report).
      this.directory.schedule();
    }
  }

  /**
   * A charge (or a hold) of `micros` just left the balance. Cohorts, the low-balance warning and
   * auto top-up can only move once the charges since the last full placement pass its slack, so a
   * charge within it costs no cohort work. Everything else that moves money calls changed().
   */
  charged(now: number, micros: number): void {
    if (this.withinSlack(now, micros)) this.spendSlack(micros);
    else this.changed(now);
  }

  /** A charge within the slack (withinSlack was true): no cohort work, only the live view and the rollup. */
  spendSlack(micros: number): void {
    this.cohortSlack -= micros;
    this.live.changed();
    this.rollup.changed();
  }

  /**
   * The placement that set the slack: changed() and load() start a new one. What a hold took within
   * one epoch's slack may be given back within it (giveBackSlack, request/hold-journal.ts).
   */
  get epoch(): number {
    return this.cohortEpoch;
  }

  /**
   * A hold taken within this epoch's slack gives `micros` of it back: the balance stays at or below
   * where changed() last placed it, so no cohort can move, and the slack grows by as much.
   */
  giveBackSlack(micros: number): void {
    this.cohortSlack += micros;
    this.live.changed();
    this.rollup.changed();
  }

  /**
   * Places the cohorts now if nothing has since the last load, so the step that follows can be
   * journaled within the slack (a hold placed after its own take could not give back within it).
   */
  placeFirst(now: number): void {
    if (!this.placed) this.changed(now);
  }

  /** Whether a charge of `micros` now stays within the cohort slack (see charged()). */
  withinSlack(now: number, micros: number): boolean {
    return micros > 0 && micros <= this.cohortSlack && this.quiet(now, micros);
  }

  /** No grant expiry due, and (with Stripe on) no usage the directory must hear of: what withinSlack needs besides the slack. */
  quiet(now: number, micros: number): boolean {
    const a = this.account.row;
    const expiryDue = this.timers.dueAt(EXPIRY_TIMER);
    return (
      (expiryDue === null || now < expiryDue) &&
      // With Stripe on, changed() also tells the directory about usage to report, until it lists us
      // as due (or while batched usage stays under what is worth a report).
      (!this.config.stripeEnabled || (a.directory_due_at !== null && a.directory_due_at <= now) || this.reports.batching.staysHeld(now, micros))
    );
  }

  /** Arms the expiry timer for the next grant expiry or expiry warning. */
  scheduleExpiry(now = Date.now()): void {
    const window = (this.config.EMAILS?.expiry_warning_days ?? 7) * DAY_MS;
    let next: number | null = null;
    for (const g of this.grants.all) {
      if (g.expires_at === null) continue;
      for (const at of [g.expires_at * 1000 - window, g.expires_at * 1000]) {
        if (at > now && (next === null || at < next)) next = at;
      }
      if (g.expires_at * 1000 <= now) next = now;
    }
    this.timers.set(EXPIRY_TIMER, next);
  }

  /** A key's charge just took it to its cap: one `key.cap_reached` per key and period. */
  keyCapReached(keyId: string, capCents: number): void {
    this.outbox.emit("key.cap_reached", { key_id: keyId, cap_cents: capCents });
  }

  /**
   * A request's charge given back after a grant it drew from closed: that part is the grant's void
   * or expiry, and leaves Stripe's balance as one too (the usage accrual already gave it back).
   */
  closedGrantDebit(requestId: string): NonNullable<GiveBackFields["closed"]> {
    return (kind, grant, micros) => this.reports.queueDebit(kind, `payg_${kind}_${this.account.row.customer_id}_${grant.id}_${requestId}`, micros);
  }

  refundDenied(requestId: string, now: number): void {
    this.account.set({ refunds_denied: this.account.row.refunds_denied + 1, last_refund_denied_at: now });
    log.warn(`refund limit reached for ${this.account.row.customer_id}: request ${requestId} stays charged`);
  }
}
