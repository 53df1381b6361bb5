import type { Child } from "hono/jsx";
import { COHORTS } from "../lib/config";
import { MeterTotals, Pager, SecretNotice } from "../web/account-parts";
import { hourlyChart, type UsageRow } from "../web/chart-data";
import { Chart, DataTable, money, Notice, Time } from "../web/components";
import { Layout, type NavItem } from "../web/layout";
import type { AdminSession } from "../web/session";
import { DASHBOARD } from "./auth";

export const PRODUCT = "Gateway dashboard";

export function nav(current: "overview" | "customers" | null): NavItem[] {
  return [
    { href: DASHBOARD, label: "Overview", current: current === "overview" },
    { href: `${DASHBOARD}/customers`, label: "Customers", current: current === "customers" },
  ];
}

/** The shell of every signed-in dashboard page. */
export function Page(props: { title: string; session: AdminSession; current: "overview" | "customers" | null; children: Child }) {
  return (
    <Layout title={props.title} product={PRODUCT} home={DASHBOARD} nav={nav(props.current)} signOut={{ action: `${DASHBOARD}/sign-out`, csrf: props.session.csrf }}>
      {props.children}
    </Layout>
  );
}

export function SignIn(props: { next: string; error?: string; disabled?: boolean }) {
  return (
    <Layout title="Sign in" product={PRODUCT} home={DASHBOARD}>
      <h1>Sign in to the dashboard</h1>
      {props.error ? <Notice tone="error">{props.error}</Notice> : null}
      {props.disabled ? (
        <Notice tone="error">The dashboard is off: set the ADMIN_TOKEN secret (wrangler secret put ADMIN_TOKEN).</Notice>
      ) : (
        <form method="post" action={`${DASHBOARD}/sign-in`} class="stack panel">
          <input type="hidden" name="next" value={props.next} />
          <label>
            Admin token
            <input type="password" name="token" required autocomplete="current-password" autofocus />
          </label>
          <button type="submit">Sign in</button>
        </form>
      )}
    </Layout>
  );
}

export interface OverviewData {
  customers: number;
  cohorts: { name: string; members: number }[];
  credit_outstanding: { currency: string; total: string; customers_with_credit: number; overdrawn_exact_cents: string };
  stripe_reports: { pending: number; failed: number; customers_with_failed: number };
  emails: { sent: number; failed: number; unknown: number; retrying: number };
  usage_totals: { last_24h: { meter: string; requests: number; charged_exact_cents: string }[]; last_7d: { meter: string; requests: number; charged_exact_cents: string }[] };
  usage_by_hour: UsageRow[];
  rolled_up_at: number | null;
}

export function Overview({ data, session, stripe }: { data: OverviewData; session: AdminSession; stripe: boolean }) {
  const currency = data.credit_outstanding.currency;
  const charts = ([24, 168] as const).map((hours) => ({
    hours,
    requests: hourlyChart(data.usage_by_hour, hours, "requests", currency),
    charges: hourlyChart(data.usage_by_hour, hours, "money", currency),
  }));
  return (
    <Page title="Overview" session={session} current="overview">
      <h1>Overview</h1>
      <dl class="stats">
        <div>
          <dt>Customers</dt>
          <dd>{data.customers}</dd>
        </div>
        <div>
          <dt>Credit outstanding</dt>
          <dd data-testid="outstanding">{data.credit_outstanding.total}</dd>
        </div>
        <div>
          <dt>Stripe reports pending</dt>
          <dd>{stripe ? data.stripe_reports.pending : "Stripe off"}</dd>
        </div>
        <div>
          <dt>Stripe reports failed</dt>
          <dd>{stripe ? data.stripe_reports.failed : "Stripe off"}</dd>
        </div>
        <div>
          <dt>Emails sent</dt>
          <dd>{data.emails.sent}</dd>
        </div>
        <div>
          <dt>Emails failed / unknown</dt>
          <dd>
            {data.emails.failed} / {data.emails.unknown}
          </dd>
        </div>
      </dl>
      <p class="muted">
        Customers with credit: {data.credit_outstanding.customers_with_credit}; overdrawn: {money(data.credit_outstanding.overdrawn_exact_cents, currency)}. Emails retrying:{" "}
        {data.emails.retrying}. Customer objects push these numbers at most once a minute; last update <Time at={data.rolled_up_at} />.
      </p>
      <div class="grid grid-wide">
        <section aria-labelledby="cohorts-h">
          <h2 id="cohorts-h">Customers per cohort</h2>
          <DataTable id="cohorts" caption="Customers per cohort" head={["Cohort", "Members"]} hideCaption>
            {data.cohorts.map((cohort) => (
              <tr>
                <td>
                  <a href={`${DASHBOARD}/cohorts/${cohort.name}`}>{cohort.name}</a>
                </td>
                <td class="num">{cohort.members}</td>
              </tr>
            ))}
          </DataTable>
        </section>
        <section aria-labelledby="meters-h">
          <h2 id="meters-h">Usage per meter</h2>
          <MeterTotals id="meters" caption="Usage per meter" day={data.usage_totals.last_24h} week={data.usage_totals.last_7d} currency={currency} />
        </section>
      </div>
      {charts.map(({ hours, requests, charges }) => (
        <section aria-labelledby={`usage-${hours}-h`}>
          <h2 id={`usage-${hours}-h`}>{hours === 24 ? "Last 24 hours" : "Last 7 days"}</h2>
          <div class="grid">
            <Chart id={`requests-${hours}`} title={`Requests per hour per meter, last ${hours === 24 ? "24 hours" : "7 days"}`} data={requests} />
            <Chart id={`charges-${hours}`} title={`Charges per hour per meter, last ${hours === 24 ? "24 hours" : "7 days"}`} data={charges} />
          </div>
        </section>
      ))}
    </Page>
  );
}

