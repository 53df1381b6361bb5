import { type Context, Hono } from "hono";
import { type AppEnv, customerStub } from "../env";
import { UNSUBSCRIBE_PATH, verifyUnsubscribeToken } from "../lib/email/unsubscribe";
import { ApiError } from "../lib/errors";
import { escapeHtmlText } from "../lib/template";
import { limitBody } from "../middleware/body-limit";

/**
 * `/email/…`: the public end of behavioral emails. `POST /email/unsubscribe?token=…` is RFC 8058
 * one-click unsubscribe (no login, no cookies, no redirect); `GET` only shows a page whose button
 * sends that POST, because link scanners follow links in emails.
 */
export const email = new Hono<AppEnv>();

/** The customer a valid token names; a missing, malformed or forged token changes nothing. */
async function tokenCustomer(c: Context<AppEnv>): Promise<string> {
  const token = c.req.query("token");
  if (!token) throw new ApiError("invalid_request", "The unsubscribe link has no token.");
  const customerId = await verifyUnsubscribeToken(c.var.config, token);
  if (!customerId) throw new ApiError("invalid_signature", "This unsubscribe link is not valid.");
  return customerId;
}

const PAGE_HEADERS = {
  "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
  "x-robots-tag": "noindex",
};

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtmlText(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#111}button{font:inherit;padding:.5rem 1.25rem;cursor:pointer}</style>
</head><body><main><h1>${escapeHtmlText(title)}</h1>${body}</main></body></html>`;
}

function sender(c: Context<AppEnv>): string {
  const emails = c.var.config.EMAILS;
  return emails?.from_name || emails?.from_email || "this service";
}

email.get(UNSUBSCRIBE_PATH, async (c) => {
  await tokenCustomer(c);
  // A relative action keeps the query (and any path prefix in front of the gateway).
  const action = `?token=${encodeURIComponent(c.req.query("token")!)}`;
  const body = `<p>Stop billing reminder emails from ${escapeHtmlText(sender(c))}, such as low-credit and out-of-credit notices?</p>
<form method="post" action="${escapeHtmlText(action)}"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe</button></form>`;
  return c.html(page("Unsubscribe", body), 200, PAGE_HEADERS);
});

email.post(UNSUBSCRIBE_PATH, limitBody(4096), async (c) => {
  const customerId = await tokenCustomer(c);
  const result = await customerStub(c.env, customerId).setEmailUnsubscribed(true);
  if (!result) throw new ApiError("not_found", "This unsubscribe link names no customer.");
  if ((c.req.header("accept") ?? "").includes("text/html")) {
    return c.html(page("You are unsubscribed", `<p>You will no longer get billing reminder emails from ${escapeHtmlText(sender(c))}.</p>`), 200, PAGE_HEADERS);
  }
  return c.json({ unsubscribed: true, unsubscribed_at: result.unsubscribed_at });
});

email.all(UNSUBSCRIBE_PATH, (c) => {
  c.header("allow", "GET, POST");
  throw new ApiError("method_not_allowed", `${c.req.method} is not allowed on ${UNSUBSCRIBE_PATH}; use GET (the page) or POST.`);
});

// `/email/…` is reserved: never proxied to the origin.
email.all("/email/*", (c) => {
  throw new ApiError("not_found", `No route ${c.req.method} ${new URL(c.req.url).pathname}.`);
});
