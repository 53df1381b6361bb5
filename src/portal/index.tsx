import type { Context } from "hono";
import { Hono } from "hono";
import { csrf } from "hono/csrf";
import { LIVE_KEY_HEADER, LIVE_SESSION_HEADER, LIVE_UNTIL_HEADER } from "../../durable-objects/customer-account/contract";
import { type AppEnv, customerStub } from "../env";
import { parsePortalLinkToken, portalLinkMacMatches, sha256Hex } from "../lib/api-key-format";
import type { CustomerProfile } from "../lib/customer";
import { ApiError } from "../lib/errors";
import { authenticateKey } from "../middleware/api-key";
import { authFailureLimited, SIGN_IN_RETRY_AFTER_SECONDS, TOO_MANY_SIGN_INS } from "../middleware/auth-failures";
import { limitBody } from "../middleware/body-limit";
import { createTopUpCheckout } from "../routes/billing";
import { SecretNotice } from "../web/account-parts";
import { adminCall, must } from "../web/admin-client";
import { Layout } from "../web/layout";
import { pageErrors, pageHeaders, readForm, respondWith, sameOriginUpgrade } from "../web/pages";
import { endSession, freshSession, PORTAL_SESSION_SECONDS, type PortalSession, readSession, startSession } from "../web/session";
import { parseMajorAmount } from "./auto-top-up";
import { type Authority, authorityOf, ConfirmLink, KEY_SIGN_IN_OFF, LinkExpired, PORTAL, type PortalData, PortalPage, PortalSignIn, PRODUCT } from "./views";

const KEY_ID = /^[A-Za-z0-9_-]{1,100}$/;

/**
 * `/portal…`: the customer portal. Every route takes the customer from the signed session, never
 * from the URL or a form, so one customer's session cannot name another customer's data; and
 * every route names the authority it needs, which the session must have.
 */
export const portal = new Hono<AppEnv>().basePath(PORTAL);

portal.use(pageHeaders(), csrf(), limitBody(16 * 1024));

const OWNER_ONLY =
  "You signed in with an API key, which can see the balance, usage and that key, and top up. Keys and automatic top-up are managed from the link your API provider gives you.";

/** Refuses an action the session's authority does not cover (a key session acting as the owner). */
function need(session: PortalSession, authority: Authority): void {
  if (authority === "owner" && authorityOf(session) !== "owner") throw new ApiError("forbidden", OWNER_ONLY);
}

/**
 * The customer's session and profile, if the session has `authority`. Signing out, a revoked
 * sign-in key, a deleted customer or key sign-in turned off (PORTAL.api_key_sign_in) ends it.
 */
async function requireCustomer(c: Context<AppEnv>, authority: Authority): Promise<{ session: PortalSession; customer: CustomerProfile }> {
  const read = await readSession(c, "portal");
  const session = read && (!read.keyHash || c.var.config.PORTAL.api_key_sign_in) ? read : null;
  const stub = session ? customerStub(c.env, session.customerId) : null;
  // Only who the customer is: the summary (reports, ledger totals) is built for the page alone.
  const customer = session && stub ? await stub.portalSession({ sid: session.sid, ...(session.keyHash ? { keyHash: session.keyHash } : {}) }) : null;
  if (session && customer) {
    need(session, authority);
    return { session, customer };
  }
  if (read) endSession(c, "portal");
  if (c.req.method === "GET" && c.req.header("upgrade")?.toLowerCase() !== "websocket") respondWith(c.redirect(PORTAL, 303));
  throw new ApiError("unauthorized", "Your portal session has ended: open a new link or sign in again.");
}

function topUpAmounts(c: Context<AppEnv>): number[] {
  const { checkout_min_cents: min, checkout_max_cents: max } = c.var.config.GOVERNANCE;
  return [...new Set([min, 1000, 2000, 5000, 10_000, 50_000].filter((a) => a >= min && a <= max))].sort((a, b) => a - b);
}

