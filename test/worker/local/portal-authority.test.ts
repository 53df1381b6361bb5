import { describe, expect, it } from "vitest";
import { admin, cookieOf, customerWithCredit, echoOrigin, formPost, gateway, gatewayWith, portalCsrf, portalKeySession, portalLinkSession, withKey } from "../helpers";

/** The shipped default: PORTAL unset (these projects turn key sign-in on, as npm start does). */
const keySignInOff = { PORTAL: "" };

async function activeKeyIds(id: string): Promise<string[]> {
  return ((await admin("GET", `/customers/${id}/keys`)).body.keys as { id: string; revoked_at: number | null }[]).filter((k) => k.revoked_at === null).map((k) => k.id);
}

describe("a portal session opened with an API key has that key's authority only", () => {
  it("sees the balance, usage and only its own key, with no key or auto top-up controls and no email address", async () => {
    const owner = await customerWithCredit(40, { name: "Capped Holder", email: "capped-holder@example.com" });
    const capped = (await admin("POST", `/customers/${owner.id}/keys`, { name: "capped", spend_cap_cents: 5 })).body as { key: string; id: string; prefix: string };
    const page = await (await gateway("/portal", { headers: { cookie: await portalKeySession(capped.key) } })).text();
    expect(page).toContain("Capped Holder");
    expect(page).toContain("$0.40");
    expect(page).toContain(capped.prefix);
    expect(page).not.toContain(owner.key.slice(0, owner.key.indexOf(".") + 5));
    expect(page).not.toContain("capped-holder@example.com");
    expect(page).not.toContain("Create key");
    expect(page).not.toContain("Revoke");
    expect(page).not.toContain("/portal/auto-top-up");
    expect(page).toContain("You signed in with an API key");
    // The owner's session (a provider's link) sees every key and the controls.
    const full = await (await gateway("/portal", { headers: { cookie: await portalLinkSession(owner.id) } })).text();
    for (const text of [capped.prefix, owner.key.slice(0, owner.key.indexOf(".") + 5), "Create key", "Revoke", "capped-holder@example.com"]) expect(full).toContain(text);
  });

  it("cannot create a key, revoke its own or the owner's key, or change auto top-up: each is refused with the portal's page and changes nothing", async () => {
    echoOrigin();
    const owner = await customerWithCredit(40);
    const capped = (await admin("POST", `/customers/${owner.id}/keys`, { name: "capped", spend_cap_cents: 5 })).body as { key: string; id: string };
    const cookie = await portalKeySession(capped.key);
    const csrf = await portalCsrf(cookie);
    const before = await activeKeyIds(owner.id);
    const attempts: [string, Record<string, string>][] = [
      ["/portal/keys", { _csrf: csrf, name: "uncapped" }],
      [`/portal/keys/${owner.keyId}/revoke`, { _csrf: csrf }],
      [`/portal/keys/${capped.id}/revoke`, { _csrf: csrf }],
      ["/portal/auto-top-up", { _csrf: csrf, threshold: "5", amount: "20", cap: "100" }],
      ["/portal/auto-top-up", { _csrf: csrf, off: "1" }],
      ["/portal/top-up", { _csrf: csrf, amount_cents: "500", save_card: "1" }],
    ];
    for (const [path, fields] of attempts) {
      const refused = await gateway(path, formPost(fields, cookie));
      expect(refused.status, path).toBe(403);
      expect(refused.headers.get("content-type")).toContain("text/html");
      const html = await refused.text();
      expect(html).toContain("You signed in with an API key");
      expect(html).not.toMatch(/payg_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}/);
    }
    expect(await activeKeyIds(owner.id)).toEqual(before);
    expect((await gateway("/v1/x", withKey(owner.key))).status).toBe(200);
    expect((await admin("GET", `/customers/${owner.id}`)).body.auto_topup ?? null).toBeNull();
    // The session itself goes on: the refusals ended nothing.
    expect((await gateway("/portal", { headers: { cookie } })).status).toBe(200);
  });

  it("a session from the provider's link may create and revoke keys", async () => {
    const owner = await customerWithCredit(10);
    const cookie = await portalLinkSession(owner.id);
    const csrf = await portalCsrf(cookie);
    const created = await gateway("/portal/keys", formPost({ _csrf: csrf, name: "new" }, cookie));
    expect(created.status).toBe(201);
    const key = /payg_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}\.[0-9a-f]{32}/.exec(await created.text())![0];
    echoOrigin();
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    expect((await gateway(`/portal/keys/${owner.keyId}/revoke`, formPost({ _csrf: csrf }, cookie))).headers.get("location")).toBe("/portal?notice=key-revoked");
    expect((await gateway("/v1/x", withKey(owner.key))).status).toBe(401);
  });
});

describe("PORTAL.api_key_sign_in off (the default)", () => {
  it("/portal says to ask the provider for a link, a key sign-in is refused with that explanation, and a link still opens", async () => {
    const { id, key } = await customerWithCredit(10, { name: "Off Customer" });
    const page = await (await gatewayWith(keySignInOff, "/portal")).text();
    expect(page).toContain("Ask them for a link.");
    expect(page).not.toContain('name="key"');
    const refused = await gatewayWith(keySignInOff, "/portal/sign-in", formPost({ key }));
    expect(refused.status).toBe(403);
    expect(refused.headers.get("set-cookie")).toBeNull();
    expect(await refused.text()).toContain("Signing in with an API key is turned off here: ask your API provider for a link to your account.");
    const { url } = (await admin("POST", `/customers/${id}/portal-sessions`, {})).body;
    const token = new URL(url).searchParams.get("token")!;
    expect(await (await gatewayWith(keySignInOff, `/portal/enter?token=${token}`)).text()).toContain("Continue as Off Customer");
    const entered = await gatewayWith(keySignInOff, "/portal/enter", formPost({ token }));
    expect(entered.status).toBe(303);
    expect(await (await gatewayWith(keySignInOff, "/portal", { headers: { cookie: cookieOf(entered) } })).text()).toContain("Create key");
  });

  it("a key session opened while key sign-in was on ends once it is off", async () => {
    const { key } = await customerWithCredit(10);
    const cookie = await portalKeySession(key);
    const after = await gatewayWith(keySignInOff, "/portal", { headers: { cookie }, redirect: "manual" });
    expect(after.status).toBe(303);
    expect(after.headers.get("set-cookie")).toContain("Max-Age=0");
    const csrf = await portalCsrf(cookie);
    expect((await gatewayWith(keySignInOff, "/portal/top-up", formPost({ _csrf: csrf, amount_cents: "500" }, cookie))).status).toBe(401);
  });
});
