import { hmacHex } from "../../verify/payg-signature";
import { timingSafeEqualStrings } from "../api-key-format";
import type { Config } from "../config";
import { purposeMac } from "../derived-keys";
import { escapeHtmlText } from "../template";

/** The public route every behavioral email links to (RFC 8058 one-click, and a confirmation page). */
export const UNSUBSCRIBE_PATH = "/email/unsubscribe";

const TOKEN = /^([A-Za-z0-9_-]{1,64})\.([0-9a-f]{64})$/;

/** The key unsubscribe tokens are signed with: its own secret, else the admin token. */
function signingKey(config: Config): string | undefined {
  return config.UNSUBSCRIBE_SIGNING_SECRET ?? config.ADMIN_TOKEN;
}

/** How links were signed before each purpose had a key of its own: the secret itself over a labelled message. Links in emails already sent keep working. */
const legacyMac = (key: string, customerId: string) => hmacHex(key, `payg-edge-gateway.unsubscribe.v1.${customerId}`);

/** `<customer id>.<hex HMAC-SHA256>` under the unsubscribe key derived from the secret: names the customer, cannot be made without the key. */
export async function unsubscribeToken(config: Config, customerId: string): Promise<string> {
  const key = signingKey(config);
  // parseConfig refuses email templates without one of them.
  if (!key) throw new Error("no UNSUBSCRIBE_SIGNING_SECRET or ADMIN_TOKEN to sign unsubscribe links");
  return `${customerId}.${await purposeMac(key, "unsubscribe", customerId)}`;
}

/** The customer a token names, or null when it is malformed or its signature matches neither derivation. */
export async function verifyUnsubscribeToken(config: Config, token: string): Promise<string | null> {
  const match = TOKEN.exec(token);
  const key = signingKey(config);
  if (!match || !key) return null;
  const [customerId, mac] = [match[1]!, match[2]!];
  if (await timingSafeEqualStrings(await purposeMac(key, "unsubscribe", customerId), mac)) return customerId;
  return (await timingSafeEqualStrings(await legacyMac(key, customerId), mac)) ? customerId : null;
}

/** The link emails carry, both in List-Unsubscribe and in the footer (GET shows a confirm page). */
export async function unsubscribeUrl(config: Config, customerId: string): Promise<string> {
  const url = new URL(config.PUBLIC_URL!.replace(/\/+$/, "") + UNSUBSCRIBE_PATH);
  url.searchParams.set("token", await unsubscribeToken(config, customerId));
  return url.toString();
}

/** RFC 8058 headers, set per personalization so DKIM covers them. */
export function listUnsubscribeHeaders(url: string): Record<string, string> {
  return { "List-Unsubscribe": `<${url}>`, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click" };
}

/** The text part with the unsubscribe line every behavioral email ends with. */
export function withTextFooter(text: string, link: string): string {
  return `${text}\n\n--\nTo stop these emails, unsubscribe: ${link}\n`;
}

/** The HTML part with the same line at its end (inside `<body>` when the template has one). */
export function withHtmlFooter(html: string, link: string): string {
  const footer = `<p style="font-size:12px;color:#6b7280">To stop these emails, <a href="${escapeHtmlText(link)}">unsubscribe</a>.</p>`;
  const end = html.search(/<\/body>/i);
  return end === -1 ? html + footer : html.slice(0, end) + footer + html.slice(end);
}