export interface CustomerRow {
  id: string;
  email: string | null;
  name: string | null;
  deleted: number;
  plan: string | null;
  balance_exact_cents: string | null;
  last_activity_at: number | null;
  cohorts: string[];
}

export function Customers(props: { session: AdminSession; q: string; rows: CustomerRow[]; next: string | null; paged: boolean; currency: string }) {
  const link = (cursor: string | null) => {
    const params = new URLSearchParams();
    if (props.q) params.set("q", props.q);
    if (cursor) params.set("cursor", cursor);
    const query = params.toString();
    return `${DASHBOARD}/customers${query ? `?${query}` : ""}`;
  };
  return (
    <Page title="Customers" session={props.session} current="customers">
      <h1>Customers</h1>
      {/* biome-ignore lint/a11y/useSemanticElements: a form with the search landmark role; the <search> element is too new for every screen reader */}
      <form method="get" action={`${DASHBOARD}/customers`} role="search" class="inline panel">
        <label>
          Search customers
          <span class="hint">by id, email or name</span>
          <input type="search" name="q" value={props.q} />
        </label>
        <button type="submit">Search</button>
      </form>
      {props.rows.length === 0 ? (
        <p>No customers{props.q ? ` match “${props.q}”` : " yet"}.</p>
      ) : (
        <DataTable
          id="customers"
          caption={props.q ? `Customers matching “${props.q}”` : "All customers"}
          head={["Customer", "Email", "Balance", "Plan", "Cohorts", "Last activity"]}
        >
          {props.rows.map((row) => (
            <tr>
              <td>
                <a href={`${DASHBOARD}/customers/${encodeURIComponent(row.id)}`}>{row.name ?? row.id}</a>
                {row.name ? (
                  <div class="muted">
                    <code>{row.id}</code>
                  </div>
                ) : null}
                {row.deleted ? <span class="tag tag-failed">deleted</span> : null}
              </td>
              <td>{row.email ?? ""}</td>
              <td class="num">{money(row.balance_exact_cents, props.currency)}</td>
              <td>{row.plan ?? "—"}</td>
              <td>{row.cohorts.length ? row.cohorts.map((c) => <span class="tag">{c}</span>) : <span class="muted">none</span>}</td>
              <td>
                <Time at={row.last_activity_at} />
              </td>
            </tr>
          ))}
        </DataTable>
      )}
      <Pager label="Pages" first={props.paged ? link(null) : null} next={props.next ? link(props.next) : null} />
    </Page>
  );
}

export function CohortPage(props: {
  session: AdminSession;
  cohort: string;
  members: { customer_id: string; name: string | null; email: string | null; entered_at: number }[];
  next: string | null;
  paged: boolean;
}) {
  return (
    <Page title={`Cohort ${props.cohort}`} session={props.session} current={null}>
      <h1>Cohort {props.cohort}</h1>
      <p class="muted">
        Other cohorts:{" "}
        {COHORTS.filter((c) => c !== props.cohort).map((c) => (
          <a class="tag" href={`${DASHBOARD}/cohorts/${c}`}>
            {c}
          </a>
        ))}
      </p>
      {props.members.length === 0 ? (
        <p>No customers are in this cohort right now.</p>
      ) : (
        <DataTable id="members" caption={`Members of ${props.cohort}`} head={["Customer", "Email", "Entered"]}>
          {props.members.map((m) => (
            <tr>
              <td>
                <a href={`${DASHBOARD}/customers/${encodeURIComponent(m.customer_id)}`}>{m.name ?? m.customer_id}</a>
              </td>
              <td>{m.email ?? ""}</td>
              <td>
                <Time at={m.entered_at} />
              </td>
            </tr>
          ))}
        </DataTable>
      )}
      <Pager
        label="Pages"
        first={props.paged ? `${DASHBOARD}/cohorts/${props.cohort}` : null}
        next={props.next ? `${DASHBOARD}/cohorts/${props.cohort}?cursor=${encodeURIComponent(props.next)}` : null}
      />
    </Page>
  );
}

export function OneTimeSecret(props: { session: AdminSession; title: string; intro: string; secret: string; back: string; note?: string }) {
  return (
    <Page title={props.title} session={props.session} current="customers">
      <h1>{props.title}</h1>
      <SecretNotice intro={props.intro} secret={props.secret} />
      {props.note ? <p class="muted">{props.note}</p> : null}
      <p>
        <a href={props.back}>Back to the customer</a>
      </p>
    </Page>
  );
}
