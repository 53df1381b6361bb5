import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { http } from "msw";
import { afterEach, describe, expect, it, vi } from "vitest";
import { parseConfig } from "../../../src/lib/config";
import { purposeMac } from "../../../src/lib/derived-keys";
import { unsubscribeToken, verifyUnsubscribeToken, withHtmlFooter } from "../../../src/lib/email/unsubscribe";
import { hmacHex } from "../../../src/verify/payg-signature";
import { MailChannelsDouble } from "../../doubles/mailchannels-double";
import { ADMIN_TOKEN, admin, configProblems, customerStub, customerWithCredit, gateway, uniqueId, withKey } from "../helpers";
import { server } from "../setup";
import { connect, cron, deliverAll, settle } from "./doubles";

// Emails only to people who should get them, and the retention of email rows.

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const SUBJECT = "You're out of API credit";

/** A customer with a key that used its one cent and was refused: in out_of_credits, eligible. */
async function drained() {
  const email = `ada+${uniqueId()}@example.com`;
  const { id, key } = await customerWithCredit(1, { name: "Ada Lovelace", email });
  expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
  expect((await gateway("/v1/x", withKey(key))).status).toBe(402);
  await settle(id);
  return { id, key, email };
}

const outOfCredit = (mail: MailChannelsDouble, email: string) => mail.sentTo(email).filter((m) => m.subject === SUBJECT);
// Other tests' customers share the directory and may be emailed by the same cron run.
const attemptsTo = (mail: MailChannelsDouble, email: string) => mail.requests.filter((r) => r.recipient === email.toLowerCase());
const summary = async (id: string) => (await admin("GET", `/customers/${id}`)).body;
/** The cron does not come back for this customer's emails (only, later, for its hourly Stripe reconcile). */
const notDueForEmail = async (id: string) => {
  const due = (await directoryRow(id))?.due_at;
  expect(due === null || due === undefined || due > Date.now() + 30 * 60_000, `due_at ${due}`).toBe(true);
};
const directoryRow = async (id: string) =>
  (await admin("GET", "/customers?limit=500")).body.customers.find((c: { id: string }) => c.id === id) as { due_at: number | null } | undefined;
const emailLog = async (id: string) => (await admin("GET", `/customers/${id}/emails`)).body.emails as any[];

/** The link an email carries in List-Unsubscribe, as a path and query on the test gateway. */
function unsubscribePath(headers: Record<string, string>): { url: URL; path: string; token: string } {
  const match = /^<(https:\/\/[^>]+)>$/.exec(headers["List-Unsubscribe"] ?? "");
  expect(match).not.toBeNull();
  const url = new URL(match![1]!);
  return { url, path: url.pathname + url.search, token: url.searchParams.get("token")! };
}

function oneClick(path: string, init: RequestInit = {}) {
  return gateway(path, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", ...(init.headers as Record<string, string> | undefined) },
    body: "List-Unsubscribe=One-Click",
  });
}

afterEach(() => {
  vi.useRealTimers();
});

