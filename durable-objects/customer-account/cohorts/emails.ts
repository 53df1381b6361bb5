import { COHORTS, type Cohort, type Config, type EmailNotice } from "../../../src/lib/config";
import { sendViaMailChannels } from "../../../src/lib/email/mailchannels";
import { listUnsubscribeHeaders, unsubscribeUrl, withHtmlFooter, withTextFooter } from "../../../src/lib/email/unsubscribe";
import { mergeValues } from "../../../src/lib/merge";
import { escapeHtml, renderString } from "../../../src/lib/template";
import { DAY_MS } from "../../../src/lib/time";
import type { KeyStore } from "../access/key-store";
import type { AccountStore } from "../core/account";
import { backoffMs } from "../core/backoff";
import type { Timers } from "../core/timers";
import type { Ledger } from "../credit/ledger";
import { EmailRetention } from "../retention/emails";
import type { Membership } from "./cohorts";
import { EmailAudience } from "./email-audience";

export const EMAIL_TABLES = {
  v1: `
CREATE TABLE IF NOT EXISTS emails (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  cohort TEXT NOT NULL,
  enrollment INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  to_email TEXT NOT NULL,
  subject TEXT NOT NULL,
  text TEXT NOT NULL,
  html TEXT,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  sent_at INTEGER,
  UNIQUE (cohort, enrollment, seq)
);`,
  // MailChannels' request_id of the send, for support requests.
  v5: "ALTER TABLE emails ADD COLUMN request_id TEXT;",
};

const MAX_ATTEMPTS = 8;

export interface EmailRow {
  id: number;
  /** A cohort's behavioral email, or a transactional notice (notices.ts: enrollment is the notice's id). */
  cohort: Cohort | EmailNotice;
  enrollment: number;
  seq: number;
  to_email: string;
  subject: string;
  text: string;
  html: string | null;
  status: "sending" | "sent" | "outbox" | "retry" | "failed" | "unknown";
  attempts: number;
  next_attempt_at: number | null;
  last_error: string | null;
  created_at: number;
  sent_at: number | null;
  request_id: string | null;
}

export interface EmailPlan {
  /** When the next send is due. */
  at: number;
  /** A retry of this row, or null for a new email with sequence `seq`. */
  retry: EmailRow | null;
  seq: number;
}

/**
 * The next email for a cohort membership, with no I/O. At most `maxPerEnrollment` emails go out
 * per enrollment (a failed or unanswered one counts too). The re-enrollment wait also runs across
 * enrollments, so a customer flapping in and out of a cohort is not emailed on every entry.
 */
export function planEmail(input: {
  membership: Membership;
  /** The latest email of this enrollment. */
  last: EmailRow | undefined;
  /** The latest email of this cohort, any enrollment (read only when `last` is undefined). */
  previous: () => EmailRow | undefined;
  reenrollMs: number;
  defaultReenrollMs: number;
  /** Emails per enrollment, counting the first (at least 1). */
  maxPerEnrollment: number;
  /** Whether the customer may get behavioral emails at all (eligible and not unsubscribed). */
  allowed: boolean;
}): EmailPlan | null {
  const { membership: m, last, reenrollMs } = input;
  if (!input.allowed) return null;
  if (!last) {
    const previous = input.previous();
    const window = reenrollMs || input.defaultReenrollMs;
    const at = previous ? Math.max(m.entered_at, (previous.sent_at ?? previous.created_at) + window) : m.entered_at;
    return { at, retry: null, seq: 0 };
  }
  if (last.status === "retry") return { at: last.next_attempt_at ?? 0, retry: last, seq: last.seq };
  if (reenrollMs === 0 || last.status === "sending" || last.seq + 1 >= input.maxPerEnrollment) return null;
  return { at: (last.sent_at ?? last.created_at) + reenrollMs, retry: null, seq: last.seq + 1 };
}

/**
 * Behavioral emails: one row per (cohort, enrollment, sequence), inserted before the send, so a
 * crash or an unanswered send is never sent twice.
 */
export class EmailLog {
  readonly audience: EmailAudience;
  readonly retention: EmailRetention;
  private readonly sql: SqlStorage;
  private readonly config: () => Config;
  private readonly account: AccountStore;

  constructor(
    private readonly deps: {
      sql: SqlStorage;
      config: () => Config;
      account: AccountStore;
      /** The amounts an email's merge tags show, at `now`. */
      amounts: (now: number) => { balanceMicros: number; minimumMicros: number; expiringSoonMicros: number };
      timers: Timers;
      memberships: ReadonlyMap<Cohort, Membership>;
      keys: Pick<KeyStore, "hasActive">;
      ledger: Pick<Ledger, "hasActivity">;
    },
  ) {
    this.sql = deps.sql;
    this.config = deps.config;
    this.account = deps.account;
    this.audience = new EmailAudience(deps.sql, { hasActiveKey: () => deps.keys.hasActive(), hasActivity: () => deps.ledger.hasActivity() });
    this.retention = new EmailRetention(deps.sql, deps.timers, deps.memberships);
  }

