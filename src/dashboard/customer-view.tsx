import type { TopUpListItem } from "../../durable-objects/customer-account/contract";
import { centsToMicros, formatMoney } from "../lib/money";
import { ActionButton, type KeyRow, KeysSection, LiveBalance, TopUpsSection } from "../web/account-parts";
import { hourlyChart, hourlyModelChart, type ModelUsageRow, type UsageRow } from "../web/chart-data";
import { Chart, CsrfField, DataTable, GenericList, Notice, Time } from "../web/components";
import type { AdminSession } from "../web/session";
import { DASHBOARD } from "./auth";
import { type LeasesData, LeasesSection } from "./leases-view";
import { Page } from "./views";

export const NOTICES: Record<string, string> = {
  "credit-granted": "Credit granted.",
  "credit-repeated": "That grant was already applied (the form was sent twice); nothing changed.",
  "key-revoked": "Key revoked: the very next request with it is refused.",
  "report-retried": "Report queued for another attempt.",
  "report-resolved": "Report marked resolved.",
};

interface Summary {
  customer: { id: string; email: string | null; name: string | null; plan: string; deleted: boolean; created_at: number };
  balance: { available: string; available_exact_cents: string; minimum_cents: number; currency: string };
  cohorts: {
    current: { cohort: string; enrollment: number; entered_at: number }[];
    history: { cohort: string; enrollment: number; entered_at: number; exited_at: number | null }[];
  };
  stripe: {
    enabled: boolean;
    recent_reports: { id: string; kind: string; amount: number; status: string; attempts: number; last_error: string | null; created_at: number }[];
  };
}

export interface CustomerPageData {
  summary: Summary;
  keys: KeyRow[];
  ledger: {
    entries: { id: number; kind: string; meter: string | null; count: number; amount: number; reason: string | null; updated_at: number }[];
    next_cursor: number | null;
  };
  emails: { id: number; cohort: string; subject: string; to_email: string; status: string; attempts: number; last_error: string | null; created_at: number }[];
  usage: { series: UsageRow[]; models: { series: ModelUsageRow[] } };
  grants: Record<string, unknown>[] | null;
  webhooks: Record<string, unknown>[] | null;
  topUps: TopUpListItem[];
  leases: LeasesData | null;
}