/** What the page shows: a key session reads no more than it may see (its own key, no auto top-up settings). */
async function portalData(c: Context<AppEnv>, session: PortalSession): Promise<PortalData> {
  const path = `/customers/${session.customerId}`;
  const authority = authorityOf(session);
  const [summary, keys, usage, autoTopUp, topUps] = await Promise.all([
    adminCall(c, "GET", path),
    adminCall(c, "GET", `${path}/keys`),
    adminCall(c, "GET", `${path}/usage?hours=168`),
    authority === "owner" ? adminCall(c, "GET", `${path}/auto-top-up`) : null,
    // Invoices carry the buyer's name, address and tax ID: the owner's alone.
    authority === "owner" ? adminCall(c, "GET", `${path}/topups?limit=20`) : null,
  ]);
  const s = must(summary);
  const allKeys = must(keys).keys as PortalData["keys"];
  return {
    authority,
    customer: s.customer,
    balance: s.balance,
    keys: authority === "owner" ? allKeys : allKeys.filter((key) => key.id === session.keyId),
    usage: must(usage),
    autoTopUp: autoTopUp?.ok ? autoTopUp.body : null,
    topUps: topUps?.ok ? topUps.body.topups : null,
    topUp: { stripe: c.var.config.stripeEnabled, amounts: topUpAmounts(c) },
  };
}

async function signIn(c: Context<AppEnv>, customerId: string, key?: { hash: string; id: string }) {
  const session: PortalSession = {
    kind: "portal",
    customerId,
    exp: Date.now() + PORTAL_SESSION_SECONDS * 1000,
    ...freshSession(),
    ...(key ? { keyHash: key.hash, keyId: key.id } : {}),
  };
  await startSession(c, session);
}

const keySignIn = (c: Context<AppEnv>) => c.var.config.PORTAL.api_key_sign_in;

portal.get("/", async (c) => {
  if (!(await readSession(c, "portal"))) return c.html(<PortalSignIn keySignIn={keySignIn(c)} />);
  const { session } = await requireCustomer(c, "key");
  return c.html(<PortalPage session={session} data={await portalData(c, session)} notice={c.req.query("notice")} />);
});

/** Sign-in with an API key (PORTAL.api_key_sign_in): a session with that key's authority only. */
portal.post("/sign-in", async (c) => {
  if (!keySignIn(c)) return c.html(<PortalSignIn keySignIn={false} error={KEY_SIGN_IN_OFF} />, 403);
  const form = await c.req.parseBody();
  const key = typeof form.key === "string" ? form.key.trim() : "";
  if (!c.var.config.ADMIN_TOKEN) return c.html(<PortalSignIn keySignIn error="The portal is off: the provider has not set ADMIN_TOKEN." />, 401);
  // The worker's half of the key check first, as on the proxy: a forged customer id, or an unsigned
  // key once ACCEPT_UNSIGNED_KEYS is off, never reaches an object.
  const auth = await authenticateKey(key || null, c.var.config).catch((error: unknown) => {
    if (error instanceof ApiError) return null;
    throw error;
  });
  const found = auth ? await customerStub(c.env, auth.customerId).identifyKey(auth.keyHash) : null;
  if (!found || !auth) {
    if (await authFailureLimited(c)) return c.html(<PortalSignIn keySignIn error={TOO_MANY_SIGN_INS} />, 429, { "retry-after": String(SIGN_IN_RETRY_AFTER_SECONDS) });
    return c.html(<PortalSignIn keySignIn error="That API key is not valid." />, 401);
  }
  await signIn(c, found.customer.id, { hash: auth.keyHash, id: found.keyId });
  return c.redirect(PORTAL, 303);
});

/**
 * A one-time link's token (from POST /admin/customers/{id}/portal-sessions), checked at the worker
 * first: an API key's shape without its prefix, signed under the portal links' own key derived
 * from KEY_SIGNING_SECRET (links are short-lived, so none unsigned is accepted then): a made-up
 * customer id stops here, before any object.
 */
async function linkToken(c: Context<AppEnv>, token: string): Promise<{ customerId: string; hash: string } | null> {
  const parsed = parsePortalLinkToken(token);
  const secret = c.var.config.KEY_SIGNING_SECRET;
  if (!parsed || !c.var.config.ADMIN_TOKEN || (secret !== undefined && !(await portalLinkMacMatches(parsed, secret)))) return null;
  return { customerId: parsed.customerId, hash: await sha256Hex(token) };
}

/**
 * Opening a link only shows whose account it opens: link scanners in mail systems open links
 * too, and a link another site sends a browser to must not sign that browser in.
 */
portal.get("/enter", async (c) => {
  const token = c.req.query("token") ?? "";
  const link = await linkToken(c, token);
  const customer = link ? await customerStub(c.env, link.customerId).peekPortalLink(link.hash) : null;
  if (!customer) return c.html(<LinkExpired keySignIn={keySignIn(c)} />, 410);
  return c.html(<ConfirmLink token={token} customer={customer} />);
});

