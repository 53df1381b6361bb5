import type { Context } from "hono";
import { Hono } from "hono";
import { csrf } from "hono/csrf";
import { customerStub, type AppEnv } from "../env";
import { ApiError } from "../errors";
import { keyMacMatches, parseApiKey, sha256Hex } from "../keys";
import { authenticateKey } from "../key-auth";
import { authFailureLimited, SIGN_IN_RETRY_AFTER_SECONDS, TOO_MANY_SIGN_INS } from "../middleware/auth-failures";
import { limitBody } from "../middleware/body-limit";
import { createTopUpCheckout } from "../routes/billing";
import type { CustomerProfile } from "../types";
import { adminCall, must } from "../web/admin-client";
import { SecretNotice } from "../web/account-parts";
import { Layout } from "../web/layout";
import { Notice } from "../web/components";
import { pageErrors, pageHeaders, readForm, respondWith, sameOriginUpgrade } from "../web/pages";
import { endSession, freshSession, PORTAL_SESSION_SECONDS, readSession, startSession, type PortalSession } from "../web/session";
import { LIVE_KEY_HEADER, LIVE_SESSION_HEADER, LIVE_UNTIL_HEADER } from "../../durable-objects/customer-account/live";
import { parseMajorAmount } from "./auto-top-up";
import { PORTAL, PortalPage, PortalSignIn, PRODUCT, type PortalData } from "./views";

const KEY_ID = /^[A-Za-z0-9_-]{1,100}$/;

/**
 * `/portal…`: the customer portal. Every route takes the customer from the signed session, never
 * from the URL or a form, so one customer's session cannot name another customer's data.
 */
export const portal = new Hono<AppEnv>().basePath(PORTAL);

portal.use(pageHeaders(), csrf(), limitBody(16 * 1024));

/** The customer's session and profile; signing out, a revoked sign-in key or a deleted customer ends the session. */
async function requireCustomer(c: Context<AppEnv>): Promise<{ session: PortalSession; customer: CustomerProfile }> {
  const session = await readSession(c, "portal");
  const stub = session ? customerStub(c.env, session.customerId) : null;
  // Only who the customer is: the summary (reports, ledger totals) is built for the page alone.
  const customer = session && stub ? await stub.portalSession({ sid: session.sid, ...(session.keyHash ? { keyHash: session.keyHash } : {}) }) : null;
  if (session && customer) return { session, customer };
  if (session) endSession(c, "portal");
  if (c.req.method === "GET" && c.req.header("upgrade")?.toLowerCase() !== "websocket") respondWith(c.redirect(PORTAL, 303));
  throw new ApiError("unauthorized", "Your portal session has ended: open a new link or sign in again.");
}

function topUpAmounts(c: Context<AppEnv>): number[] {
  const { checkout_min_cents: min, checkout_max_cents: max } = c.var.config.GOVERNANCE;
  return [...new Set([min, 1000, 2000, 5000, 10_000, 50_000].filter((a) => a >= min && a <= max))].sort((a, b) => a - b);
}

async function portalData(c: Context<AppEnv>, customerId: string): Promise<PortalData> {
  const path = `/customers/${customerId}`;
  const [summary, keys, usage, autoTopUp] = await Promise.all([
    adminCall(c, "GET", path),
    adminCall(c, "GET", `${path}/keys`),
    adminCall(c, "GET", `${path}/usage?hours=168`),
    adminCall(c, "GET", `${path}/auto-top-up`),
  ]);
  const s = must(summary);
  return {
    customer: s.customer,
    balance: s.balance,
    keys: must(keys).keys,
    usage: must(usage),
    autoTopUp: autoTopUp.ok ? autoTopUp.body : null,
    topUp: { stripe: c.var.config.stripeEnabled, amounts: topUpAmounts(c) },
  };
}

async function signIn(c: Context<AppEnv>, customerId: string, keyHash?: string) {
  const session: PortalSession = { kind: "portal", customerId, exp: Date.now() + PORTAL_SESSION_SECONDS * 1000, ...freshSession(), ...(keyHash ? { keyHash } : {}) };
  await startSession(c, session);
  return session;
}

portal.get("/", async (c) => {
  if (!(await readSession(c, "portal"))) return c.html(<PortalSignIn />);
  const { session } = await requireCustomer(c);
  return c.html(<PortalPage session={session} data={await portalData(c, session.customerId)} notice={c.req.query("notice")} />);
});

