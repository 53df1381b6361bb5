import { env } from "cloudflare:workers";
import { serializeSigned } from "hono/utils/cookie";
import { describe, expect, it } from "vitest";
import { getConfig } from "../../../src/lib/config";
import { sessionSecret } from "../../../src/web/session";
import { ADMIN_TOKEN, admin, cookieOf, customerStub, customerWithCredit, echoOrigin, formPost, gateway, portalKeySession, portalLinkSession, waitFor, withKey } from "../helpers";

const ORIGIN = "http://gateway.test";

async function signIn(): Promise<string> {
  const response = await gateway("/dashboard/sign-in", formPost({ token: ADMIN_TOKEN, next: "/dashboard" }));
  expect(response.status).toBe(303);
  return cookieOf(response);
}

async function csrfOf(path: string, cookie: string): Promise<string> {
  const html = await (await gateway(path, { headers: { cookie } })).text();
  return /name="_csrf" value="([0-9a-f]+)"/.exec(html)![1]!;
}

/** A cookie signed as the gateway signs its sessions, with a payload of the test's choosing. */
async function forgeSession(name: string, payload: object, secret?: string): Promise<string> {
  const key = secret ?? (await sessionSecret(getConfig(env), name === "payg_portal" ? "portal" : "admin"))!;
  const value = btoa(JSON.stringify(payload)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return (await serializeSigned(name, value, key)).split(";")[0]!;
}

describe("dashboard sessions", () => {
  it("signs in with the admin token into a signed, expiring, HttpOnly, SameSite=Strict cookie scoped to /dashboard", async () => {
    const response = await gateway("/dashboard/sign-in", formPost({ token: ADMIN_TOKEN, next: "/dashboard/customers" }));
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/dashboard/customers");
    const setCookie = response.headers.get("set-cookie")!;
    expect(setCookie).toMatch(/^payg_dashboard=[A-Za-z0-9_-]+\.[^;]+; Max-Age=28800; Path=\/dashboard; HttpOnly; Secure; SameSite=Strict$/);
    // Secure everywhere but on localhost (plain http in development).
    const local = await exportsFetch("http://127.0.0.1:8787/dashboard/sign-in", formPost({ token: ADMIN_TOKEN }, undefined, { origin: "http://127.0.0.1:8787" }));
    expect(local.headers.get("set-cookie")).toMatch(/; Path=\/dashboard; HttpOnly; SameSite=Strict$/);
  });

  it("a wrong token, an off-site next, a forged, expired or otherwise-signed cookie get no session", async () => {
    const wrong = await gateway("/dashboard/sign-in", formPost({ token: "wrong-token-0123456789" }));
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("set-cookie")).toBeNull();
    expect(await wrong.text()).toContain("That is not the admin token.");
    const offsite = await gateway("/dashboard/sign-in", formPost({ token: ADMIN_TOKEN, next: "//evil.example/x" }));
    expect(offsite.headers.get("location")).toBe("/dashboard");
    const csrf = "a".repeat(48);
    const sid = "b".repeat(48);
    const cases = [
      await forgeSession("payg_dashboard", { kind: "admin", exp: Date.now() - 1000, sid, csrf }),
      await forgeSession("payg_dashboard", { kind: "admin", exp: Date.now() + 3600_000, sid, csrf }, "some-other-secret-0123456789abcdef"),
      await forgeSession("payg_dashboard", { kind: "portal", customerId: "x", exp: Date.now() + 3600_000, sid, csrf }),
      // Signed, but without a session id: nothing could end it on the server.
      await forgeSession("payg_dashboard", { kind: "admin", exp: Date.now() + 3600_000, csrf }),
      "payg_dashboard=eyJraW5kIjoiYWRtaW4ifQ.AAAA",
    ];
    for (const cookie of cases) {
      const response = await gateway("/dashboard", { headers: { cookie }, redirect: "manual" });
      expect(response.status).toBe(303);
      expect(response.headers.get("location")).toBe("/dashboard/sign-in?next=%2Fdashboard");
    }
    const valid = await forgeSession("payg_dashboard", { kind: "admin", exp: Date.now() + 3600_000, sid, csrf });
    expect((await gateway("/dashboard", { headers: { cookie: valid } })).status).toBe(200);
  });

  it("every form needs the session's CSRF token and a same-origin request; a refused form changes nothing", async () => {
    const { id } = await customerWithCredit(10);
    const cookie = await signIn();
    const csrf = await csrfOf(`/dashboard/customers/${id}`, cookie);
    const grant = { amount: "5", reason: "test", idempotency_key: crypto.randomUUID() };
    const noToken = await gateway(`/dashboard/customers/${id}/credits`, formPost(grant, cookie));
    expect(noToken.status).toBe(403);
    expect(await noToken.text()).toContain("The form came from another site or has expired");
    const otherSite = await gateway(
      `/dashboard/customers/${id}/credits`,
      formPost({ ...grant, _csrf: csrf }, cookie, { origin: "https://evil.example", "sec-fetch-site": "cross-site" }),
    );
    expect(otherSite.status).toBe(403);
    const noSession = await gateway(`/dashboard/customers/${id}/credits`, formPost({ ...grant, _csrf: csrf }));
    expect(noSession.status).toBe(401);
    expect((await admin("GET", `/customers/${id}`)).body.balance.available_cents).toBe(10);
    const ok = await gateway(`/dashboard/customers/${id}/credits`, formPost({ ...grant, _csrf: csrf }, cookie));
    expect(ok.status).toBe(303);
    expect(ok.headers.get("location")).toBe(`/dashboard/customers/${id}?notice=credit-granted`);
    // The same form again (double submit): the idempotency key makes it a no-op.
    const again = await gateway(`/dashboard/customers/${id}/credits`, formPost({ ...grant, _csrf: csrf }, cookie));
    expect(again.headers.get("location")).toBe(`/dashboard/customers/${id}?notice=credit-repeated`);
    expect((await admin("GET", `/customers/${id}`)).body.balance.available_cents).toBe(15);
    // A fractional amount is refused with a friendly page, and changes nothing.
    const fraction = await gateway(`/dashboard/customers/${id}/credits`, formPost({ ...grant, amount: "1.5", idempotency_key: "k2", _csrf: csrf }, cookie));
    expect(fraction.status).toBe(400);
    expect(fraction.headers.get("content-type")).toContain("text/html");
    expect((await admin("GET", `/customers/${id}`)).body.balance.available_cents).toBe(15);
  });

  it("signing out ends the session on the server: a copy of its cookie kept from before opens nothing", async () => {
    const cookie = await signIn();
    const other = await signIn();
    const csrf = await csrfOf("/dashboard", cookie);
    const signOut = await gateway("/dashboard/sign-out", formPost({ _csrf: csrf }, cookie));
    expect(signOut.status).toBe(303);
    expect(signOut.headers.get("location")).toBe("/dashboard/sign-in");
    expect(signOut.headers.get("set-cookie")).toContain("Max-Age=0");
    // The browser forgets the cookie; whoever copied it gets the sign-in page, and no form goes through.
    const replayed = await gateway("/dashboard", { headers: { cookie }, redirect: "manual" });
    expect(replayed.status).toBe(303);
    expect(replayed.headers.get("location")).toBe("/dashboard/sign-in?next=%2Fdashboard");
    const { id } = await customerWithCredit(10);
    const grant = await gateway(`/dashboard/customers/${id}/credits`, formPost({ amount: "5", reason: "replayed", idempotency_key: crypto.randomUUID(), _csrf: csrf }, cookie));
    expect(grant.status).toBe(401);
    expect((await admin("GET", `/customers/${id}`)).body.balance.available_cents).toBe(10);
    const socket = await gateway(`/dashboard/customers/${id}/live`, { headers: { upgrade: "websocket", cookie, origin: ORIGIN } });
    expect(socket.status).toBe(401);
    // Only that session ended: another one, signed in separately, still works.
    expect((await gateway("/dashboard", { headers: { cookie: other } })).status).toBe(200);
  });

  it("pages have friendly HTML errors, a strict CSP and no caching; the JSON API keeps the house error format", async () => {
    const cookie = await signIn();
    const missing = await gateway("/dashboard/customers/cus_never_seen_here", { headers: { cookie } });
    expect(missing.status).toBe(404);
    expect(missing.headers.get("content-type")).toContain("text/html");
    expect(missing.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(missing.headers.get("cache-control")).toBe("no-store");
    const body = await missing.text();
    expect(body.startsWith("<!DOCTYPE html>")).toBe(true);
    expect(body).toContain("No customer cus_never_seen_here.");
    const json = await gateway("/admin/nope", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(((await json.json()) as any).error).toMatchObject({ code: "not_found", requestId: expect.any(String) });
    const socket = await gateway("/dashboard/customers/x/live", { headers: { upgrade: "websocket", origin: ORIGIN } });
    expect(socket.status).toBe(401);
    expect(((await socket.json()) as any).error.code).toBe("unauthorized");
  });
});

describe("portal sessions", () => {
  it("a portal link opens a confirmation naming the account; its same-origin form consumes the link and sets a portal cookie for that customer only", async () => {
    const { id } = await customerWithCredit(42, { name: "Link Customer", email: "link@example.com" });
    const { url } = (await admin("POST", `/customers/${id}/portal-sessions`, {})).body;
    const path = new URL(url).pathname + new URL(url).search;
    const token = new URL(url).searchParams.get("token")!;
    // Opening the link (a person, or a mail system's link scanner) signs nobody in and uses nothing up.
    for (let i = 0; i < 2; i++) {
      const opened = await gateway(path, { headers: { "sec-fetch-site": "same-origin" } });
      expect(opened.status).toBe(200);
      expect(opened.headers.get("set-cookie")).toBeNull();
      const html = await opened.text();
      expect(html).toContain("Continue as Link Customer, link@example.com");
      expect(html).not.toContain("$0.42");
    }
    const entered = await gateway("/portal/enter", formPost({ token }));
    expect(entered.status).toBe(303);
    expect(entered.headers.get("location")).toBe("/portal");
    const setCookie = entered.headers.get("set-cookie")!;
    expect(setCookie).toMatch(/^payg_portal=.+; Max-Age=7200; Path=\/portal; HttpOnly; Secure; SameSite=Strict$/);
    const page = await (await gateway("/portal", { headers: { cookie: setCookie.split(";")[0]! } })).text();
    expect(page).toContain("Link Customer");
    expect(page).toContain("$0.42");
    // Used: neither the link nor its form opens again.
    expect((await gateway(path)).status).toBe(410);
    const again = await gateway("/portal/enter", formPost({ token }));
    expect(again.status).toBe(410);
    expect(again.headers.get("set-cookie")).toBeNull();
  });

  it("a link's form sent from another site, or with no origin at all, is refused and leaves the link unused", async () => {
    const { id } = await customerWithCredit(1, { name: "Cross Site" });
    const { url } = (await admin("POST", `/customers/${id}/portal-sessions`, {})).body;
    const token = new URL(url).searchParams.get("token")!;
    const attempts: Record<string, string>[] = [
      { origin: "https://evil.example", "sec-fetch-site": "cross-site" },
      { origin: "https://evil.example", "sec-fetch-site": "same-site" },
      { origin: "null" },
    ];
    for (const headers of attempts) {
      const refused = await gateway("/portal/enter", formPost({ token }, undefined, headers));
      expect(refused.status).toBe(403);
      expect(refused.headers.get("set-cookie")).toBeNull();
    }
    const bare = await gateway("/portal/enter", { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded" }, body: `token=${token}` });
    expect(bare.status).toBe(403);
    expect(await (await gateway(new URL(url).pathname + new URL(url).search)).text()).toContain("Continue as Cross Site");
    expect((await gateway("/portal/enter", formPost({ token }))).status).toBe(303);
  });

  it("an expired link, a link of another customer's id with this token, or a made-up token opens nothing", async () => {
    const a = await customerWithCredit(1);
    const b = await customerWithCredit(1);
    const expired = await customerStub(a.id).createPortalLink(Date.now() - 1);
    expect((await gateway(`/portal/enter?token=${expired}`)).status).toBe(410);
    const live = (await admin("POST", `/customers/${a.id}/portal-sessions`, {})).body.url as string;
    const token = new URL(live).searchParams.get("token")!;
    expect((await gateway(`/portal/enter?token=${b.id}${token.slice(a.id.length)}`)).status).toBe(410);
    expect((await gateway(`/portal/enter?token=${a.id}.${"x".repeat(43)}`)).status).toBe(410);
    expect((await gateway("/portal/enter")).status).toBe(410);
    for (const bad of [expired, `${b.id}${token.slice(a.id.length)}`, `${a.id}.${"x".repeat(43)}`, ""]) {
      expect((await gateway("/portal/enter", formPost({ token: bad! }))).status).toBe(410);
    }
    // The real one still opens (the failed tries did not consume it).
    expect((await gateway(`/portal/enter?token=${token}`)).status).toBe(200);
    expect((await gateway("/portal/enter", formPost({ token }))).status).toBe(303);
  });

  it("a portal session for one customer cannot read or change another's data, whatever the URL or form says", async () => {
    echoOrigin();
    const a = await customerWithCredit(30, { name: "Alice Portal" });
    const b = await customerWithCredit(70, { name: "Bob Portal" });
    // The owner's session (from a link) may revoke keys: only its own customer's.
    const cookie = await portalLinkSession(a.id);
    const page = await (await gateway(`/portal?customer=${b.id}&customer_id=${b.id}`, { headers: { cookie } })).text();
    expect(page).toContain("Alice Portal");
    expect(page).not.toContain("Bob Portal");
    const csrf = /name="_csrf" value="([0-9a-f]+)"/.exec(page)![1]!;
    const revoke = await gateway(`/portal/keys/${b.keyId}/revoke`, formPost({ _csrf: csrf, customer_id: b.id }, cookie));
    expect(revoke.status).toBe(404);
    expect((await gateway("/v1/x", withKey(b.key))).status).toBe(200);
    // The dashboard and the admin API do not take a portal session.
    expect((await gateway(`/dashboard/customers/${b.id}`, { headers: { cookie }, redirect: "manual" })).status).toBe(303);
    expect((await gateway(`/admin/customers/${b.id}`, { headers: { cookie } })).status).toBe(401);
  });

  it("a portal session signed in with an API key ends when that key is revoked", async () => {
    const a = await customerWithCredit(30, { name: "Alice Key" });
    const cookie = await portalKeySession(a.key);
    expect((await gateway("/portal", { headers: { cookie } })).status).toBe(200);
    expect((await admin("DELETE", `/customers/${a.id}/keys/${a.keyId}`)).status).toBe(204);
    const after = await gateway("/portal", { headers: { cookie }, redirect: "manual" });
    expect(after.status).toBe(303);
    expect(after.headers.get("set-cookie")).toContain("Max-Age=0");
  });

  it("signing out of the portal ends that session on the server, and the customer's object keeps only unexpired ends", async () => {
    echoOrigin();
    const { id, key, keyId } = await customerWithCredit(25);
    const cookie = cookieOf(await gateway("/portal/sign-in", formPost({ key })));
    const other = cookieOf(await gateway("/portal/sign-in", formPost({ key })));
    const csrf = /name="_csrf" value="([0-9a-f]+)"/.exec(await (await gateway("/portal", { headers: { cookie } })).text())![1]!;
    const signOut = await gateway("/portal/sign-out", formPost({ _csrf: csrf }, cookie));
    expect(signOut.status).toBe(303);
    expect(signOut.headers.get("location")).toBe("/portal");
    const replayed = await gateway("/portal", { headers: { cookie }, redirect: "manual" });
    expect(replayed.status).toBe(303);
    expect(replayed.headers.get("set-cookie")).toContain("Max-Age=0");
    const revoke = await gateway(`/portal/keys/${keyId}/revoke`, formPost({ _csrf: csrf }, cookie));
    expect(revoke.status).toBe(401);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    expect((await gateway("/portal", { headers: { cookie: other } })).status).toBe(200);
    // One row per signed-out session, dropped once that session would have expired anyway.
    const stub = customerStub(id);
    expect((await stub.storageStats())!.tables.ended_sessions).toBe(1);
    await stub.endPortalSession({ sid: "soon", expiresAt: Date.now() + 20 });
    expect((await stub.storageStats())!.tables.ended_sessions).toBe(2);
    await new Promise((r) => setTimeout(r, 40));
    await stub.endPortalSession({ sid: "later", expiresAt: Date.now() + 3600_000 });
    expect((await stub.storageStats())!.tables.ended_sessions).toBe(2);
    await stub.endPortalSession({ sid: "already-expired", expiresAt: Date.now() - 1 });
    expect((await stub.storageStats())!.tables.ended_sessions).toBe(2);
  });

  it("Top up with Stripe off explains that the provider grants credit, and creates no Checkout session", async () => {
    const { key } = await customerWithCredit(5);
    const cookie = cookieOf(await gateway("/portal/sign-in", formPost({ key })));
    const csrf = /name="_csrf" value="([0-9a-f]+)"/.exec(await (await gateway("/portal", { headers: { cookie } })).text())![1]!;
    const topUp = await gateway("/portal/top-up", formPost({ _csrf: csrf, amount_cents: "500" }, cookie));
    expect(topUp.headers.get("location")).toBe("/portal?notice=topup-unavailable");
    expect(await (await gateway("/portal?notice=topup-unavailable", { headers: { cookie } })).text()).toContain("your credit is granted by your API provider");
  });
});

describe("live balance over a hibernating WebSocket", () => {
  it("pushes the balance on every change, throttled, ending on the latest value; only to a signed-in page of this origin", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(50);
    const cookie = await signIn();
    expect((await gateway(`/dashboard/customers/${id}/live`, { headers: { upgrade: "websocket", cookie, origin: "https://evil.example" } })).status).toBe(400);
    const response = await gateway(`/dashboard/customers/${id}/live`, { headers: { upgrade: "websocket", cookie, origin: ORIGIN } });
    expect(response.status).toBe(101);
    const ws = response.webSocket!;
    const messages: { available: string; available_cents: number }[] = [];
    ws.addEventListener("message", (event) => {
      messages.push(JSON.parse(event.data as string));
    });
    ws.accept();
    await waitFor(() => messages.length === 1);
    expect(messages[0]).toMatchObject({ available: "$0.50", available_cents: 50 });
    const started = Date.now();
    await Promise.all(Array.from({ length: 20 }, () => gateway("/v1/x", withKey(key))));
    await waitFor(() => messages.at(-1)?.available_cents === 30);
    await new Promise((r) => setTimeout(r, 400));
    const pushes = messages.length - 1;
    // Throttled: at most one push per 250 ms (plus the first), never one per request.
    expect(pushes).toBeLessThanOrEqual(2 + Math.ceil((Date.now() - started) / 250));
    expect(pushes).toBeLessThan(20);
    expect(messages.at(-1)).toMatchObject({ available: "$0.30", available_cents: 30 });
    ws.close(1000, "done");
  });
});

async function exportsFetch(url: string, init: RequestInit): Promise<Response> {
  const { exports } = await import("cloudflare:workers");
  return exports.default.fetch(new Request(url, init));
}
