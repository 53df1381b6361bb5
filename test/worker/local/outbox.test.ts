import { describe, expect, it } from "vitest";
import { admin, cron, customerWithCredit, echoOrigin, gateway, settle, withKey } from "../helpers";

describe("without MAILCHANNELS_API_KEY, emails go to a local outbox", () => {
  it("keeps the out-of-credit email per customer, readable through the admin API", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(1, { name: "Ada Lovelace", email: "ada.local@example.com" });
    await gateway("/v1/x", withKey(key));
    expect((await gateway("/v1/x", withKey(key))).status).toBe(402);
    await settle(id);
    await cron();
    await cron(Date.now() + 60_000);
    const log = await admin("GET", `/customers/${id}/emails`);
    expect(log.body.delivery).toBe("outbox");
    expect(log.body.emails).toHaveLength(1);
    expect(log.body.emails[0]).toMatchObject({ status: "outbox", cohort: "out_of_credits", to_email: "ada.local@example.com" });
    expect(log.body.emails[0].text).toMatch(/^Hi Ada,/);
  });

  it("keeps test emails in the test outbox", async () => {
    const sent = await admin("POST", "/emails/test", { template: "out_of_credits", to: "qa@example.com" });
    expect(sent).toMatchObject({ status: 202, body: { status: "outbox" } });
    const outbox = await admin("GET", "/emails/test-outbox");
    expect(outbox.body.emails[0]).toMatchObject({ to_email: "qa@example.com", subject: "You're out of API credit" });
  });

  it("fills a test email with the customer's exact balance, sub-cent part included", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(1, { name: "Grace Hopper", email: "grace.local@example.com" });
    expect((await gateway("/v1/search/items", withKey(key))).status).toBe(200); // 0.05 cents
    const sent = await admin("POST", "/emails/test", { template: "low_balance", to: "qa@example.com", customer_id: id });
    expect(sent.status).toBe(202);
    expect(sent.body.email.text).toMatch(/^Hi Grace,/);
    expect(sent.body.email.text).toContain("You have $0.0095 of API credit left.");
  });
});