  list(limit: number): EmailRow[] {
    return this.sql.exec("SELECT * FROM emails ORDER BY id DESC LIMIT ?", limit).toArray() as unknown as EmailRow[];
  }

  private last(cohort: Cohort, enrollment?: number): EmailRow | undefined {
    const rows =
      enrollment === undefined
        ? this.sql.exec("SELECT * FROM emails WHERE cohort = ? ORDER BY id DESC LIMIT 1", cohort)
        : this.sql.exec("SELECT * FROM emails WHERE cohort = ? AND enrollment = ? ORDER BY seq DESC LIMIT 1", cohort, enrollment);
    return rows.toArray()[0] as unknown as EmailRow | undefined;
  }

  plan(cohort: Cohort, m: Membership): EmailPlan | null {
    const emails = this.config().EMAILS;
    const template = emails?.templates[cohort];
    if (!emails || !template) return null;
    return planEmail({
      membership: m,
      last: this.last(cohort, m.enrollment),
      previous: () => this.last(cohort),
      reenrollMs: (template.reenroll_seconds ?? emails.reenroll_seconds) * 1000,
      defaultReenrollMs: emails.reenroll_seconds * 1000,
      maxPerEnrollment: template.max_per_enrollment ?? emails.max_per_enrollment,
      allowed: this.audience.audience() === "eligible",
    });
  }

  /** Sends what is due for the current memberships; returns how many went out. */
  async sendDue(memberships: ReadonlyMap<Cohort, Membership>, now: number): Promise<number> {
    const config = this.config();
    const emails = config.EMAILS;
    if (!emails) return 0;
    // One link per customer (the token names it); made before the loop, whose sends await anyway.
    const link = this.audience.audience() === "eligible" ? await unsubscribeUrl(config, this.account.row.customer_id) : null;
    let sent = 0;
    for (const cohort of COHORTS) {
      // Read afresh each time: a send awaits, and membership can change meanwhile.
      const m = memberships.get(cohort);
      if (!m || !emails.templates[cohort]) continue;
      const stuck = this.last(cohort, m.enrollment);
      if (stuck?.status === "sending") {
        // A previous run died mid-send: MailChannels may have accepted it. Never send twice.
        this.sql.exec("UPDATE emails SET status = 'unknown', last_error = 'interrupted while sending' WHERE id = ?", stuck.id);
      }
      // Planned afresh: the customer may have unsubscribed while an earlier send awaited.
      const plan = this.plan(cohort, m);
      if (!plan || plan.at > now || !link) continue;
      const row = plan.retry ?? this.create(cohort, m.enrollment, plan.seq, now, link);
      if (row && (await this.deliver(row, now, listUnsubscribeHeaders(link)))) sent++;
    }
    return sent;
  }

  private create(cohort: Cohort, enrollment: number, seq: number, now: number, link: string): EmailRow | undefined {
    const config = this.config();
    const template = config.EMAILS!.templates[cohort]!;
    const a = this.account.row;
    const values = mergeValues(
      config,
      { id: a.customer_id, name: a.name, email: a.email },
      {
        ...this.deps.amounts(now),
        priceMicros: config.PRICING.fallback.priceMicros,
      },
    );
    const inserted = this.sql
      .exec(
        `INSERT INTO emails (cohort, enrollment, seq, to_email, subject, text, html, status, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, 'sending', ?) ON CONFLICT (cohort, enrollment, seq) DO NOTHING RETURNING *`,
        cohort,
        enrollment,
        seq,
        a.email ?? "",
        renderString(template.subject, values),
        withTextFooter(renderString(template.text, values), link),
        template.html ? withHtmlFooter(renderString(template.html, escapeHtml(values)), link) : null,
        now,
      )
      .toArray()[0];
    if (inserted) this.retention.due(now, config.EMAILS!.retention_days * DAY_MS);
    return inserted as unknown as EmailRow | undefined;
  }