export function CustomerPage(props: { session: AdminSession; data: CustomerPageData; notice?: string | undefined; idempotencyKey: string; ledgerPaged: boolean }) {
  const { session, data } = props;
  const { customer, balance } = data.summary;
  const currency = balance.currency;
  const base = `${DASHBOARD}/customers/${encodeURIComponent(customer.id)}`;
  const meters = [...new Set(data.usage.series.map((r) => r.meter))].sort();
  const csrf = <CsrfField token={session.csrf} />;
  return (
    <Page title={customer.name ?? customer.id} session={session} current="customers">
      <h1>{customer.name ?? customer.id}</h1>
      <p class="muted">
        <code>{customer.id}</code> · {customer.email ?? "no email"} · {customer.plan}
        {customer.deleted ? <span class="tag tag-failed">deleted</span> : null} · created <Time at={customer.created_at} />
      </p>
      {props.notice && NOTICES[props.notice] ? <Notice tone="success">{NOTICES[props.notice]}</Notice> : null}
      <div class="grid">
        <LiveBalance title="Balance" available={balance.available} live={`${base}/live`}>
          <p class="muted">
            Exact: <span data-balance-exact>{balance.available_exact_cents}</span> cents · minimum {formatMoney(centsToMicros(balance.minimum_cents), currency)} · cohorts:{" "}
            <span data-live-cohorts>{data.summary.cohorts.current.map((c) => c.cohort).join(", ") || "none"}</span>
          </p>
        </LiveBalance>
        <section aria-labelledby="grant-h">
          <h2 id="grant-h">Grant credit</h2>
          <form method="post" action={`${base}/credits`} class="stack">
            {csrf}
            <input type="hidden" name="idempotency_key" value={props.idempotencyKey} />
            <label>
              Amount (cents)
              <span class="hint">Whole cents; a negative amount deducts.</span>
              <input type="number" name="amount" step={1} required inputmode="numeric" />
            </label>
            <label>
              Reason
              <input type="text" name="reason" required maxlength={500} />
            </label>
            <button type="submit">Grant credit</button>
          </form>
        </section>
      </div>

      <section aria-labelledby="usage-h">
        <h2 id="usage-h">Usage, last 7 days</h2>
        {meters.length === 0 ? <p class="muted">No requests in the last 7 days.</p> : null}
        <div class="grid">
          {meters.map((meter) => {
            const rows = data.usage.series.filter((r) => r.meter === meter);
            const byModel = data.usage.models.series.filter((r) => r.meter === meter);
            return (
              <>
                <Chart id={`requests-${meter}`} title={`${meter}: requests per hour`} data={hourlyChart(rows, 168, "requests", currency)} />
                <Chart id={`charges-${meter}`} title={`${meter}: charges per hour`} data={hourlyChart(rows, 168, "money", currency)} />
                {byModel.length ? (
                  <>
                    <Chart id={`tokens-${meter}`} title={`${meter}: tokens per hour by model`} data={hourlyModelChart(byModel, 168, "tokens", currency)} />
                    <Chart id={`model-charges-${meter}`} title={`${meter}: charges per hour by model`} data={hourlyModelChart(byModel, 168, "money", currency)} />
                  </>
                ) : null}
              </>
            );
          })}
        </div>
      </section>

      <KeysSection keys={data.keys} base={base} csrf={session.csrf} caption="API keys">
        <form method="post" action={`${base}/portal-session`} class="inline">
          {csrf}
          <button type="submit" class="button-quiet">
            Create a portal link
          </button>
        </form>
      </KeysSection>

      <TopUpsSection topups={data.topUps} currency={currency} caption="Top-ups, newest first" />

      <LeasesSection data={data.leases} />

      <section aria-labelledby="ledger-h">
        <h2 id="ledger-h">Ledger</h2>
        <DataTable id="ledger" caption="Ledger, newest first" head={["Updated", "Kind", "Meter", "Requests", "Amount", "Reason"]} hideCaption>
          {data.ledger.entries.map((e) => (
            <tr>
              <td>
                <Time at={e.updated_at} />
              </td>
              <td>{e.kind}</td>
              <td>{e.meter ?? ""}</td>
              <td class="num">{e.kind === "usage" || e.kind === "refund" ? e.count : ""}</td>
              <td class="num">{formatMoney(e.amount, currency)}</td>
              <td>{e.reason ?? ""}</td>
            </tr>
          ))}
        </DataTable>
        <nav class="pager" aria-label="Ledger pages">
          {props.ledgerPaged ? <a href={`${base}#ledger-h`}>Newest entries</a> : null}
          {data.ledger.next_cursor ? <a href={`${base}?ledger_cursor=${data.ledger.next_cursor}#ledger-h`}>Older entries</a> : null}
        </nav>
      </section>

      <section aria-labelledby="reports-h">
        <h2 id="reports-h">Stripe reports</h2>
        {!data.summary.stripe.enabled ? <p class="muted">Stripe is off (local mode): nothing is reported.</p> : null}
        {data.summary.stripe.recent_reports.length ? (
          <DataTable id="reports" caption="Recent Stripe reports" head={["Created", "Kind", "Amount", "Status", "Attempts", "Last error", ""]} hideCaption>
            {data.summary.stripe.recent_reports.map((r) => (
              <tr>
                <td>
                  <Time at={r.created_at} />
                </td>
                <td>{r.kind}</td>
                <td class="num">{r.kind === "meter_event" ? `${r.amount} requests` : formatMoney(centsToMicros(r.amount), currency)}</td>
                <td>
                  <span class={`tag tag-${r.status}`}>{r.status}</span>
                </td>
                <td class="num">{r.attempts}</td>
                <td>{r.last_error ?? ""}</td>
                <td>
                  {r.status !== "sent" ? (
                    <ActionButton action={`${base}/reports/${encodeURIComponent(r.id)}/retry`} csrf={session.csrf} label="Retry" target={`report ${r.id}`} />
                  ) : null}
                  {r.status === "failed" ? (
                    <ActionButton action={`${base}/reports/${encodeURIComponent(r.id)}/resolve`} csrf={session.csrf} label="Resolve" target={`report ${r.id}`} />
                  ) : null}
                </td>
              </tr>
            ))}
          </DataTable>
        ) : (
          <p class="muted">No reports yet.</p>
        )}
      </section>

      <div class="grid">
        <section aria-labelledby="emails-h">
          <h2 id="emails-h">Emails</h2>
          {data.emails.length ? (
            <DataTable id="emails" caption="Emails, newest first" head={["Created", "Cohort", "Subject", "Status", "Attempts", "Error"]} hideCaption>
              {data.emails.map((e) => (
                <tr>
                  <td>
                    <Time at={e.created_at} />
                  </td>
                  <td>{e.cohort}</td>
                  <td>{e.subject}</td>
                  <td>
                    <span class={`tag tag-${e.status}`}>{e.status}</span>
                  </td>
                  <td class="num">{e.attempts}</td>
                  <td>{e.last_error ?? ""}</td>
                </tr>
              ))}
            </DataTable>
          ) : (
            <p class="muted">No emails yet.</p>
          )}
        </section>
        <section aria-labelledby="cohorts-h">
          <h2 id="cohorts-h">Cohort history</h2>
          {data.summary.cohorts.history.length ? (
            <DataTable id="cohort-history" caption="Cohort history, newest first" head={["Cohort", "Entered", "Left"]} hideCaption>
              {data.summary.cohorts.history.map((h) => (
                <tr>
                  <td>
                    <a href={`${DASHBOARD}/cohorts/${h.cohort}`}>{h.cohort}</a>
                  </td>
                  <td>
                    <Time at={h.entered_at} />
                  </td>
                  <td>{h.exited_at ? <Time at={h.exited_at} /> : "still a member"}</td>
                </tr>
              ))}
            </DataTable>
          ) : (
            <p class="muted">Never in a cohort.</p>
          )}
        </section>
      </div>

      {/* Sections for admin routes built on other branches: shown once the route exists. */}
      {(
        [
          ["grants", "Credit grants", data.grants],
          ["webhooks", "Webhook endpoints", data.webhooks],
        ] as const
      ).map(([id, title, items]) =>
        items ? (
          <section aria-labelledby={`${id}-h`}>
            <h2 id={`${id}-h`}>{title}</h2>
            <GenericList id={id} caption={title} items={items} />
          </section>
        ) : null,
      )}
    </Page>
  );
}