describe("who is emailed", () => {
  it("the incident: a Stripe customer.created with zero balance and no key is listed in the cohort but never emailed, however many cron runs", async () => {
    const { stripe, mail } = connect();
    const email = `other-product+${uniqueId()}@example.com`;
    const customer = stripe.createCustomer({ email, name: "Someone Else" });
    await deliverAll(stripe);
    await settle(customer.id);
    const before = await summary(customer.id);
    expect(before.cohorts.current).toEqual([expect.objectContaining({ cohort: "out_of_credits" })]);
    expect(before.emails).toMatchObject({ audience: "no_key", unsubscribed: false });
    const members = await admin("GET", "/cohorts/out_of_credits/members?limit=500");
    expect(members.body.members.map((m: { customer_id: string }) => m.customer_id)).toContain(customer.id);
    // Not even listed as due: the cron does not visit it at all.
    expect((await directoryRow(customer.id))?.due_at).toBeNull();

    const t = Date.now();
    for (const at of [t, t + 1, t + HOUR + 1, t + 2 * HOUR + 1, t + DAY, t + 7 * DAY, t + 30 * DAY]) await cron(at);
    expect(attemptsTo(mail, email)).toHaveLength(0);
    expect(await emailLog(customer.id)).toEqual([]);

    // A key alone does not make it eligible; using credit does.
    const key = (await admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
    await settle(customer.id);
    expect((await summary(customer.id)).emails.audience).toBe("no_activity");
    await cron(t + 31 * DAY);
    expect(attemptsTo(mail, email)).toHaveLength(0);
    stripe.adjustBalance(customer.id, -1, "One cent");
    await deliverAll(stripe);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(402);
    await settle(customer.id);
    expect((await summary(customer.id)).emails.audience).toBe("eligible");
    await cron(t + 32 * DAY);
    await deliverAll(stripe);
    expect(outOfCredit(mail, email)).toHaveLength(1);
  });

  it("caps reminders at EMAILS.max_per_enrollment (3) per enrollment; the next comes only after leaving and re-entering, after the window", async () => {
    const { mail } = connect();
    const { id, email } = await drained();
    const t = Date.now();
    for (let hour = 0; hour <= 6; hour++) await cron(t + hour * (HOUR + 60_000));
    expect(outOfCredit(mail, email)).toHaveLength(3);
    const first = await emailLog(id);
    expect(first.map((e) => e.seq)).toEqual([2, 1, 0]);
    await notDueForEmail(id);

    // Leaves the cohort and comes back: a new enrollment, emailed once the window has passed.
    await admin("POST", `/customers/${id}/credits`, { amount: 500, reason: "top-up" });
    await admin("POST", `/customers/${id}/credits`, { amount: -500, reason: "taken back" });
    await settle(id);
    const lastSent = (await emailLog(id))[0].sent_at as number;
    await cron(lastSent + HOUR - 60_000);
    expect(outOfCredit(mail, email)).toHaveLength(3);
    await cron(lastSent + HOUR + 60_000);
    expect(outOfCredit(mail, email)).toHaveLength(4);
    expect((await emailLog(id))[0]).toMatchObject({ enrollment: first[0].enrollment + 1, seq: 0, status: "sent" });
  });
});

describe("unsubscribing (RFC 8058 one-click)", () => {
  it("every email carries the link in its text and HTML and the List-Unsubscribe headers on the personalization (signed by DKIM)", async () => {
    const { mail } = connect();
    const { id, email } = await drained();
    await cron();
    const [message] = outOfCredit(mail, email);
    expect(message!.headers["List-Unsubscribe-Post"]).toBe("List-Unsubscribe=One-Click");
    const { url, token } = unsubscribePath(message!.headers);
    expect(url.origin + url.pathname).toBe("https://gateway.test/email/unsubscribe");
    // Per personalization (where DKIM signing applies), not only at the top level.
    expect((message!.body.personalizations[0] as { headers?: Record<string, string> }).headers).toMatchObject({
      "List-Unsubscribe": `<${url.href}>`,
      "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    });
    expect(message!.text).toContain(`unsubscribe: ${url.href}`);
    expect(message!.html).toContain(`<a href="${url.href}">unsubscribe</a>`);
    // The token names the customer and is an HMAC under the unsubscribe key derived from the admin token (no UNSUBSCRIBE_SIGNING_SECRET here).
    expect(token).toBe(`${id}.${await purposeMac(ADMIN_TOKEN, "unsubscribe", id)}`);
  });

  it("puts the HTML footer inside <body> when the template is a whole document, with the link escaped", () => {
    const html = withHtmlFooter("<html><body><p>Hi</p></BODY></html>", "https://gateway.test/email/unsubscribe?token=a&b");
    expect(html).toMatch(
      /^<html><body><p>Hi<\/p><p [^>]*>To stop these emails, <a href="https:\/\/gateway\.test\/email\/unsubscribe\?token=a&amp;b">unsubscribe<\/a>\.<\/p><\/BODY><\/html>$/,
    );
  });

  it("GET shows a page with a button and changes nothing; the one-click POST unsubscribes, with no redirect or cookie, and no email follows", async () => {
    const { mail } = connect();
    const { id, email } = await drained();
    const t = Date.now();
    await cron(t);
    const { path, token } = unsubscribePath(outOfCredit(mail, email)[0]!.headers);

    // Link scanners follow links: GET (twice, as scanners do) must not unsubscribe.
    for (let i = 0; i < 2; i++) {
      const page = await gateway(path);
      expect(page.status).toBe(200);
      expect(page.headers.get("content-type")).toMatch(/^text\/html/);
      const html = await page.text();
      expect(html).toContain(`<form method="post" action="?token=${token}">`);
      expect(html).toContain('name="List-Unsubscribe" value="One-Click"');
    }
    expect((await summary(id)).emails).toMatchObject({ unsubscribed: false, audience: "eligible" });

    const response = await oneClick(path);
    expect(response.status).toBe(200);
    expect(response.headers.get("location")).toBeNull();
    expect(response.headers.get("set-cookie")).toBeNull();
    expect(await response.json()).toMatchObject({ unsubscribed: true, unsubscribed_at: expect.any(Number) });
    const state = (await summary(id)).emails;
    expect(state).toMatchObject({ unsubscribed: true, audience: "unsubscribed" });

    // Again (the browser's button this time): still 200, the first time is kept.
    const again = await oneClick(path, { headers: { accept: "text/html" } });
    expect(again.status).toBe(200);
    expect(await again.text()).toContain("You are unsubscribed");
    expect((await summary(id)).emails.unsubscribed_at).toBe(state.unsubscribed_at);

    await settle(id);
    await notDueForEmail(id);
    for (const at of [t + HOUR + 60_000, t + 3 * HOUR, t + DAY]) await cron(at);
    expect(attemptsTo(mail, email)).toHaveLength(1);
  });

  it("refuses a missing, malformed, tampered or forged token with a JSON error, and changes nothing", async () => {
    const { mail } = connect();
    const victim = await drained();
    const other = await drained();
    await cron();
    const { token } = unsubscribePath(outOfCredit(mail, other.email)[0]!.headers);
    const [, mac] = token.split(".") as [string, string];
    const flipped = mac.slice(0, -1) + (mac.endsWith("0") ? "1" : "0");
    const cases: [string, number, string][] = [
      ["", 400, "invalid_request"],
      ["?token=", 400, "invalid_request"],
      [`?token=${victim.id}`, 400, "invalid_signature"],
      // Another customer's valid signature under the victim's id.
      [`?token=${victim.id}.${mac}`, 400, "invalid_signature"],
      [`?token=${victim.id}.${flipped}`, 400, "invalid_signature"],
      // Signed with a key that is not the gateway's.
      [`?token=${victim.id}.${await hmacHex("not-the-gateway-secret-0123456789", `payg-edge-gateway.unsubscribe.v1.${victim.id}`)}`, 400, "invalid_signature"],
      [`?token=${victim.id}.${mac.toUpperCase()}`, 400, "invalid_signature"],
    ];
    for (const [query, status, code] of cases) {
      for (const method of ["POST", "GET"]) {
        const response = method === "POST" ? await oneClick(`/email/unsubscribe${query}`) : await gateway(`/email/unsubscribe${query}`);
        expect(response.status, `${method} ${query}`).toBe(status);
        const body = (await response.json()) as any;
        expect(body.error, `${method} ${query}`).toMatchObject({ code, message: expect.any(String), requestId: expect.any(String) });
      }
    }
    expect((await summary(victim.id)).emails.unsubscribed).toBe(false);
    expect((await summary(other.id)).emails.unsubscribed).toBe(false);
    // Other methods and other /email paths are the gateway's, never the origin's.
    expect((await gateway(`/email/unsubscribe?token=${token}`, { method: "PUT" })).status).toBe(405);
    expect((await gateway("/email/anything")).status).toBe(404);
  });

  it("the admin API shows the state and resets it; emails resume in the next window", async () => {
    const { mail } = connect();
    const { id, email } = await drained();
    const t = Date.now();
    await cron(t);
    const { path } = unsubscribePath(outOfCredit(mail, email)[0]!.headers);
    expect((await oneClick(path)).status).toBe(200);
    await cron(t + HOUR + 60_000);
    expect(outOfCredit(mail, email)).toHaveLength(1);

    expect((await gateway(`/admin/customers/${id}/email-unsubscribe`, { method: "DELETE" })).status).toBe(401);
    expect((await admin("DELETE", `/customers/${uniqueId()}/email-unsubscribe`)).status).toBe(404);
    const reset = await admin("DELETE", `/customers/${id}/email-unsubscribe`);
    expect(reset).toMatchObject({ status: 200, body: { customer_id: id, unsubscribed: false, unsubscribed_at: null } });
    expect((await summary(id)).emails).toMatchObject({ unsubscribed: false, unsubscribed_at: null, audience: "eligible" });
    await settle(id);
    await cron(t + 2 * HOUR + 120_000);
    expect(outOfCredit(mail, email)).toHaveLength(2);
  });
});

describe("unsubscribe settings, checked at start-up", () => {
  const withVars = (overrides: Record<string, unknown>) => ({ ...(env as unknown as Record<string, unknown>), ...overrides });
  const problems = (overrides: Record<string, unknown>) => configProblems(withVars(overrides));

  it("needs an https PUBLIC_URL (loopback allowed for development) and a signing key when there are templates", () => {
    expect(problems({})).toEqual([]);
    expect(problems({ PUBLIC_URL: "" })).toEqual([expect.stringMatching(/^PUBLIC_URL: required/)]);
    expect(problems({ PUBLIC_URL: "http://gateway.example.com" })).toEqual([expect.stringMatching(/^PUBLIC_URL: must be https/)]);
    expect(problems({ PUBLIC_URL: "http://127.0.0.1:8787" })).toEqual([]);
    expect(problems({ ADMIN_TOKEN: "" })).toEqual([expect.stringMatching(/^UNSUBSCRIBE_SIGNING_SECRET: set it/)]);
    expect(problems({ ADMIN_TOKEN: "", UNSUBSCRIBE_SIGNING_SECRET: "short" })).toEqual([expect.stringMatching(/^UNSUBSCRIBE_SIGNING_SECRET: must be at least 32/)]);
    expect(problems({ ADMIN_TOKEN: "", UNSUBSCRIBE_SIGNING_SECRET: "s".repeat(32) })).toEqual([]);
  });

  it("signs with UNSUBSCRIBE_SIGNING_SECRET when it is set, and then refuses links signed with the admin token", async () => {
    const secret = "unsubscribe-secret-0123456789abcdef";
    const config = parseConfig(withVars({ UNSUBSCRIBE_SIGNING_SECRET: secret }));
    const token = await unsubscribeToken(config, "cus_a");
    expect(token).toBe(`cus_a.${await purposeMac(secret, "unsubscribe", "cus_a")}`);
    expect(await verifyUnsubscribeToken(config, token)).toBe("cus_a");
    const viaAdminToken = await unsubscribeToken(parseConfig(withVars({})), "cus_a");
    expect(await verifyUnsubscribeToken(config, viaAdminToken)).toBeNull();
  });
});

describe("what MailChannels answered", () => {
  it("a 202 whose result is failed is recorded as failed with its reason and request_id, counted, and not retried", async () => {
    const { mail } = connect();
    const { id, email } = await drained();
    mail.inject({ kind: "202_failed", to: email, reason: "recipient address suppressed" });
    const t = Date.now();
    await cron(t);
    await cron(t + 10 * 60_000);
    expect(attemptsTo(mail, email)).toHaveLength(1);
    expect(mail.failed).toEqual([expect.objectContaining({ to: [email] })]);
    const [row] = await emailLog(id);
    expect(row).toMatchObject({ status: "failed", attempts: 1, sent_at: null, request_id: mail.failed[0]!.requestId });
    expect(row.last_error).toContain("recipient address suppressed");
    expect((await summary(id)).emails.status_counts).toEqual({ failed: 1 });
  });

  it("stores MailChannels' request_id from the 202 body of a sent email", async () => {
    const { mail } = connect();
    const { id, email } = await drained();
    await cron();
    const [message] = outOfCredit(mail, email);
    expect((await emailLog(id))[0]).toMatchObject({ status: "sent", request_id: message!.requestId });
    expect(message!.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("a 403 (bad key, unauthorized domain) is a permanent failure, never retried", async () => {
    connect();
    // MailChannels now holds another key than the gateway's MAILCHANNELS_API_KEY.
    const rotated = new MailChannelsDouble({ apiKey: "mc_rotated_key" });
    server.use(http.all("https://mailchannels.test/*", ({ request }) => rotated.handle(request as unknown as Request)));
    const { id, email } = await drained();
    const t = Date.now();
    await cron(t);
    await cron(t + 10 * 60_000);
    await cron(t + 30 * 60_000);
    const calls = rotated.requests.filter((r) => r.status === 403);
    expect(calls.length).toBeGreaterThanOrEqual(1);
    expect(rotated.sentTo(email)).toHaveLength(0);
    const [row] = await emailLog(id);
    expect(row).toMatchObject({ status: "failed", attempts: 1, next_attempt_at: null });
    expect(row.last_error).toMatch(/^MailChannels 403: .*invalid API key or sending domain not authorized/);
  });
});

describe("retention: bounded state", () => {
  it("deletes email rows older than EMAILS.retention_days from a timer, keeping the counts the summary shows and what the planner needs", async () => {
    const { mail } = connect();
    const { id, email } = await drained();
    const t = Date.now();
    await cron(t);
    mail.inject({ kind: "202_failed", to: email });
    await cron(t + HOUR + 60_000);
    await cron(t + 2 * HOUR + 120_000);
    // A second enrollment, with its first email.
    await admin("POST", `/customers/${id}/credits`, { amount: 500, reason: "top-up" });
    await admin("POST", `/customers/${id}/credits`, { amount: -500, reason: "taken back" });
    await settle(id);
    await cron(t + 4 * HOUR);
    const enrollment = (await emailLog(id))[0].enrollment as number;
    const before = (await summary(id)).emails;
    expect(before).toMatchObject({ status_counts: { sent: 3, failed: 1 }, rows_kept: 4, rows_archived: 0, retention_days: 90 });

    // Pruning is a timer's work: nothing happens before the rows are 90 days old.
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(t + 80 * DAY);
    await runDurableObjectAlarm(customerStub(id));
    expect((await summary(id)).emails.rows_kept).toBe(4);

    vi.setSystemTime(t + 100 * DAY);
    await runDurableObjectAlarm(customerStub(id));
    const after = (await summary(id)).emails;
    // The first enrollment's three rows are gone; the current enrollment's row stays (the cap reads it).
    expect(after).toMatchObject({ status_counts: { sent: 3, failed: 1 }, rows_kept: 1, rows_archived: 3 });
    expect(after.by_cohort).toEqual({ out_of_credits: { sent: 3, failed: 1 } });
    expect((await emailLog(id)).map((e) => [e.enrollment, e.seq])).toEqual([[enrollment, 0]]);
    // The overview's email numbers (the rollup the directory keeps) count the deleted rows too.
    expect((await admin("POST", `/customers/${id}/credits`, { amount: 1, reason: "a change to push" })).status).toBe(201);
    vi.setSystemTime(t + 100 * DAY + 5 * 60_000);
    await settle(id);
    const directory = env.DIRECTORY.get(env.DIRECTORY.idFromName("global"));
    const rollup = await runInDurableObject(directory, (_instance, state) =>
      state.storage.sql.exec("SELECT emails_sent, emails_failed FROM customer_rollup WHERE customer_id = ?", id).one(),
    );
    expect(rollup).toEqual({ emails_sent: 3, emails_failed: 1 });
    vi.useRealTimers();

    // The pruning query runs on an index, not a scan.
    const plan = await runInDurableObject(customerStub(id), (_instance, state) =>
      state.storage.sql
        .exec("EXPLAIN QUERY PLAN SELECT id FROM emails WHERE created_at < ? AND status NOT IN ('sending', 'retry') ORDER BY created_at LIMIT 500", t)
        .toArray()
        .map((r) => String(r.detail)),
    );
    expect(plan.join(" ")).toMatch(/USING INDEX emails_created/);
  });
});
