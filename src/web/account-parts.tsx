import type { Child } from "hono/jsx";
import type { TopUpListItem } from "../../durable-objects/customer-account/contract";
import { CsrfField, DataTable, money, Notice, Time } from "./components";

/** Parts the dashboard's customer page and the customer's own portal share. */

export interface KeyRow {
  id: string;
  prefix: string;
  name: string | null;
  created_at: number;
  revoked_at: number | null;
}

/** A form that is just one button (revoke, retry, resolve): its accessible name says what it acts on. */
export function ActionButton(props: { action: string; csrf: string; label: string; target: string; tone?: "danger" | "quiet" }) {
  return (
    <form method="post" action={props.action}>
      <CsrfField token={props.csrf} />
      <button type="submit" class={props.tone === "danger" ? "button-danger" : "button-quiet"}>
        {props.label}
        <span class="visually-hidden"> {props.target}</span>
      </button>
    </form>
  );
}

/** The keys table with Revoke buttons, and the Create key form (unless `manage` is false); `base` is where the key routes live. */
export function KeysSection(props: { keys: KeyRow[]; base: string; csrf: string; caption: string; manage?: boolean; children?: Child }) {
  const manage = props.manage ?? true;
  return (
    <section aria-labelledby="keys-h">
      <h2 id="keys-h">API keys</h2>
      <DataTable id="keys" caption={props.caption} head={["Name", "Prefix", "Created", "Status", ""]} hideCaption>
        {props.keys.map((key) => (
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
              {key.revoked_at || !manage ? null : (
                <ActionButton action={`${props.base}/keys/${encodeURIComponent(key.id)}/revoke`} csrf={props.csrf} label="Revoke" target={`key ${key.prefix}`} tone="danger" />
              )}
            </td>
          </tr>
        ))}
      </DataTable>
      {manage ? (
        <form method="post" action={`${props.base}/keys`} class="inline">
          <CsrfField token={props.csrf} />
          <label>
            Key name
            <input type="text" name="name" maxlength={100} />
          </label>
          <button type="submit">Create key</button>
        </form>
      ) : null}
      {props.children}
    </section>
  );
}

export interface MeterTotal {
  meter: string;
  requests: number;
  charged_exact_cents: string;
}

/** Requests and charges per meter over the last 24 hours and 7 days. */
export function MeterTotals(props: { id: string; caption: string; day: MeterTotal[]; week: MeterTotal[]; currency: string }) {
  return (
    <DataTable id={props.id} caption={props.caption} head={["Meter", "Requests 24 h", "Charged 24 h", "Requests 7 d", "Charged 7 d"]} hideCaption>
      {props.week.map((week) => {
        const day = props.day.find((d) => d.meter === week.meter);
        return (
          <tr>
            <td>{week.meter}</td>
            <td class="num">{day?.requests ?? 0}</td>
            <td class="num">{money(day?.charged_exact_cents ?? "0", props.currency)}</td>
            <td class="num">{week.requests}</td>
            <td class="num">{money(week.charged_exact_cents, props.currency)}</td>
          </tr>
        );
      })}
    </DataTable>
  );
}

/** A secret shown once (a new API key, a portal link), with a Copy button once the script runs. */
export function SecretNotice(props: { intro: string; secret: string }) {
  return (
    <Notice tone="success">
      <p>{props.intro}</p>
      <code class="secret" id="one-time-secret">
        {props.secret}
      </code>
      <button type="button" class="button-quiet" data-copy="one-time-secret" hidden>
        Copy
      </button>
    </Notice>
  );
}

/** First and next page links for cursor paging. */
export function Pager(props: { label: string; first: string | null; next: string | null }) {
  return (
    <nav class="pager" aria-label={props.label}>
      {props.first ? <a href={props.first}>First page</a> : null}
      {props.next ? <a href={props.next}>Next page</a> : null}
    </nav>
  );
}

/** The balance the customer's object pushes over a WebSocket (`live` is the socket's URL); `children` go between. */
export function LiveBalance(props: { title: string; available: string; live: string; children?: Child }) {
  return (
    <section aria-labelledby="balance-h">
      <h2 id="balance-h">{props.title}</h2>
      <p class="balance" data-balance aria-live="polite" aria-atomic="true">
        {props.available}
      </p>
      {props.children}
      <p class="live-state" data-live-url={props.live}>
        <span data-live-status>Connecting…</span>
      </p>
    </section>
  );
}

/** The customer's paid top-ups with their invoice and receipt links (GET /admin/customers/{id}/topups). */
export function TopUpsSection(props: { topups: TopUpListItem[]; currency: string; caption: string }) {
  const cents = (n: number) => money(String(n), props.currency);
  return (
    <section aria-labelledby="topups-h">
      <h2 id="topups-h">Top-ups</h2>
      {props.topups.length ? (
        <DataTable id="topups" caption={props.caption} head={["Paid", "How", "Credit", "Tax", "Paid in total", "Invoice", "Receipt"]} hideCaption>
          {props.topups.map((t) => (
            <tr>
              <td>
                <Time at={t.created_at} />
              </td>
              <td>{t.source === "auto_topup" ? "Automatic top-up" : "Checkout"}</td>
              <td class="num">{cents(t.credit_cents)}</td>
              <td class="num">{t.tax_cents ? cents(t.tax_cents) : ""}</td>
              <td class="num">{cents(t.total_cents)}</td>
              <td>
                {t.invoice?.url ? (
                  <a href={t.invoice.url} rel="noopener noreferrer">
                    Invoice{t.invoice.number ? ` ${t.invoice.number}` : ""}
                  </a>
                ) : null}
                {t.invoice?.pdf_url ? (
                  <>
                    {" · "}
                    <a href={t.invoice.pdf_url} rel="noopener noreferrer">
                      PDF
                    </a>
                  </>
                ) : null}
              </td>
              <td>
                {t.receipt_url ? (
                  <a href={t.receipt_url} rel="noopener noreferrer">
                    Receipt
                  </a>
                ) : null}
              </td>
            </tr>
          ))}
        </DataTable>
      ) : (
        <p class="muted">No top-ups yet.</p>
      )}
    </section>
  );
}
