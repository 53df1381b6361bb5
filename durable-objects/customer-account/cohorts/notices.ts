import { type Config, EMAIL_NOTICES, type EmailNotice } from "../../../src/lib/config";
import { log } from "../../../src/lib/log";
import { mergeValues } from "../../../src/lib/merge";
import { escapeHtml, type MergeValues, renderString } from "../../../src/lib/template";
import { DAY_MS } from "../../../src/lib/time";
import { type AutoTopUpNotice, describeNotice } from "../auto-topup/notice";
import type { AccountStore } from "../core/account";
import type { Timers } from "../core/timers";
import type { ProviderWebhookOutbox } from "../notify/provider-webhooks";
import type { EmailLog } from "./emails";

export const NOTICE_TABLES = {
  // What a customer must be told, queued in the step that changed it (a migration can queue too).
  v14: `CREATE TABLE IF NOT EXISTS notices (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  details TEXT NOT NULL,
  created_at INTEGER NOT NULL
);`,
};

/** Sends queued notices and their retries, under the object's lock. */
export const NOTICE_TIMER = "notices";

const NOTICE_KINDS: readonly string[] = EMAIL_NOTICES;

/**
 * Transactional emails: about the customer's card, not marketing, so they go to every customer
 * with an email address, unsubscribed or not, and carry no unsubscribe footer. A notice is queued
 * in the synchronous step that made it necessary; its timer turns it into one `emails` row
 * (cohort = the template's name, enrollment = the notice's id, so it can never become two) and
 * sends it with the behavioral emails' delivery: MailChannels or the local outbox, retried after
 * a 5xx or 429, never sent again after a send that got no answer.
 */
export class Notices {
  constructor(
    private readonly deps: {
      sql: SqlStorage;
      config: () => Config;
      account: AccountStore;
      emails: EmailLog;
      timers: Timers;
      outbox: ProviderWebhookOutbox;
      amounts: (now: number) => { balanceMicros: number; minimumMicros: number; expiringSoonMicros: number };
    },
  ) {}

  /** Queues a notice (no await: call it inside the step that changed what it is about). */
  queue(kind: EmailNotice, details: AutoTopUpNotice, now: number): void {
    this.deps.sql.exec("INSERT INTO notices (kind, details, created_at) VALUES (?, ?, ?)", kind, JSON.stringify(details), now);
    this.deps.timers.at(NOTICE_TIMER, now);
  }

  /** The notice timer: renders what is queued, then sends what is due. Returns how many went out. */
  async send(now: number): Promise<number> {
    const { sql } = this.deps;
    // A previous run died mid-send: MailChannels may have accepted it. Never send twice.
    this.deps.emails.interrupted(NOTICE_KINDS);
    for (const notice of sql.exec("SELECT * FROM notices ORDER BY id").toArray()) this.render(notice, now);
    let sent = 0;
    const due = () => this.deps.emails.nextDue(NOTICE_KINDS, now);
    for (let row = due(); row; row = due()) if (await this.deps.emails.deliver(row, now, {})) sent++;
    const next = this.deps.emails.nextRetryAt(NOTICE_KINDS);
    if (next !== null) this.deps.timers.at(NOTICE_TIMER, next);
    return sent;
  }

  /** One queued notice becomes one email row, due now, in one synchronous step. */
  private render(notice: Record<string, SqlStorageValue>, now: number): void {
    const { sql, config: getConfig, account } = this.deps;
    const config = getConfig();
    const kind = notice.kind as EmailNotice;
    const details = JSON.parse(notice.details as string) as AutoTopUpNotice & { migration?: boolean };
    // An upgrade paused it in SQL, with no webhook: the provider hears of it here.
    if (details.type === "paused" && details.migration) this.deps.outbox.emit("auto_topup.paused", { reason: details.reason, topup_id: null });
    sql.exec("DELETE FROM notices WHERE id = ?", notice.id!);
    const template = config.EMAILS?.templates[kind];
    if (!config.EMAILS || !template) {
      log.warn(`${account.row.customer_id}: no EMAILS.templates.${kind}, so the customer was not emailed: ${describeNotice(details, config.PRICING.currency)}`);
      return;
    }
    const a = account.row;
    const values: MergeValues & Record<string, string | number> = {
      ...mergeValues(config, { id: a.customer_id, name: a.name, email: a.email }, { ...this.deps.amounts(now), priceMicros: config.PRICING.fallback.priceMicros }),
      "auto_topup.change": describeNotice(details, config.PRICING.currency),
    };
    this.deps.emails.queue(
      {
        cohort: kind,
        enrollment: notice.id as number,
        to_email: a.email ?? "",
        subject: renderString(template.subject, values),
        text: renderString(template.text, values),
        html: template.html ? renderString(template.html, escapeHtml(values) as typeof values) : null,
      },
      now,
    );
    this.deps.emails.retention.due(now, config.EMAILS.retention_days * DAY_MS);
  }
}
