import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { MailChannelsDouble } from "../doubles/mailchannels-double";
import { type Gateway, serveHandler, startGateway } from "./harness";

// One-click unsubscribe (RFC 8058) against the real `wrangler dev`, MailChannels replaced by its
// test double over HTTP. Links name the public https URL; the test sends them to the local gateway.
const mail = new MailChannelsDouble({ apiKey: "mc_e2e" });
let gateway: Gateway;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const origin = await startDemoOrigin({ port: 0 });
  const mailServer = await serveHandler((r) => mail.handle(r));
  closers.push(origin.close, mailServer.close);
  gateway = await startGateway({
    vars: { ORIGIN_URL: origin.url, MAILCHANNELS_API_BASE: mailServer.url, PUBLIC_URL: "https://billing.example.com" },
    secrets: { MAILCHANNELS_API_KEY: "mc_e2e", UNSUBSCRIBE_SIGNING_SECRET: "e2e-unsubscribe-secret-0123456789abcdef" },
  });
});
afterAll(async () => {
  await gateway?.stop();
  for (const close of closers) await close();
});

const HOUR = 3_600_000;

describe("unsubscribing from behavioral emails, end to end", () => {
  it("the emailed link opens a page (GET changes nothing), its one-click POST unsubscribes, no email follows until the admin resets it", async () => {
    const id = "cus_e2e_unsubscribe";
    const email = "grace@example.com";
    expect((await gateway.admin("PUT", `/customers/${id}`, { email, name: "Grace Hopper" })).status).toBe(201);
    const key = (await gateway.admin("POST", `/customers/${id}/keys`, {})).body.key as string;
    expect((await gateway.admin("POST", `/customers/${id}/credits`, { amount: 1, reason: "one request" })).status).toBe(201);
    const get = () => gateway.fetch("/v1/data", { headers: { authorization: `Bearer ${key}` } });
    expect((await get()).status).toBe(200);
    expect((await get()).status).toBe(402);
    await gateway.untilDue(id);
    const t0 = Date.now();
    await gateway.scheduled(t0 + 1000);

    const [message] = mail.sentTo(email);
    expect(message!.subject).toBe("You're out of API credit");
    expect(message!.headers["List-Unsubscribe-Post"]).toBe("List-Unsubscribe=One-Click");
    const link = new URL(/^<(.+)>$/.exec(message!.headers["List-Unsubscribe"]!)![1]!);
    expect(link.origin + link.pathname).toBe("https://billing.example.com/email/unsubscribe");
    expect(message!.text).toContain(link.href);
    const path = link.pathname + link.search;

    const page = await gateway.fetch(path);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<form method="post"');
    expect((await gateway.admin("GET", `/customers/${id}`)).body.emails.unsubscribed).toBe(false);

    const tampered = await gateway.fetch(path.slice(0, -1) + (path.endsWith("0") ? "1" : "0"), {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "List-Unsubscribe=One-Click",
    });
    expect(tampered.status).toBe(400);
    expect(((await tampered.json()) as any).error.code).toBe("invalid_signature");
    expect((await gateway.admin("GET", `/customers/${id}`)).body.emails.unsubscribed).toBe(false);

    // What a mailbox provider sends: no cookies, and it must not be redirected.
    const oneClick = await gateway.fetch(path, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "List-Unsubscribe=One-Click",
      redirect: "manual",
    });
    expect(oneClick.status).toBe(200);
    expect(await oneClick.json()).toMatchObject({ unsubscribed: true });
    expect((await gateway.admin("GET", `/customers/${id}`)).body.emails).toMatchObject({ unsubscribed: true, audience: "unsubscribed" });

    await gateway.scheduled(t0 + 2 * HOUR);
    await gateway.scheduled(t0 + 4 * HOUR);
    expect(mail.sentTo(email)).toHaveLength(1);

    const reset = await gateway.admin("DELETE", `/customers/${id}/email-unsubscribe`);
    expect(reset).toMatchObject({ status: 200, body: { unsubscribed: false } });
    await gateway.untilDue(id, t0 + 5 * HOUR);
    await gateway.scheduled(t0 + 5 * HOUR);
    expect(mail.sentTo(email)).toHaveLength(2);
  });
});
