import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { ADMIN_TOKEN, type Gateway, serveHandler, startGateway } from "../e2e/harness";
import { BROWSER, checkPage, expectLoadError, launchBrowser, openTab, type Tab, waitForText } from "./browser";

/** No browser on this machine: every test below is skipped (npm test prints why, once). */
const noBrowser = BROWSER.kind === "none";

let gateway: Gateway;
let origin: Awaited<ReturnType<typeof startDemoOrigin>>;
let browser: Browser;
/** The operator's signed-in tab, shared by the dashboard tests in order. */
let operator: Tab;
const keys: Record<string, { key: string; id: string }> = {};

async function customer(id: string, name: string, cents: number) {
  expect((await gateway.admin("PUT", `/customers/${id}`, { email: `${id.slice(4)}@example.com`, name })).status).toBe(201);
  const key = await gateway.admin("POST", `/customers/${id}/keys`, { name: "server" });
  expect((await gateway.admin("POST", `/customers/${id}/credits`, { amount: cents, reason: "welcome credit" })).status).toBe(201);
  keys[id] = { key: key.body.key, id: key.body.id };
}

const call = (key: string, path = "/v1/hello") => gateway.fetch(path, { headers: { authorization: `Bearer ${key}` } });

beforeAll(async () => {
  if (noBrowser) return;
  origin = await startDemoOrigin({ port: 0 });
  // Rollups every second instead of every minute, so the overview catches up within the test.
  // Key sign-in to the portal on, as npm start has it (PORTAL.api_key_sign_in).
  gateway = await startGateway({ vars: { ORIGIN_URL: origin.url, ROLLUP_INTERVAL_SECONDS: "1", PORTAL: JSON.stringify({ api_key_sign_in: true }) } });
  browser = await launchBrowser();
  await customer("cus_ada", "Ada Lovelace", 90);
  await customer("cus_bob", "Bob Babbage", 500);
  for (let i = 0; i < 4; i++) expect((await call(keys.cus_ada!.key)).status).toBe(200);
  expect((await call(keys.cus_bob!.key, "/health")).status).toBe(200);
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await gateway?.stop();
  await origin?.close();
});