portal.post("/sign-in", async (c) => {
  const form = await c.req.parseBody();
  const key = typeof form.key === "string" ? form.key.trim() : "";
  if (!c.var.config.ADMIN_TOKEN) return c.html(<PortalSignIn error="The portal is off: the provider has not set ADMIN_TOKEN." />, 401);
  // The worker's half of the key check first, as on the proxy: a forged customer id, or an unsigned
  // key once ACCEPT_UNSIGNED_KEYS is off, never reaches an object.
  const auth = await authenticateKey(key || null, c.var.config).catch((error: unknown) => {
    if (error instanceof ApiError) return null;
    throw error;
  });
  const customer = auth ? await customerStub(c.env, auth.customerId).identify(auth.keyHash) : null;
  if (!customer || !auth) {
    if (await authFailureLimited(c)) return c.html(<PortalSignIn error={TOO_MANY_SIGN_INS} />, 429, { "retry-after": String(SIGN_IN_RETRY_AFTER_SECONDS) });
    return c.html(<PortalSignIn error="That API key is not valid." />, 401);
  }
  await signIn(c, customer.id, auth.keyHash);
  return c.redirect(PORTAL, 303);
});

/** A one-time link from POST /admin/customers/{id}/portal-sessions: consumed here, then the portal renders in place. */
portal.get("/enter", async (c) => {
  const token = c.req.query("token") ?? "";
  const fail = () =>
    c.html(
      <Layout title="Link expired" product={PRODUCT} home={PORTAL}>
        <h1>This link has expired</h1>
        <Notice tone="error">Portal links open once and only for a short time. Ask for a new link, or sign in with an API key.</Notice>
        <p>
          <a href={PORTAL}>Sign in with an API key</a>
        </p>
      </Layout>,
      410,
    );
  // An API key's format without its prefix, signed the same way under KEY_SIGNING_SECRET (links
  // live a day, so none unsigned is accepted then): a made-up customer id stops here, before any object.
  const parsed = parseApiKey(`payg_${token}`);
  const secret = c.var.config.KEY_SIGNING_SECRET;
  if (!parsed || !c.var.config.ADMIN_TOKEN || (secret !== undefined && !(await keyMacMatches(parsed, secret)))) return fail();
  const customerId = parsed.customerId;
  if (!(await customerStub(c.env, customerId).consumePortalLink(await sha256Hex(token)))) return fail();
  // Rendered in place rather than redirected: a SameSite=Strict cookie set on a navigation that
  // came from another site (the provider's app) is not sent on the redirect that follows.
  const session = await signIn(c, customerId);
  return c.html(<PortalPage session={session} data={await portalData(c, customerId)} replaceUrl={PORTAL} />);
});

portal.post("/sign-out", async (c) => {
  const { session } = await requireCustomer(c);
  await readForm(c, session);
  await customerStub(c.env, session.customerId).endPortalSession({ sid: session.sid, expiresAt: session.exp });
  endSession(c, "portal");
  return c.redirect(PORTAL, 303);
});

portal.post("/keys", async (c) => {
  const { session } = await requireCustomer(c);
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
  const { session } = await requireCustomer(c);
  await readForm(c, session);
  const keyId = c.req.param("keyId");
  if (!KEY_ID.test(keyId)) throw new ApiError("not_found", `No key ${keyId}.`);
  // The key is looked up in the session's customer object only: another customer's key id matches nothing.
  const result = await adminCall(c, "DELETE", `/customers/${session.customerId}/keys/${keyId}`);
  if (result.status !== 204) must(result);
  return c.redirect(`${PORTAL}?notice=key-revoked`, 303);
});

portal.post("/top-up", async (c) => {
  const { session, customer } = await requireCustomer(c);
  const form = await readForm(c, session);
  if (!c.var.config.stripeEnabled) return c.redirect(`${PORTAL}?notice=topup-unavailable`, 303);
  const amount = Number(form.amount_cents);
  if (!topUpAmounts(c).includes(amount)) throw new ApiError("invalid_request", "Choose one of the amounts offered.");
  const checkout = await createTopUpCheckout(c.env, c.var.config, customer, amount, { savePaymentMethod: form.save_card === "1" });
  if (!checkout.url) throw new ApiError("upstream_error", "Stripe did not return a Checkout page; try again.");
  return c.redirect(checkout.url, 303);
});

/** The customer's own auto top-up settings, through the admin API's validation (its 400s and 409s become the page's). */
portal.post("/auto-top-up", async (c) => {
  const { session } = await requireCustomer(c);
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
  const { session } = await requireCustomer(c);
  if (!sameOriginUpgrade(c)) throw new ApiError("invalid_request", "Expected a WebSocket upgrade from a portal page.");
  const headers: Record<string, string> = { upgrade: "websocket", [LIVE_UNTIL_HEADER]: String(session.exp), [LIVE_SESSION_HEADER]: session.sid };
  if (session.keyHash) headers[LIVE_KEY_HEADER] = session.keyHash;
  return customerStub(c.env, session.customerId).fetch(new Request("https://customer/live", { headers }));
});

portal.all("*", () => {
  throw new ApiError("not_found", "There is no portal page here.");
});

portal.onError(pageErrors({ product: PRODUCT, home: PORTAL }));