  /**
   * Sends one row (MailChannels, or the local outbox): `sending` is written before the send, so a
   * send cut short is never repeated; a 5xx or 429 leaves it `retry` with a backoff.
   */
  async deliver(row: EmailRow, now: number, headers: Record<string, string>): Promise<boolean> {
    const config = this.config();
    if (!row.to_email) {
      this.sql.exec("UPDATE emails SET status = 'failed', last_error = 'customer has no email address' WHERE id = ?", row.id);
      return false;
    }
    if (config.emailDelivery === "outbox") {
      this.sql.exec("UPDATE emails SET status = 'outbox', sent_at = ?, attempts = attempts + 1 WHERE id = ?", now, row.id);
      return true;
    }
    this.sql.exec("UPDATE emails SET status = 'sending', attempts = attempts + 1 WHERE id = ?", row.id);
    const name = this.account.row.name;
    const result = await sendViaMailChannels(config, {
      to: row.to_email,
      ...(name ? { toName: name } : {}),
      subject: row.subject,
      text: row.text,
      ...(row.html ? { html: row.html } : {}),
      headers,
    });
    const attempts = row.attempts + 1;
    const requestId = result.requestId ?? null;
    if (result.outcome === "sent") {
      this.sql.exec("UPDATE emails SET status = 'sent', sent_at = ?, last_error = NULL, request_id = ? WHERE id = ?", now, requestId, row.id);
      return true;
    }
    const status = result.outcome === "retry" && attempts < MAX_ATTEMPTS ? "retry" : result.outcome === "unknown" ? "unknown" : "failed";
    this.sql.exec(
      "UPDATE emails SET status = ?, last_error = ?, next_attempt_at = ?, request_id = COALESCE(?, request_id) WHERE id = ?",
      status,
      result.error,
      status === "retry" ? now + backoffMs(attempts) : null,
      requestId,
      row.id,
    );
    return false;
  }

  /** A send of these kinds that a previous run left mid-send: MailChannels may have it, so it is never sent again. */
  interrupted(cohorts: readonly string[]): void {
    this.sql.exec(
      `UPDATE emails SET status = 'unknown', last_error = 'interrupted while sending' WHERE cohort IN (SELECT value FROM json_each(?)) AND status = 'sending'`,
      JSON.stringify(cohorts),
    );
  }

  /** The oldest email of these kinds due for a (first or next) attempt at `now`, or undefined. */
  nextDue(cohorts: readonly string[], now: number): EmailRow | undefined {
    return this.sql
      .exec("SELECT * FROM emails WHERE cohort IN (SELECT value FROM json_each(?)) AND status = 'retry' AND next_attempt_at <= ? ORDER BY id LIMIT 1", JSON.stringify(cohorts), now)
      .toArray()[0] as unknown as EmailRow | undefined;
  }

  /** When the next attempt of an email of these kinds is due, or null. */
  nextRetryAt(cohorts: readonly string[]): number | null {
    return this.sql.exec("SELECT MIN(next_attempt_at) AS t FROM emails WHERE cohort IN (SELECT value FROM json_each(?)) AND status = 'retry'", JSON.stringify(cohorts)).one().t as
      | number
      | null;
  }

  /** A transactional email (a notice), due now; one row per (kind, notice id), so queuing it twice sends it once. */
  queue(email: { cohort: string; enrollment: number; to_email: string; subject: string; text: string; html: string | null }, now: number): void {
    this.sql.exec(
      `INSERT INTO emails (cohort, enrollment, seq, to_email, subject, text, html, status, attempts, next_attempt_at, created_at)
       VALUES (?, ?, 0, ?, ?, ?, ?, 'retry', 0, ?, ?) ON CONFLICT (cohort, enrollment, seq) DO NOTHING`,
      email.cohort,
      email.enrollment,
      email.to_email,
      email.subject,
      email.text,
      email.html,
      now,
      now,
    );
  }

  /** Emails per status, the deleted (archived) ones included: what a dashboard shows as email health. */
  statusCounts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const r of this.countsByCohort()) counts[r.status] = (counts[r.status] ?? 0) + r.count;
    return counts;
  }

  private countsByCohort(): { cohort: string; status: string; count: number }[] {
    const live = this.sql.exec("SELECT cohort, status, COUNT(*) AS count FROM emails GROUP BY cohort, status").toArray() as unknown as {
      cohort: string;
      status: string;
      count: number;
    }[];
    return [...live, ...this.retention.archived()];
  }

  /** The admin API's view: may this customer be emailed, and how its emails went. */
  view(): Record<string, unknown> {
    const emails = this.config().EMAILS;
    const byCohort: Record<string, Record<string, number>> = {};
    for (const r of this.countsByCohort()) {
      byCohort[r.cohort] ??= {};
      const cohort = byCohort[r.cohort]!;
      cohort[r.status] = (cohort[r.status] ?? 0) + r.count;
    }
    return {
      audience: this.audience.audience(),
      unsubscribed: this.audience.unsubscribedAt() !== null,
      unsubscribed_at: this.audience.unsubscribedAt(),
      status_counts: this.statusCounts(),
      by_cohort: byCohort,
      rows_kept: this.sql.exec("SELECT COUNT(*) AS n FROM emails").one().n as number,
      rows_archived: this.retention.archived().reduce((n, r) => n + r.count, 0),
      retention_days: emails?.retention_days ?? null,
    };
  }

  /** The retention timer's handler. */
  prune(now: number): number {
    const emails = this.config().EMAILS;
    return emails ? this.retention.prune(now, emails.retention_days * DAY_MS) : 0;
  }
}