describe.skipIf(noBrowser)("operator dashboard in Chromium", () => {
  it("signs in with the admin token into a signed, HttpOnly, SameSite=Strict session cookie", async () => {
    operator = await openTab(browser, { timezoneId: "Asia/Tokyo" });
    const { page, context } = operator;
    await page.goto(`${gateway.url}/dashboard`);
    expect(new URL(page.url()).pathname).toBe("/dashboard/sign-in");
    await checkPage(operator, "dashboard-sign-in");
    await page.getByLabel("Admin token").fill("not-the-token-at-all");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByRole("alert").textContent()).resolves.toContain("not the admin token");
    expect(await context.cookies()).toEqual([]);
    expectLoadError(operator, 401);
    await page.getByLabel("Admin token").fill(ADMIN_TOKEN);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Overview", level: 1 }).waitFor();
    const [cookie] = await context.cookies();
    expect(cookie).toMatchObject({ name: "payg_dashboard", path: "/dashboard", httpOnly: true, sameSite: "Strict", secure: false });
    expect(cookie!.expires * 1000).toBeGreaterThan(Date.now() + 3600_000);
  });

  it("overview: customers per cohort, credit outstanding, usage per meter per hour as charts, report and email health", async () => {
    const { page } = operator;
    // The customers' rollups arrive within a second or two (ROLLUP_INTERVAL_SECONDS=1 here).
    for (let i = 0; i < 30; i++) {
      await page.goto(`${gateway.url}/dashboard`);
      if ((await page.getByTestId("outstanding").textContent()) === "$5.86") break;
      await page.waitForTimeout(500);
    }
    expect(await page.getByTestId("outstanding").textContent()).toBe("$5.86");
    const cohorts = page.locator("#cohorts");
    await expect(cohorts.getByRole("row", { name: /low_balance 1/ }).count()).resolves.toBe(1);
    const meters = page.locator("#meters");
    expect(await meters.getByRole("row", { name: /api_requests/ }).textContent()).toContain("$0.04");
    expect(await meters.getByRole("row", { name: /health/ }).count()).toBe(1);
    await page.locator("[data-chart='requests-24'] canvas").first().waitFor();
    expect(await page.locator(".chart-canvas canvas").count()).toBeGreaterThanOrEqual(4);
    expect(await page.locator(".stats").textContent()).toMatch(/Emails failed \/ unknown0 \/ 0/);
    // Keyboard: the first Tab reaches the skip link, with a visible focus ring; Enter moves to the content.
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => {
      const el = document.activeElement as HTMLElement;
      const style = getComputedStyle(el);
      return { text: el.textContent, outline: style.outlineStyle, width: style.outlineWidth };
    });
    expect(focused).toEqual({ text: "Skip to content", outline: "solid", width: "3px" });
    await page.keyboard.press("Enter");
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("main");
    await checkPage(operator, "dashboard-overview");
  });

  it("finds a customer by name in the searchable list, with balance, plan, cohorts and last activity", async () => {
    const { page } = operator;
    await page.getByRole("link", { name: "Customers" }).click();
    await page.waitForURL(/\/dashboard\/customers$/);
    await page.getByRole("searchbox", { name: /Search customers/ }).fill("lovelace");
    await page.getByRole("button", { name: "Search" }).click();
    await page.waitForURL(/q=lovelace/);
    const rows = page.locator("#customers tbody tr");
    expect(await rows.count()).toBe(1);
    const row = await rows.first().textContent();
    expect(row).toContain("Ada Lovelace");
    expect(row).toContain("$0.86");
    expect(row).toContain("prepaid");
    expect(row).toContain("low_balance");
    expect(await rows.first().locator("time").count()).toBe(1);
    await checkPage(operator, "dashboard-customers");
    await page.getByRole("searchbox", { name: /Search customers/ }).fill("bob@example");
    await page.getByRole("button", { name: "Search" }).click();
    await page.waitForURL(/q=bob/);
    expect(await page.locator("#customers tbody tr").allTextContents()).toEqual([expect.stringContaining("Bob Babbage")]);
    await page.getByRole("searchbox", { name: /Search customers/ }).fill("ada");
    await page.getByRole("button", { name: "Search" }).click();
    await page.waitForURL(/q=ada/);
    await page.getByRole("link", { name: "Ada Lovelace" }).click();
    await page.getByRole("heading", { name: "Ada Lovelace", level: 1 }).waitFor();
  });

  it("grants credit through the form; the balance changes, and a double submit grants once", async () => {
    const { page } = operator;
    await waitForText(page, "[data-balance]", "$0.86");
    const form = page.locator("form", { has: page.getByRole("button", { name: "Grant credit" }) });
    const fields = { idempotency_key: await form.locator("[name=idempotency_key]").inputValue(), _csrf: await form.locator("[name=_csrf]").inputValue() };
    await page.getByLabel("Amount (cents)").fill("25");
    await page.getByLabel("Reason").fill("goodwill");
    // Submitted from the keyboard.
    await page.getByLabel("Reason").press("Enter");
    await page.getByText("Credit granted.").waitFor();
    await waitForText(page, "[data-balance]", "$1.11");
    // The same form sent again (a double click that got through): same idempotency key, nothing changes.
    const again = await page.request.post(`${page.url().split("?")[0]}/credits`, {
      form: { ...fields, amount: "25", reason: "goodwill" },
      headers: { origin: gateway.url },
    });
    expect(new URL(again.url()).searchParams.get("notice")).toBe("credit-repeated");
    expect((await gateway.admin("GET", "/customers/cus_ada")).body.balance.available_cents).toBe(111);
    // Without the session's CSRF token the form is refused and nothing changes.
    const forged = await page.request.post(`${page.url().split("?")[0]}/credits`, {
      form: { idempotency_key: "forged-1", _csrf: "nope", amount: "1000", reason: "forged" },
      headers: { origin: gateway.url },
    });
    expect(forged.status()).toBe(403);
    expect((await gateway.admin("GET", "/customers/cus_ada")).body.balance.available_cents).toBe(111);
  });

  it("the balance changes live, with no reload and no polling, as requests are made with the customer's key", async () => {
    const { page } = operator;
    await page.goto(`${gateway.url}/dashboard/customers/cus_ada`);
    await page.waitForSelector("[data-live-url][data-live-state=open]");
    await page.evaluate(() => ((window as unknown as { marker: string }).marker = "same page"));
    const requests: string[] = [];
    page.on("request", (request) => requests.push(request.url()));
    for (const expected of ["$1.10", "$1.09", "$1.08"]) {
      expect((await call(keys.cus_ada!.key)).status).toBe(200);
      await waitForText(page, "[data-balance]", expected);
    }
    // A burst: the throttled pushes always end on the latest balance.
    await Promise.all(Array.from({ length: 20 }, () => call(keys.cus_ada!.key)));
    await waitForText(page, "[data-balance]", "$0.88");
    expect(await page.evaluate(() => (window as unknown as { marker: string }).marker)).toBe("same page");
    expect(requests).toEqual([]);
    // Times are shown in the viewer's time zone (this context is in Tokyo).
    const time = page.locator("time[data-local]").first();
    const iso = await time.getAttribute("datetime");
    const tokyo = new Intl.DateTimeFormat("en-US", { dateStyle: "medium", timeStyle: "short", timeZone: "Asia/Tokyo" }).format(new Date(iso!));
    expect(await time.textContent()).toBe(tokyo);
    await page.locator("[data-chart^='requests-'] canvas").first().waitFor();
    await checkPage(operator, "dashboard-customer");
  });

  it("creates a key (shown once), revokes a key, and the next request with it is refused", async () => {
    const { page } = operator;
    await page.getByLabel("Key name").first().fill("ci");
    await page.getByRole("button", { name: "Create key" }).click();
    const created = (await page.locator("#one-time-secret").textContent())!.trim();
    expect(created).toMatch(/^payg_cus_ada\./);
    expect((await call(created)).status).toBe(200);
    await checkPage(operator, "dashboard-new-key");
    await page.getByRole("link", { name: "Back to the customer" }).click();
    expect((await call(keys.cus_ada!.key)).status).toBe(200);
    await page.getByRole("button", { name: `Revoke key ${keys.cus_ada!.key.slice(0, keys.cus_ada!.key.indexOf(".") + 5)}` }).click();
    await page.getByText("Key revoked").waitFor();
    const refused = await call(keys.cus_ada!.key);
    expect(refused.status).toBe(401);
    expect((await refused.json()).error.code).toBe("invalid_api_key");
    expect((await call(created)).status).toBe(200);
  });

  it("a cohort page lists its members", async () => {
    const { page } = operator;
    await page.goto(`${gateway.url}/dashboard/cohorts/low_balance`);
    expect(await page.locator("#members tbody tr").allTextContents()).toEqual([expect.stringContaining("Ada Lovelace")]);
    await checkPage(operator, "dashboard-cohort");
    await page.goto(`${gateway.url}/dashboard/no-such-page`);
    await page.getByRole("heading", { name: "Page not found" }).waitFor();
    expectLoadError(operator, 404);
    await checkPage(operator, "dashboard-not-found");
  });
  it("a tokens meter's usage is charted per model row, tokens and charges", async () => {
    // Tokens by model (the shipped chat_tokens meter), on a customer of its own so the other pages' sums stay round.
    await customer("cus_cyd", "Cyd Charisse", 500);
    for (const model of ["gpt-4o-mini", "o4-mini-2025-04-16"]) {
      const chat = await gateway.fetch("/v1/chat/completions", {
        method: "POST",
        headers: { authorization: `Bearer ${keys.cus_cyd!.key}`, "content-type": "application/json" },
        body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
      });
      expect(chat.status).toBe(200);
    }
    const { page } = operator;
    await page.goto(`${gateway.url}/dashboard/customers/cus_cyd`);
    for (const chart of ["tokens-chat_tokens", "model-charges-chat_tokens"]) {
      const legend = page.locator(`[data-chart='${chart}'] .u-legend`);
      await legend.waitFor();
      const text = await legend.textContent();
      expect(text).toContain("gpt-4o-mini*");
      expect(text).toContain("o4-mini*");
    }
    // The customer sees the same split in the portal.
    const link = await gateway.admin("POST", "/customers/cus_cyd/portal-sessions", {});
    const cyd = await openTab(browser);
    await cyd.page.goto(link.body.url);
    await cyd.page.getByRole("button", { name: "Continue as Cyd Charisse, cyd@example.com" }).click();
    const legend = cyd.page.locator("[data-chart=portal-tokens] .u-legend");
    await legend.waitFor();
    expect(await legend.textContent()).toMatch(/gpt-4o-mini\*.*o4-mini\*/s);
    await cyd.context.close();
  });
});

