import { describe, expect, it } from "vitest";
import type { MailChannelsDouble } from "../../doubles/mailchannels-double";
import { admin, customerWithCredit, gateway, uniqueId, withKey } from "../helpers";
import { connect, cron, settle } from "./doubles";

/** A local customer (no Stripe customer behind it) drained to 402: in the out_of_credits cohort. */
async function drained(profile: Record<string, unknown> = {}) {
  const { id, key } = await customerWithCredit(1, { name: "Ada Lovelace", email: `ada+${uniqueId()}@example.com`, ...profile });
  expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
  expect((await gateway("/v1/x", withKey(key))).status).toBe(402);
  await settle(id);
  const summary = await admin("GET", `/customers/${id}`);
  return { id, key, email: summary.body.customer.email as string };
}

const outOfCredit = (mail: MailChannelsDouble, email: string) => mail.sentTo(email).filter((m) => m.subject === "You're out of API credit");
// Customers from other tests share the directory and may be emailed by the same cron run.
const attemptsTo = (mail: MailChannelsDouble, email: string) => mail.requests.filter((r) => r.recipient === email.toLowerCase());

describe("behavioral emails (happy)", () => {
  it("emails once on entering the cohort, renders the merge tags, and shows the log in the admin API", async () => {
    const { mail } = connect();
    const { id, email } = await drained();
    await cron();
    const [message, ...rest] = outOfCredit(mail, email);
    expect(rest).toHaveLength(0);
    expect(message).toMatchObject({ from: "billing@example.com", subject: "You're out of API credit" });
    expect(message!.text).toContain("Hi Ada,");
    expect(message!.text).toContain("($0.00 left)");
    expect(message!.html).toContain('<a href="http://127.0.0.1:8787/portal">');
    const log = await admin("GET", `/customers/${id}/emails`);
    expect(log.body).toMatchObject({ delivery: "mailchannels", emails: [{ cohort: "out_of_credits", status: "sent", to_email: email }] });
  });

  it("lists cohorts and their members, paged, without visiting customers", async () => {
    connect();
    const customers = [await drained(), await drained(), await drained()];
    const counts = await admin("GET", "/cohorts");
    expect(counts.body.cohorts.find((c: { name: string }) => c.name === "out_of_credits").members).toBeGreaterThanOrEqual(3);
    const seen: string[] = [];
    let cursor: string | null = "";
    while (cursor !== null) {
      const page: any = await admin("GET", `/cohorts/out_of_credits/members?limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      expect(page.body.members.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.members.map((m: { customer_id: string }) => m.customer_id));
      cursor = page.body.next_cursor;
    }
    for (const c of customers) expect(seen).toContain(c.id);
    expect((await admin("GET", "/cohorts/nope/members")).status).toBe(404);
  });

  it("sends a template to any address from POST /admin/emails/test", async () => {
    const { mail } = connect();
    const response = await admin("POST", "/emails/test", { template: "low_balance", to: "tester@example.com" });
    expect(response.status).toBe(202);
    expect(mail.sentTo("tester@example.com")[0]!.text).toMatch(/^Hi Ada,/);
    expect((await admin("POST", "/emails/test", { template: "nope", to: "x@example.com" })).status).toBe(400);
  });
});

describe("behavioral emails (faults): never two emails for one enrollment", () => {
  it.each(["500", "429"] as const)("retries a MailChannels %s with backoff and then sends exactly one", async (kind) => {
    const { mail } = connect();
    const { id, email } = await drained();
    mail.inject({ kind, times: 1, to: email });
    const t = Date.now();
    await cron(t);
    expect(outOfCredit(mail, email)).toHaveLength(0);
    await cron(t + 10_000); // still backing off
    expect(attemptsTo(mail, email)).toHaveLength(1);
    await cron(t + 120_000);
    await cron(t + 240_000);
    expect(outOfCredit(mail, email)).toHaveLength(1);
    const log = await admin("GET", `/customers/${id}/emails`);
    expect(log.body.emails[0]).toMatchObject({ status: "sent", attempts: 2 });
  });

  it("records a permanent 4xx and does not retry it", async () => {
    const { mail } = connect();
    const { id, email } = await drained();
    mail.inject({ kind: "400", times: 1, to: email });
    await cron();
    await cron(Date.now() + 600_000);
    expect(attemptsTo(mail, email)).toHaveLength(1);
    const log = await admin("GET", `/customers/${id}/emails`);
    expect(log.body.emails[0]).toMatchObject({ status: "failed", attempts: 1 });
    expect(log.body.emails[0].last_error).toMatch(/MailChannels 400/);
  });

  it.each(["timeout", "drop_after_commit"] as const)("does not resend after a %s (MailChannels may have accepted it)", async (kind) => {
    const { mail } = connect();
    const { id, email } = await drained();
    mail.inject({ kind, times: 1, to: email });
    await cron();
    await cron(Date.now() + 600_000);
    expect(attemptsTo(mail, email)).toHaveLength(1);
    expect(mail.sentTo(email).length).toBe(kind === "drop_after_commit" ? 1 : 0);
    const log = await admin("GET", `/customers/${id}/emails`);
    expect(log.body.emails[0]).toMatchObject({ status: "unknown" });
  });

  it("overlapping and repeated cron runs send one email", async () => {
    const { mail } = connect();
    const { email } = await drained();
    const t = Date.now();
    await Promise.all([cron(t), cron(t), cron(t + 1), cron(t + 2)]);
    await cron(t + 60_000);
    expect(outOfCredit(mail, email)).toHaveLength(1);
  });

  it("re-sends after the re-enrollment wait, and stops once the customer leaves the cohort", async () => {
    const { mail } = connect();
    const { id, email } = await drained();
    const t = Date.now();
    await cron(t);
    await cron(t + 59 * 60_000);
    expect(outOfCredit(mail, email)).toHaveLength(1);
    await cron(t + 61 * 60_000);
    expect(outOfCredit(mail, email)).toHaveLength(2);
    await admin("POST", `/customers/${id}/credits`, { amount: 500, reason: "top-up" });
    await settle(id);
    await cron(t + 3 * 3_600_000);
    expect(outOfCredit(mail, email)).toHaveLength(2);
    const summary = await admin("GET", `/customers/${id}`);
    expect(summary.body.cohorts.current).toEqual([]);
    expect(summary.body.cohorts.history[0]).toMatchObject({ cohort: "out_of_credits", exited_at: expect.any(Number) });
  });

  it("records a customer without an email address as failed instead of sending", async () => {
    connect();
    const { id } = await drained({ email: null });
    await cron();
    expect((await admin("GET", `/customers/${id}/emails`)).body.emails[0]).toMatchObject({ status: "failed", last_error: "customer has no email address" });
  });
});
