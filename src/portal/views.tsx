import type { Child } from "hono/jsx";
import { formatMoney, centsToMicros } from "../money";
import { hourlyChart, type UsageRow } from "../web/chart-data";
import { Chart, CsrfField, DataTable, money, Notice, Time } from "../web/components";
import { Layout } from "../web/layout";
import type { PortalSession } from "../web/session";

export const PORTAL = "/portal";
export const PRODUCT = "API account";

export const NOTICES: Record<string, { tone: "success" | "info"; text: string }> = {
  "key-revoked": { tone: "success", text: "Key revoked: requests with it are refused from now on." },
  "topup-unavailable": { tone: "info", text: "Online top-ups are not available here: your credit is granted by your API provider. Contact them to add credit." },
};

function Shell(props: { title: string; session?: PortalSession; replaceUrl?: string; children: Child }) {
  return (
    <Layout
      title={props.title}
      product={PRODUCT}
      home={PORTAL}
      {...(props.session ? { signOut: { action: `${PORTAL}/sign-out`, csrf: props.session.csrf } } : {})}
      {...(props.replaceUrl ? { replaceUrl: props.replaceUrl } : {})}
    >
      {props.children}
    </Layout>
  );
}

export function PortalSignIn(props: { error?: string }) {
  return (
    <Shell title="Sign in">
      <h1>Your API account</h1>
      {props.error ? <Notice tone="error">{props.error}</Notice> : null}
      <p>Open the link your API provider gave you, or sign in with one of your API keys.</p>
      <form method="post" action={`${PORTAL}/sign-in`} class="stack panel">
        <label>
          API key
          <input type="password" name="key" required autocomplete="off" spellcheck={false} />
        </label>
        <button type="submit">Sign in</button>
      </form>
    </Shell>
  );
}

export interface PortalData {
  customer: { id: string; name: string | null; email: string | null; plan: string };
  balance: { available: string; available_exact_cents: string; currency: string };
  keys: { id: string; prefix: string; name: string | null; created_at: number; revoked_at: number | null }[];
  usage: { series: UsageRow[]; totals: { last_24h: { meter: string; requests: number; charged_exact_cents: string }[]; range: { meter: string; requests: number; charged_exact_cents: string }[] } };
  autoTopUp: Record<string, unknown> | null;
  topUp: { stripe: boolean; amounts: number[] };
}

export function PortalPage(props: { session: PortalSession; data: PortalData; notice?: string | undefined; replaceUrl?: string }) {
  const { session, data } = props;
  const currency = data.balance.currency;
  const csrf = <CsrfField token={session.csrf} />;
  const notice = props.notice ? NOTICES[props.notice] : undefined;
  return (
    <Shell title="Your account" session={session} {...(props.replaceUrl ? { replaceUrl: props.replaceUrl } : {})}>
      <h1>{data.customer.name ?? data.customer.id}</h1>
      <p class="muted">
        <code>{data.customer.id}</code>
        {data.customer.email ? ` · ${data.customer.email}` : ""}
      </p>
      {notice ? <Notice tone={notice.tone}>{notice.text}</Notice> : null}
      <div class="grid">
        <section aria-labelledby="balance-h">
          <h2 id="balance-h">Credit balance</h2>
          <p class="balance" data-balance aria-live="polite" aria-atomic="true">
            {data.balance.available}
          </p>
          <p class="live-state" data-live-url={`${PORTAL}/live`}>
            <span data-live-status>Connecting…</span>
          </p>
        </section>
        <section aria-labelledby="topup-h">
          <h2 id="topup-h">Top up</h2>
          {data.customer.plan === "prepaid" ? (
            <form method="post" action={`${PORTAL}/top-up`} class="inline">
              {csrf}
              <label>
                Amount
                <select name="amount_cents">
                  {data.topUp.amounts.map((cents) => (
                    <option value={String(cents)}>{formatMoney(centsToMicros(cents), currency)}</option>
                  ))}
                </select>
              </label>
              <button type="submit">Top up</button>
            </form>
          ) : (
            <p>Your plan is invoiced after use; there is nothing to top up.</p>
          )}
          {data.topUp.stripe ? <p class="muted">You pay securely with Stripe Checkout.</p> : null}
        </section>
      </div>
      <section aria-labelledby="usage-h">
        <h2 id="usage-h">Usage, last 7 days</h2>
        <Chart id="portal-usage" title="Requests per hour" data={hourlyChart(data.usage.series, 168, "requests", currency)} />
        <h3>Recent charges by meter</h3>
        {data.usage.totals.range.length ? (
          <DataTable id="charges" caption="Recent charges by meter" head={["Meter", "Requests 24 h", "Charged 24 h", "Requests 7 d", "Charged 7 d"]} hideCaption>
            {data.usage.totals.range.map((week) => {
              const day = data.usage.totals.last_24h.find((d) => d.meter === week.meter);
              return (
                <tr>
                  <td>{week.meter}</td>
                  <td class="num">{day?.requests ?? 0}</td>
                  <td class="num">{money(day?.charged_exact_cents ?? "0", currency)}</td>
                  <td class="num">{week.requests}</td>
                  <td class="num">{money(week.charged_exact_cents, currency)}</td>
                </tr>
              );
            })}
          </DataTable>
        ) : (
          <p class="muted">No charges in the last 7 days.</p>
        )}
      </section>
      <section aria-labelledby="keys-h">
        <h2 id="keys-h">API keys</h2>
        <DataTable id="keys" caption="Your API keys" head={["Name", "Prefix", "Created", "Status", ""]} hideCaption>
          {data.keys.map((key) => (
            <tr>
              <td>{key.name ?? <span class="muted">unnamed</span>}</td>
              <td>
                <code>{key.prefix}…</code>
              </td>
              <td>
                <Time at={key.created_at} />
              </td>
              <td>{key.revoked_at ? <span class="tag tag-revoked">revoked</span> : "active"}</td>
              <td>
                {key.revoked_at ? null : (
                  <form method="post" action={`${PORTAL}/keys/${encodeURIComponent(key.id)}/revoke`}>
                    {csrf}
                    <button type="submit" class="button-danger">
                      Revoke<span class="visually-hidden"> key {key.prefix}</span>
                    </button>
                  </form>
                )}
              </td>
            </tr>
          ))}
        </DataTable>
        <form method="post" action={`${PORTAL}/keys`} class="inline">
          {csrf}
          <label>
            Key name
            <input type="text" name="name" maxlength={100} />
          </label>
          <button type="submit">Create key</button>
        </form>
      </section>
      {data.autoTopUp ? (
        <section aria-labelledby="auto-h">
          <h2 id="auto-h">Automatic top-up</h2>
          <dl class="stats">
            {Object.entries(data.autoTopUp).map(([k, v]) => (
              <div>
                <dt>{k.replace(/_/g, " ")}</dt>
                <dd>{typeof v === "object" ? JSON.stringify(v) : String(v)}</dd>
              </div>
            ))}
          </dl>
        </section>
      ) : null}
    </Shell>
  );
}
