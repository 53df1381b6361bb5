import type { Child } from "hono/jsx";
import type { TopUpListItem } from "../../durable-objects/customer-account/contract";
import type { CustomerProfile } from "../lib/customer";
import { centsToMicros, formatMoney } from "../lib/money";
import { type KeyRow, KeysSection, LiveBalance, MeterTotals, TopUpsSection } from "../web/account-parts";
import { hourlyChart, hourlyModelChart, type ModelUsageRow, type UsageRow } from "../web/chart-data";
import { Chart, CsrfField, Notice } from "../web/components";
import { Layout } from "../web/layout";
import type { PortalSession } from "../web/session";
import { type AutoTopUpData, AutoTopUpSection, wantsCard } from "./auto-top-up";

export const PORTAL = "/portal";
export const PRODUCT = "API account";

/**
 * What a portal session may do. "owner" (from a provider's link): everything the portal offers.
 * "key" (signed in with an API key): the balance, usage and that key, and Checkout top-ups; no
 * keys made or revoked, no auto top-up changed, nothing else of the account's.
 */
export type Authority = "key" | "owner";

export function authorityOf(session: PortalSession): Authority {
  return session.keyHash ? "key" : "owner";
}

export const KEY_SIGN_IN_OFF = "Signing in with an API key is turned off here: ask your API provider for a link to your account.";

export const NOTICES: Record<string, { tone: "success" | "info"; text: string }> = {
  "key-revoked": { tone: "success", text: "Key revoked: requests with it are refused from now on." },
  "auto-top-up-saved": { tone: "success", text: "Automatic top-up saved." },
  "auto-top-up-off": { tone: "success", text: "Automatic top-up turned off." },
  "topup-unavailable": { tone: "info", text: "Online top-ups are not available here: your credit is granted by your API provider. Contact them to add credit." },
};

function Shell(props: { title: string; session?: PortalSession; children: Child }) {
  return (
    <Layout title={props.title} product={PRODUCT} home={PORTAL} {...(props.session ? { signOut: { action: `${PORTAL}/sign-out`, csrf: props.session.csrf } } : {})}>
      {props.children}
    </Layout>
  );
}

/** `/portal` without a session: the key sign-in form when PORTAL.api_key_sign_in is on, else where to get a link. */
export function PortalSignIn(props: { keySignIn: boolean; error?: string }) {
  return (
    <Shell title="Sign in">
      <h1>Your API account</h1>
      {props.error ? <Notice tone="error">{props.error}</Notice> : null}
      {props.keySignIn ? (
        <>
          <p>Open the link your API provider gave you, or sign in with one of your API keys.</p>
          <form method="post" action={`${PORTAL}/sign-in`} class="stack panel">
            <label>
              API key
              <input type="password" name="key" required autocomplete="off" spellcheck={false} />
            </label>
            <button type="submit">Sign in</button>
          </form>
        </>
      ) : (
        <p>Your account opens from a link your API provider gives you (in their app, for example under Billing). Ask them for a link.</p>
      )}
    </Shell>
  );
}

export function LinkExpired(props: { keySignIn: boolean }) {
  return (
    <Shell title="Link expired">
      <h1>This link has expired</h1>
      <Notice tone="error">Portal links open once and only for a short time. Ask your API provider for a new link{props.keySignIn ? ", or sign in with an API key" : ""}.</Notice>
      {props.keySignIn ? (
        <p>
          <a href={PORTAL}>Sign in with an API key</a>
        </p>
      ) : null}
    </Shell>
  );
}

/** "Continue as Ada Lovelace, ada@example.com", or the id for a customer with neither. */
export function accountName(customer: Pick<CustomerProfile, "id" | "name" | "email">): string {
  return [customer.name, customer.email].filter(Boolean).join(", ") || customer.id;
}

/** What a link opens, named before anything happens; only its button (a same-origin POST) signs in. */
export function ConfirmLink(props: { token: string; customer: CustomerProfile }) {
  return (
    <Shell title="Open your account">
      <h1>Open your API account</h1>
      <p>
        This link signs this browser in to the account of <strong>{accountName(props.customer)}</strong>. Continue only if that is your account and you asked for this link.
      </p>
      <form method="post" action={`${PORTAL}/enter`} class="stack panel">
        <input type="hidden" name="token" value={props.token} />
        <button type="submit">Continue as {accountName(props.customer)}</button>
      </form>
    </Shell>
  );
}

export interface PortalData {
  authority: Authority;
  customer: { id: string; name: string | null; email: string | null; plan: string };
  balance: { available: string; available_exact_cents: string; currency: string };
  keys: KeyRow[];
  usage: {
    series: UsageRow[];
    totals: { last_24h: { meter: string; requests: number; charged_exact_cents: string }[]; range: { meter: string; requests: number; charged_exact_cents: string }[] };
    models: { series: ModelUsageRow[] };
  };
  autoTopUp: AutoTopUpData | null;
  /** Paid top-ups with their invoices and receipts: null for a key's session, which sees none. */
  topUps: TopUpListItem[] | null;
  topUp: { stripe: boolean; amounts: number[] };
}

export function PortalPage(props: { session: PortalSession; data: PortalData; notice?: string | undefined }) {
  const { session, data } = props;
  const owner = data.authority === "owner";
  const currency = data.balance.currency;
  const csrf = <CsrfField token={session.csrf} />;
  const notice = props.notice ? NOTICES[props.notice] : undefined;
  return (
    <Shell title="Your account" session={session}>
      <h1>{data.customer.name ?? data.customer.id}</h1>
      <p class="muted">
        <code>{data.customer.id}</code>
        {owner && data.customer.email ? ` · ${data.customer.email}` : ""}
      </p>
      {notice ? <Notice tone={notice.tone}>{notice.text}</Notice> : null}
      {owner ? null : (
        <Notice tone="info">
          You signed in with an API key: you see that key, your balance and usage, and you can top up. To manage keys or automatic top-up, open your account from the link your API
          provider gives you.
        </Notice>
      )}
      <div class="grid">
        <LiveBalance title="Credit balance" available={data.balance.available} live={`${PORTAL}/live`} />
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
              {data.topUp.stripe && owner ? (
                <label>
                  <input type="checkbox" name="save_card" value="1" checked={wantsCard(data.autoTopUp?.auto_topup ?? null)} /> Save my card for automatic top-ups
                </label>
              ) : null}
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
        {data.usage.models.series.length ? (
          <Chart id="portal-tokens" title="Tokens per hour by model" data={hourlyModelChart(data.usage.models.series, 168, "tokens", currency)} />
        ) : null}
        <h3>Recent charges by meter</h3>
        {data.usage.totals.range.length ? (
          <MeterTotals id="charges" caption="Recent charges by meter" day={data.usage.totals.last_24h} week={data.usage.totals.range} currency={currency} />
        ) : (
          <p class="muted">No charges in the last 7 days.</p>
        )}
      </section>
      {owner && data.topUps && data.customer.plan === "prepaid" ? <TopUpsSection topups={data.topUps} currency={currency} caption="Your top-ups, newest first" /> : null}
      <KeysSection keys={data.keys} base={PORTAL} csrf={session.csrf} caption={owner ? "Your API keys" : "The API key you signed in with"} manage={owner} />
      {owner && data.autoTopUp?.stripe && data.customer.plan === "prepaid" ? (
        <AutoTopUpSection data={data.autoTopUp} currency={currency} csrf={session.csrf} action={`${PORTAL}/auto-top-up`} />
      ) : null}
    </Shell>
  );
}
