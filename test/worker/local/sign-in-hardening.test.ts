import { describe, expect, it } from "vitest";
import {
  admin,
  clientIp,
  cookieOf,
  customerWithCredit,
  echoOrigin,
  formPost,
  freshWindow,
  gateway,
  gatewayWith,
  legacyKey,
  objectExists,
  uniqueId,
  waitFor,
  withKey,
} from "../helpers";

const ORIGIN = "http://gateway.test";

describe("the portal sign-in checks a key as the proxy does", () => {
  it("ACCEPT_UNSIGNED_KEYS=false: a legacy unsigned key the proxy refuses cannot sign into the portal and mint a signed key", async () => {
    echoOrigin();
    const { id } = await customerWithCredit(5);
    const legacy = await legacyKey(id);
    const rotated = { ACCEPT_UNSIGNED_KEYS: "false" };
    // The proxy refuses the unsigned key after rotation (as documented)...
    expect((await gatewayWith(rotated, "/v1/x", withKey(legacy.key))).status).toBe(401);
    // ...but the portal signs in with it.
    const signIn = await gatewayWith(rotated, "/portal/sign-in", formPost({ key: legacy.key }));
    if (signIn.status === 303) {
      // Demonstrate the impact: the session mints a fresh signed key that the proxy accepts.
      const cookie = cookieOf(signIn);
      const page = await (await gatewayWith(rotated, "/portal", { headers: { cookie } })).text();
      const csrf = /name="_csrf" value="([0-9a-f]+)"/.exec(page)![1]!;
      const minted = await gatewayWith(rotated, "/portal/keys", formPost({ _csrf: csrf, name: "minted" }, cookie));
      const html = await minted.text();
      const newKey = /payg_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}\.[0-9a-f]{32}/.exec(html)?.[0];
      const proxied = newKey ? (await gatewayWith(rotated, "/v1/x", withKey(newKey))).status : null;
      expect({ signIn: signIn.status, minted: minted.status, proxiedWithMintedKey: proxied }).toEqual({ signIn: 401, minted: 401, proxiedWithMintedKey: null });
    }
    expect(signIn.status).toBe(401);
  });

  it("a portal sign-in with a made-up customer id (bad MAC) starts no Durable Object", async () => {
    const unknown = uniqueId("cus_forged_portal");
    const forged = `payg_${unknown}.${"P".repeat(43)}.${"0".repeat(32)}`;
    const response = await gateway("/portal/sign-in", formPost({ key: forged }));
    expect(response.status).toBe(401);
    // As on the proxy (api-keys.test.ts): refused at the worker.
    expect(await objectExists(unknown)).toBe(false);
  });
});

describe("portal links are signed", () => {
  it("a link with a made-up customer id starts no Durable Object", async () => {
    const unknown = uniqueId("cus_forged_link");
    expect((await gateway(`/portal/enter?token=${unknown}.${"L".repeat(43)}`)).status).toBe(410);
    expect((await gateway(`/portal/enter?token=${unknown}.${"L".repeat(43)}.${"0".repeat(32)}`)).status).toBe(410);
    expect(await objectExists(unknown)).toBe(false);
  });

  it("a link the admin API made is consumed once; the same token under another customer id opens nothing", async () => {
    const { id } = await customerWithCredit(1);
    const other = await customerWithCredit(1);
    const { url } = (await admin("POST", `/customers/${id}/portal-sessions`, {})).body as { url: string };
    const token = new URL(url).searchParams.get("token")!;
    expect(token.split(".")).toHaveLength(3);
    const swapped = `${other.id}${token.slice(token.indexOf("."))}`;
    expect((await gateway(`/portal/enter?token=${swapped}`)).status).toBe(410);
    expect((await gateway("/portal/enter", formPost({ token: swapped }))).status).toBe(410);
    expect((await gateway(`/portal/enter?token=${token}`)).status).toBe(200);
    expect((await gateway("/portal/enter", formPost({ token }))).status).toBe(303);
    expect((await gateway(`/portal/enter?token=${token}`)).status).toBe(410);
  });
});