describe.skipIf(noBrowser)("customer portal in Chromium", () => {
  let ada: Tab;

  it("a one-time portal link names the account and opens only from its own page: opening it consumes nothing, a cross-site form is refused", async () => {
    const link = await gateway.admin("POST", "/customers/cus_ada/portal-sessions", {});
    expect(link.status).toBe(201);
    expect(link.body.expires_at).toBeGreaterThan(Date.now());
    ada = await openTab(browser);
    const { page, context } = ada;
    // Opened twice (a mail system's link scanner, then the customer): the same confirmation, no session.
    for (let i = 0; i < 2; i++) {
      await page.goto(link.body.url);
      await page.getByRole("button", { name: "Continue as Ada Lovelace, ada@example.com" }).waitFor();
      expect(await context.cookies()).toEqual([]);
    }
    await checkPage(ada, "portal-confirm-link");
    // Another site (localhost is another site than 127.0.0.1) posts the link's form: refused by the
    // csrf middleware, no session, and the link still opens for its customer.
    const token = new URL(link.body.url).searchParams.get("token")!;
    const attacker = await serveHandler(
      async () =>
        new Response(`<!DOCTYPE html><form method="post" action="${gateway.url}/portal/enter"><input name="token" value="${token}"><button>Go</button></form>`, {
          headers: { "content-type": "text/html" },
        }),
    );
    const victim = await openTab(browser);
    await victim.page.goto(attacker.url.replace("127.0.0.1", "localhost"));
    const [refused] = await Promise.all([victim.page.waitForResponse(`${gateway.url}/portal/enter`), victim.page.getByRole("button", { name: "Go" }).click()]);
    expect(refused.status()).toBe(403);
    const sent = await refused.request().allHeaders();
    expect([sent.origin, sent["sec-fetch-site"]]).toEqual([attacker.url.replace("127.0.0.1", "localhost"), "cross-site"]);
    expect(await victim.context.cookies()).toEqual([]);
    await victim.context.close();
    await attacker.close();
    // Its own page's button signs in (a same-origin POST), and the portal opens at /portal.
    await page.getByRole("button", { name: "Continue as Ada Lovelace, ada@example.com" }).click();
    await page.getByRole("heading", { name: "Ada Lovelace", level: 1 }).waitFor();
    expect(new URL(page.url()).pathname).toBe("/portal");
    expect(new URL(page.url()).search).toBe("");
    await page.waitForSelector("[data-live-url][data-live-state=open]");
    const balance = (await gateway.admin("GET", "/customers/cus_ada")).body.balance.available as string;
    await waitForText(page, "[data-balance]", balance);
    await page.locator("[data-chart=portal-usage] canvas").waitFor();
    expect(await page.locator("#charges").textContent()).toContain("api_requests");
    // The owner's session lists the top-ups (none here: Stripe is off, credit came from the provider).
    await page.getByRole("heading", { name: "Top-ups", level: 2 }).waitFor();
    expect(await page.locator("section[aria-labelledby=topups-h]").textContent()).toContain("No top-ups yet.");
    expect((await context.cookies()).map((c) => [c.name, c.path, c.httpOnly, c.sameSite])).toEqual([["payg_portal", "/portal", true, "Strict"]]);
    await checkPage(ada, "portal");
    const fresh = (await gateway.admin("POST", "/customers/cus_ada/keys", { name: "live" })).body.key as string;
    expect((await call(fresh)).status).toBe(200);
    const after = (await gateway.admin("GET", "/customers/cus_ada")).body.balance.available as string;
    await waitForText(page, "[data-balance]", after);
    // The link was consumed: a second visit (another browser) gets an explanation, not a session.
    const other = await openTab(browser);
    await other.page.goto(link.body.url);
    await other.page.getByRole("heading", { name: "This link has expired" }).waitFor();
    expectLoadError(other, 410);
    expect(await other.context.cookies()).toEqual([]);
    await other.context.close();
  });

  it("Top up with Stripe off explains that credit is granted by the provider", async () => {
    const { page } = ada;
    await page.getByRole("button", { name: "Top up" }).click();
    await page.getByText("your credit is granted by your API provider").waitFor();
  });

  it("another customer's data is unreachable from a portal session", async () => {
    const { page, context } = ada;
    const bobKeys = (await gateway.admin("GET", "/customers/cus_bob/keys")).body.keys as { id: string }[];
    // The portal takes the customer from the session only: a customer in the URL changes nothing.
    await page.goto(`${gateway.url}/portal?customer=cus_bob&customer_id=cus_bob`);
    expect(await page.locator("h1").textContent()).toBe("Ada Lovelace");
    expect(await page.content()).not.toContain("Bob");
    // Revoking Bob's key id from Ada's session finds nothing in Ada's object.
    const csrf = await page.locator("[name=_csrf]").first().inputValue();
    const revoke = await page.request.post(`${gateway.url}/portal/keys/${bobKeys[0]!.id}/revoke`, { form: { _csrf: csrf }, headers: { origin: gateway.url } });
    expect(revoke.status()).toBe(404);
    expect((await call(keys.cus_bob!.key)).status).toBe(200);
    // Neither the dashboard nor the admin API accepts the portal session.
    expect((await page.request.get(`${gateway.url}/admin/customers/cus_bob`)).status()).toBe(401);
    await page.goto(`${gateway.url}/dashboard/customers/cus_bob`);
    expect(new URL(page.url()).pathname).toBe("/dashboard/sign-in");
    // The live socket carries Ada's balance, whatever is asked.
    const pushed = await page.evaluate(
      (url) =>
        new Promise<string>((resolve, reject) => {
          const ws = new WebSocket(url);
          ws.onmessage = (e) => resolve(JSON.parse(e.data).available);
          ws.onerror = () => reject(new Error("socket failed"));
        }),
      `${gateway.url.replace("http", "ws")}/portal/live?customer=cus_bob`,
    );
    expect(pushed).toBe((await gateway.admin("GET", "/customers/cus_ada")).body.balance.available);
    // A session cookie edited to name Bob fails its signature: signed out, not Bob.
    const [cookie] = await context.cookies();
    const [payload, signature] = decodeURIComponent(cookie!.value).split(".");
    const forged = Buffer.from(Buffer.from(payload!, "base64url").toString().replace("cus_ada", "cus_bob")).toString("base64url");
    await context.addCookies([{ ...cookie!, value: encodeURIComponent(`${forged}.${signature}`) }]);
    await page.goto(`${gateway.url}/portal`);
    await page.getByLabel("API key").waitFor();
    expect(await page.content()).not.toContain("Bob Babbage");
  });

  it("a customer may sign in with an API key (the quick start): it sees its own account and that key, and cannot manage keys", async () => {
    const bob = await openTab(browser);
    await bob.page.goto(`${gateway.url}/portal`);
    await checkPage(bob, "portal-sign-in");
    await bob.page.getByLabel("API key").fill(keys.cus_ada!.key);
    await bob.page.getByRole("button", { name: "Sign in" }).click();
    await bob.page.getByText("That API key is not valid.").waitFor();
    expectLoadError(bob, 401);
    await bob.page.getByLabel("API key").fill(keys.cus_bob!.key);
    await bob.page.getByRole("button", { name: "Sign in" }).click();
    await bob.page.getByRole("heading", { name: "Bob Babbage", level: 1 }).waitFor();
    expect(await bob.page.content()).not.toContain("Ada");
    await bob.page.getByText("You signed in with an API key").waitFor();
    expect(await bob.page.locator("#keys tbody tr").count()).toBe(1);
    expect(await bob.page.getByRole("button", { name: "Create key" }).count()).toBe(0);
    expect(await bob.page.getByRole("button", { name: /^Revoke/ }).count()).toBe(0);
    // A key's session sees no top-ups, invoices or receipts.
    expect(await bob.page.getByRole("heading", { name: "Top-ups" }).count()).toBe(0);
    // Sent anyway, the server refuses it with the portal's page.
    const csrf = await bob.page.locator("[name=_csrf]").first().inputValue();
    const minted = await bob.page.request.post(`${gateway.url}/portal/keys`, { form: { _csrf: csrf, name: "more" }, headers: { origin: gateway.url } });
    expect(minted.status()).toBe(403);
    expect((await gateway.admin("GET", "/customers/cus_bob/keys")).body.keys).toHaveLength(1);
    expect(bob.errors).toEqual([]);
    await bob.context.close();
  });

  it("Sign out ends the session on the server: a copy of the cookie taken before opens nothing", async () => {
    const bob = await openTab(browser);
    await bob.page.goto(`${gateway.url}/portal`);
    await bob.page.getByLabel("API key").fill(keys.cus_bob!.key);
    await bob.page.getByRole("button", { name: "Sign in" }).click();
    await bob.page.getByRole("heading", { name: "Bob Babbage", level: 1 }).waitFor();
    const tabs = [
      { tab: operator, path: "/dashboard", heading: "Overview", signIn: "/dashboard/sign-in" },
      { tab: bob, path: "/portal", heading: "Bob Babbage", signIn: "/portal" },
    ];
    for (const { tab, path, heading, signIn } of tabs) {
      await tab.page.goto(`${gateway.url}${path}`);
      await tab.page.getByRole("heading", { name: heading, level: 1 }).waitFor();
      const copied = await tab.context.cookies();
      expect(copied).toHaveLength(1);
      await tab.page.getByRole("button", { name: "Sign out" }).click();
      await tab.page.getByRole("button", { name: "Sign in" }).waitFor();
      expect(new URL(tab.page.url()).pathname).toBe(signIn);
      expect(await tab.context.cookies()).toEqual([]);
      // Someone who kept the cookie puts it back: the page is the sign-in form, not the account.
      await tab.context.addCookies(copied);
      await tab.page.goto(`${gateway.url}${path}`);
      await tab.page.getByRole("button", { name: "Sign in" }).waitFor();
      expect(await tab.page.getByRole("heading", { name: heading, level: 1 }).count()).toBe(0);
      expect(tab.errors).toEqual([]);
    }
    await bob.context.close();
  });
});
