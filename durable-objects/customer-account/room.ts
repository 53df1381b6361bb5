import { getConfig, type Config } from "../../src/config";
import { centsToMicros } from "../../src/money";
import { AccountStore } from "./account";
import { CohortStore, cohortsFor } from "./cohorts";
import { DirectorySync } from "./directory-sync";
import { EmailLog } from "./emails";
import { Invoices } from "./invoices";
import { KeyStore } from "./keys";
import { Live } from "./live";
import { PortalLinks } from "./portal-links";
import { migrate } from "./schema";
import { Ledger } from "./ledger";
import { Rollup } from "./rollup";
import { StripeEventLog } from "./stripe-event-log";
import { StripeReports } from "./stripe-reports";
import { Timers } from "./timers";

/**
 * One customer's account: its modules wired together over the object's SQLite, plus the few
 * steps that cross modules (a balance change moves cohorts and the directory's view).
 */
export class Room {
  readonly sql: SqlStorage;
  readonly account: AccountStore;
  readonly keys: KeyStore;
  readonly ledger: Ledger;
  readonly invoices: Invoices;
  readonly cohorts: CohortStore;
  readonly emails: EmailLog;
  readonly reports: StripeReports;
  readonly stripeEvents: StripeEventLog;
  readonly directory: DirectorySync;
  readonly timers: Timers;
  readonly live: Live;
  readonly rollup: Rollup;
  readonly portalLinks: PortalLinks;

  constructor(
    readonly state: DurableObjectState,
    readonly env: Env,
  ) {
    this.sql = state.storage.sql;
    const config = () => this.config;
    this.account = new AccountStore(this.sql);
    this.timers = new Timers(this.sql, state.storage);
    this.keys = new KeyStore(this.sql);
    this.ledger = new Ledger(this.sql, this.account);
    this.invoices = new Invoices(this.sql);
    this.cohorts = new CohortStore(this.sql);
    this.emails = new EmailLog(this.sql, config, this.account, () => this.minimumMicros());
    this.reports = new StripeReports(this.sql, config, this.account);
    this.stripeEvents = new StripeEventLog(this.sql);
    this.directory = new DirectorySync({
      env,
      timers: this.timers,
      config,
      account: this.account,
      cohorts: this.cohorts,
      emails: this.emails,
      reports: this.reports,
    });
    this.live = new Live(state, { account: this.account, cohorts: this.cohorts, config, minimumMicros: () => this.minimumMicros() });
    this.rollup = new Rollup(this.sql, { env, timers: this.timers, account: this.account, config });
    this.portalLinks = new PortalLinks(this.sql);
  }

  get config(): Config {
    return getConfig(this.env);
  }

  /** (Re)reads the in-memory copies from SQLite. */
  load(): void {
    this.account.load();
    this.cohorts.load();
    this.rollup.load();
  }

  /** Several writes as one transaction; on failure the in-memory copies are reloaded from SQLite. */
  atomically<T>(fn: () => T): T {
    try {
      return this.state.storage.transactionSync(fn);
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
    this.load();
    this.directory.schedule();
  }

  minimumMicros(): number {
    return centsToMicros(this.account.row.minimum_balance_cents ?? this.config.GOVERNANCE.minimum_balance_cents);
  }

  /** Cohort membership is decided here on every balance change, so it is never stale. */
  changed(): void {
    this.live.changed();
    this.rollup.changed();
    const a = this.account.row;
    const config = this.config;
    const emails = config.EMAILS;
    const percent = emails?.low_balance_threshold_percent ?? 0;
    const next = cohortsFor({
      deleted: a.deleted_at !== null,
      plan: a.plan,
      headroomMicros: a.balance - this.minimumMicros(),
      cheapestMicros: Math.max(1, config.PRICING.fallback.priceMicros),
      lowThresholdMicros: Math.max(
        centsToMicros(emails?.low_balance_threshold_cents ?? 0),
        a.last_topup_cents ? Math.floor((centsToMicros(a.last_topup_cents) * percent) / 100) : 0,
      ),
      unpaid: a.plan === "postpaid" && a.deleted_at === null && this.invoices.unpaid(),
    });
    const now = Date.now();
    if (this.cohorts.apply(next, now)) this.directory.schedule();
    else if ((a.directory_due_at === null || a.directory_due_at > now) && this.reports.hasWorkNow(now)) {
      // Usage to report and the directory does not list us as due now (at most once per report).
      this.directory.schedule();
    }
  }
}