describe("the live balance ends with its portal session", () => {
  it("revoking the key a portal session signed in with closes its live balance socket", async () => {
    const a = await customerWithCredit(50, { name: "Live Revoke" });
    const cookie = cookieOf(await gateway("/portal/sign-in", formPost({ key: a.key })));
    const response = await gateway("/portal/live", { headers: { upgrade: "websocket", cookie, origin: ORIGIN } });
    expect(response.status).toBe(101);
    const ws = response.webSocket!;
    const messages: { available_cents: number }[] = [];
    let closed: number | null = null;
    ws.addEventListener("message", (event) => {
      messages.push(JSON.parse(event.data as string));
    });
    ws.addEventListener("close", (event) => {
      closed = event.code;
    });
    ws.accept();
    await waitFor(() => messages.length === 1);

    expect((await admin("DELETE", `/customers/${a.id}/keys/${a.keyId}`)).status).toBe(204);
    await waitFor(() => closed !== null);
    expect(closed).toBe(4001);
    expect((await admin("POST", `/customers/${a.id}/credits`, { amount: 7, reason: "after revoke" })).status).toBe(201);
    await scheduler.wait(400);
    expect(messages).toHaveLength(1);
  });
});

describe("the live balance ends when its portal session signs out", () => {
  it("signing out closes that session's live socket in every tab, and only that session's", async () => {
    const a = await customerWithCredit(50, { name: "Live Sign-out" });
    const open = async (cookie: string) => {
      const response = await gateway("/portal/live", { headers: { upgrade: "websocket", cookie, origin: ORIGIN } });
      expect(response.status).toBe(101);
      const ws = response.webSocket!;
      const socket = { messages: [] as { available_cents: number }[], closed: null as number | null };
      ws.addEventListener("message", (event) => {
        socket.messages.push(JSON.parse(event.data as string));
      });
      ws.addEventListener("close", (event) => {
        socket.closed = event.code;
      });
      ws.accept();
      await waitFor(() => socket.messages.length === 1);
      return socket;
    };
    const cookie = cookieOf(await gateway("/portal/sign-in", formPost({ key: a.key })));
    const other = cookieOf(await gateway("/portal/sign-in", formPost({ key: a.key })));
    const [tab1, tab2, elsewhere] = [await open(cookie), await open(cookie), await open(other)];
    const csrf = /name="_csrf" value="([0-9a-f]+)"/.exec(await (await gateway("/portal", { headers: { cookie } })).text())![1]!;
    expect((await gateway("/portal/sign-out", formPost({ _csrf: csrf }, cookie))).status).toBe(303);
    await waitFor(() => tab1.closed !== null && tab2.closed !== null);
    expect([tab1.closed, tab2.closed]).toEqual([4001, 4001]);
    expect((await admin("POST", `/customers/${a.id}/credits`, { amount: 7, reason: "after sign-out" })).status).toBe(201);
    await waitFor(() => elsewhere.messages.at(-1)?.available_cents === 57);
    expect(elsewhere.closed).toBeNull();
    expect(tab1.messages).toHaveLength(1);
  });
});

describe("failed sign-ins count toward AUTH_FAILURE_LIMITER", () => {
  it("wrong admin tokens at the dashboard sign-in count toward AUTH_FAILURE_LIMITER like the admin API's", async () => {
    const ip = clientIp();
    await freshWindow();
    const statuses: number[] = [];
    for (let i = 0; i < 101; i++) {
      const r = await gateway("/dashboard/sign-in", formPost({ token: `wrong-token-${i}-0123456789` }, undefined, { "cf-connecting-ip": ip }));
      statuses.push(r.status);
    }
    // As on the admin API: the 101st failure from one address a minute is 429.
    expect(statuses.slice(0, 100).every((s) => s === 401)).toBe(true);
    expect(statuses.at(-1)).toBe(429);
  });
});
