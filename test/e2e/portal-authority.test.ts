import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { StripeDouble } from "../doubles/stripe-double";
import { type Gateway, serveHandler, startGateway } from "./harness";

// Over the real `wrangler dev`: a key capped at 5 cents signed in to the portal
// and acted as the account's owner (minted an uncapped key, revoked the owner's, turned on auto
// top-up). With Stripe on (its double over HTTP), so the owner's own changes do go through.
const stripe = new StripeDouble({ webhookSecret: "whsec_e2e_portal" });
let on: Gateway;
let off: Gateway;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const origin = await startDemoOrigin({ port: 0 });
  const stripeServer = await serveHandler((r) => stripe.handle(r));
  closers.push(origin.close, stripeServer.close);
  const common = { vars: { ORIGIN_URL: origin.url, STRIPE_API_BASE: stripeServer.url }, secrets: { STRIPE_SECRET_KEY: "sk_test_e2e", STRIPE_WEBHOOK_SECRET: "whsec_e2e_portal" } };
  on = await startGateway({ ...common, vars: { ...common.vars, PORTAL: JSON.stringify({ api_key_sign_in: true }) } });
  // The shipped default: no PORTAL var at all.
  off = await startGateway(common);
}, 180_000);
afterAll(async () => {
  await on?.stop();
  await off?.stop();
  for (const close of closers) await close();
});

/** A form sent as the portal's own pages send it: same origin, the session cookie, no redirects followed. */
function form(gateway: Gateway, path: string, fields: Record<string, string>, cookie?: string) {
  return gateway.fetch(path, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: gateway.url, ...(cookie ? { cookie } : {}) },
    body: new URLSearchParams(fields).toString(),
  });
}
const cookieOf = (response: Response) => response.headers.get("set-cookie")!.split(";")[0]!;
const csrfOf = async (gateway: Gateway, cookie: string) => /name="_csrf" value="([0-9a-f]+)"/.exec(await (await gateway.fetch("/portal", { headers: { cookie } })).text())![1]!;

async function deliverAll(gateway: Gateway) {
  for (const event of stripe.takeEvents()) {
    const { body, signature } = await stripe.sign(event);
    expect((await gateway.fetch("/webhooks/stripe", { method: "POST", headers: { "stripe-signature": signature }, body })).status).toBe(200);
  }
}

/** A Stripe customer with a default card and $1 of credit, its owner's key and a key capped at 5 cents. */
async function account(gateway: Gateway, name: string) {
  const c = stripe.createCustomer({ email: `${name.toLowerCase()}-${Date.now()}@example.com`, name, balance: -100, paymentMethod: "pm_card_visa", defaultPaymentMethod: true });
  await deliverAll(gateway);
  for (let i = 0; (await gateway.admin("GET", `/customers/${c.id}`)).body?.balance?.available_cents !== 100; i++) {
    if (i > 200) throw new Error("the customer's credit never arrived");
    await new Promise((r) => setTimeout(r, 50));
  }
  const owner = (await gateway.admin("POST", `/customers/${c.id}/keys`, { name: "owner" })).body as { key: string; id: string };
  const capped = (await gateway.admin("POST", `/customers/${c.id}/keys`, { name: "capped", spend_cap_cents: 5 })).body as { key: string; id: string };
  return { id: c.id, owner, capped };
}

const call = (gateway: Gateway, key: string) => gateway.fetch("/v1/data", { headers: { authorization: `Bearer ${key}` } }).then((r) => r.status);

describe("a capped key signed in to the portal (PORTAL.api_key_sign_in on) stays a capped key", () => {
  it("cannot mint an uncapped key, revoke the owner's key or turn on auto top-up; the owner's link can", async () => {
    const { id, owner, capped } = await account(on, "Capped");
    const signIn = await form(on, "/portal/sign-in", { key: capped.key });
    expect(signIn.status).toBe(303);
    const cookie = cookieOf(signIn);
    const csrf = await csrfOf(on, cookie);

    const minted = await form(on, "/portal/keys", { _csrf: csrf, name: "uncapped" }, cookie);
    expect(minted.status).toBe(403);
    expect(await minted.text()).not.toMatch(/payg_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}/);
    expect((await form(on, `/portal/keys/${owner.id}/revoke`, { _csrf: csrf }, cookie)).status).toBe(403);
    const auto = await form(on, "/portal/auto-top-up", { _csrf: csrf, threshold: "0.95", amount: "5", cap: "1000" }, cookie);
    expect(auto.status).toBe(403);
    expect(await auto.text()).toContain("You signed in with an API key");

    const keys = (await on.admin("GET", `/customers/${id}/keys`)).body.keys as { id: string; revoked_at: number | null }[];
    expect(keys.map((k) => [k.id, k.revoked_at])).toEqual([
      [owner.id, null],
      [capped.id, null],
    ]);
    expect((await on.admin("GET", `/customers/${id}`)).body.auto_topup).toBeNull();
    // The cap holds (5 of 30 served), and spending below any threshold charges no card.
    const statuses = [];
    for (let i = 0; i < 30; i++) statuses.push(await call(on, capped.key));
    expect(statuses.filter((s) => s === 200)).toHaveLength(5);
    expect(await call(on, owner.key)).toBe(200);
    await new Promise((r) => setTimeout(r, 500));
    expect(stripe.requests.filter((r) => r.method === "POST" && r.path === "/v1/payment_intents" && r.params.customer === id)).toEqual([]);

    // The same changes from a session the provider's link opened go through.
    const { url } = (await on.admin("POST", `/customers/${id}/portal-sessions`, {})).body;
    const token = new URL(url).searchParams.get("token")!;
    expect(await (await on.fetch(`/portal/enter?token=${token}`)).text()).toContain("Continue as Capped, ");
    const entered = await form(on, "/portal/enter", { token });
    expect(entered.status).toBe(303);
    const ownerCookie = cookieOf(entered);
    const ownerCsrf = await csrfOf(on, ownerCookie);
    expect((await form(on, "/portal/auto-top-up", { _csrf: ownerCsrf, threshold: "0.5", amount: "5", cap: "10" }, ownerCookie)).status).toBe(303);
    expect((await on.admin("GET", `/customers/${id}`)).body.auto_topup).toMatchObject({ enabled: true, threshold_cents: 50 });
  });
});

describe("PORTAL.api_key_sign_in off (the default)", () => {
  it("/portal says to ask the provider for a link, and a key sign-in is refused with that explanation", async () => {
    const { capped, owner } = await account(off, "Unsigned");
    const page = await (await off.fetch("/portal")).text();
    expect(page).toContain("Ask them for a link.");
    expect(page).not.toContain('name="key"');
    for (const key of [capped.key, owner.key]) {
      const refused = await form(off, "/portal/sign-in", { key });
      expect(refused.status).toBe(403);
      expect(refused.headers.get("set-cookie")).toBeNull();
      expect(await refused.text()).toContain("Signing in with an API key is turned off here: ask your API provider for a link to your account.");
    }
  });
});