/** The confirmation page's form (same origin only: the csrf middleware): consumes the link and signs in as the owner. */
portal.post("/enter", async (c) => {
  const form = await c.req.parseBody();
  const token = typeof form.token === "string" ? form.token : "";
  const link = await linkToken(c, token);
  if (!link || !(await customerStub(c.env, link.customerId).consumePortalLink(link.hash))) return c.html(<LinkExpired keySignIn={keySignIn(c)} />, 410);
  await signIn(c, link.customerId);
  return c.redirect(PORTAL, 303);
});

portal.post("/sign-out", async (c) => {
  const { session } = await requireCustomer(c, "key");
  await readForm(c, session);
  await customerStub(c.env, session.customerId).endPortalSession({ sid: session.sid, expiresAt: session.exp });
  endSession(c, "portal");
  return c.redirect(PORTAL, 303);
});

portal.post("/keys", async (c) => {
  const { session } = await requireCustomer(c, "owner");
  const form = await readForm(c, session);
  const key = must(await adminCall(c, "POST", `/customers/${session.customerId}/keys`, form.name?.trim() ? { name: form.name.trim() } : {}));
  return c.html(
    <Layout title="New API key" product={PRODUCT} home={PORTAL} signOut={{ action: `${PORTAL}/sign-out`, csrf: session.csrf }}>
      <h1>New API key</h1>
      <SecretNotice intro="Your new key. It is shown only this once: copy it now." secret={key.key} />
      <p>
        <a href={PORTAL}>Back to your account</a>
      </p>
    </Layout>,
    201,
  );
});

portal.post("/keys/:keyId/revoke", async (c) => {
  const { session } = await requireCustomer(c, "owner");
  await readForm(c, session);
  const keyId = c.req.param("keyId");
  if (!KEY_ID.test(keyId)) throw new ApiError("not_found", `No key ${keyId}.`);
  // The key is looked up in the session's customer object only: another customer's key id matches nothing.
  const result = await adminCall(c, "DELETE", `/customers/${session.customerId}/keys/${keyId}`);
  if (result.status !== 204) must(result);
  return c.redirect(`${PORTAL}?notice=key-revoked`, 303);
});

portal.post("/top-up", async (c) => {
  const { session, customer } = await requireCustomer(c, "key");
  const form = await readForm(c, session);
  // A card saved for automatic top-ups resumes them: that is the owner's to decide.
  if (form.save_card === "1") need(session, "owner");
  if (!c.var.config.stripeEnabled) return c.redirect(`${PORTAL}?notice=topup-unavailable`, 303);
  const amount = Number(form.amount_cents);
  if (!topUpAmounts(c).includes(amount)) throw new ApiError("invalid_request", "Choose one of the amounts offered.");
  const checkout = await createTopUpCheckout(c.env, c.var.config, customer, amount, { savePaymentMethod: form.save_card === "1" });
  if (!checkout.url) throw new ApiError("upstream_error", "Stripe did not return a Checkout page; try again.");
  return c.redirect(checkout.url, 303);
});

/** The customer's own auto top-up settings, through the admin API's validation (its 400s and 409s become the page's). */
portal.post("/auto-top-up", async (c) => {
  const { session } = await requireCustomer(c, "owner");
  const form = await readForm(c, session);
  let autoTopUp: Record<string, number> | null = null;
  if (form.off !== "1") {
    const [threshold, amount, cap] = [parseMajorAmount(form.threshold), parseMajorAmount(form.amount), parseMajorAmount(form.cap)];
    if (threshold === null || amount === null || cap === null) throw new ApiError("invalid_request", "Enter each amount as a number, like 20 or 20.50.");
    autoTopUp = { threshold_cents: threshold, amount_cents: amount, monthly_cap_cents: cap };
  }
  must(await adminCall(c, "PUT", `/customers/${session.customerId}`, { auto_topup: autoTopUp }));
  return c.redirect(`${PORTAL}?notice=${autoTopUp ? "auto-top-up-saved" : "auto-top-up-off"}`, 303);
});

portal.get("/live", async (c) => {
  const { session } = await requireCustomer(c, "key");
  if (!sameOriginUpgrade(c)) throw new ApiError("invalid_request", "Expected a WebSocket upgrade from a portal page.");
  const headers: Record<string, string> = { upgrade: "websocket", [LIVE_UNTIL_HEADER]: String(session.exp), [LIVE_SESSION_HEADER]: session.sid };
  if (session.keyHash) headers[LIVE_KEY_HEADER] = session.keyHash;
  return customerStub(c.env, session.customerId).fetch(new Request("https://customer/live", { headers }));
});

portal.all("*", () => {
  throw new ApiError("not_found", "There is no portal page here.");
});

portal.onError(pageErrors({ product: PRODUCT, home: PORTAL }));
