import { describe, expect, it } from "vitest";
import { admin, customerStub, gateway, withKey } from "../helpers";
import { connect, cron, deliver, deliverAll, settle } from "./doubles";

describe("under load", () => {
  it("hundreds of parallel requests while grants and webhooks land: no overdraft, no lost debit", async () => {
    const { stripe } = connect();
    const customer = stripe.createCustomer({ name: "Load Tester", email: "load@example.com", balance: -100 });
    await deliverAll(stripe);
    const id = customer.id;
    const key = (await admin("POST", `/customers/${id}/keys`, {})).body.key as string;

    stripe.adjustBalance(id, -30);
    stripe.adjustBalance(id, -30);
    const dashboardEvents = stripe.takeEvents();
    const requests = Array.from({ length: 300 }, () => gateway("/v1/x", withKey(key)).then((r) => r.status));
    const grants = [1, 2, 3].map((i) => admin("POST", `/customers/${id}/credits`, { amount: 20, reason: `grant ${i}` }, { "idempotency-key": `load-${id}-${i}` }));
    const webhooks = [...dashboardEvents, ...dashboardEvents].map((event) => deliver(stripe, event));
    const [statuses] = await Promise.all([Promise.all(requests), Promise.all(grants), Promise.all(webhooks)]);

    const passed = statuses.filter((s) => s === 200).length;
    expect(statuses.every((s) => s === 200 || s === 402)).toBe(true);
    const totalCredit = 100 + 60 + 60;
    expect(passed).toBeLessThanOrEqual(totalCredit);
    const check = (await customerStub(id).balanceCheck())!;
    expect(check.balanceMicros).toBeGreaterThanOrEqual(0);
    expect(check.ledgerSumMicros).toBe(check.balanceMicros);

    // Settle with Stripe: every debit reported once, and both sides agree to the cent.
    await settle(id);
    await cron();
    await deliverAll(stripe);
    const after = (await customerStub(id).balanceCheck())!;
    expect(after.balanceMicros).toBe((totalCredit - passed) * 1_000_000);
    expect(stripe.balanceOf(id)).toBe(-(totalCredit - passed));
  });

  it("Stripe and MailChannels faults across many customers: totals agree after recovery and no email is sent twice", async () => {
    const { stripe, mail } = connect();
    const customers = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const c = stripe.createCustomer({ name: `Customer ${i}`, email: `c${i}-${Date.now()}@example.com`, balance: -(5 + i * 20) });
        return { id: c.id, email: c.email!, credit: 5 + i * 20 };
      }),
    );
    await deliverAll(stripe);
    const keys = await Promise.all(customers.map(async (c) => (await admin("POST", `/customers/${c.id}/keys`, {})).body.key as string));
    const consumed = new Map<string, number>();
    await Promise.all(
      customers.map(async (c, i) => {
        const statuses = await Promise.all(Array.from({ length: 40 }, () => gateway("/v1/x", withKey(keys[i]!)).then((r) => r.status)));
        consumed.set(c.id, statuses.filter((s) => s === 200).length);
        expect(consumed.get(c.id)).toBe(Math.min(40, c.credit));
      }),
    );
    for (const c of customers) await settle(c.id);

    let t = Date.now();
    const kinds = ["500", "500_after_commit", "429", "drop_after_commit"] as const;
    const mailKinds = ["500", "429", "drop_after_commit"] as const;
    for (let run = 0; run < 4; run++) {
      stripe.inject({ match: { method: "POST", path: /balance_transactions$/ }, kind: kinds[run]!, times: 4 });
      for (const c of customers.slice(run, run + 3)) mail.inject({ kind: mailKinds[run % 3]!, times: 1, to: c.email });
      await cron(t);
      stripe.clearFaults();
      t += 10 * 60_000;
    }
    for (let i = 0; i < 3; i++) {
      await cron(t);
      t += 10 * 60_000;
    }
    await deliverAll(stripe);

    for (const c of customers) {
      const debited = stripe
        .balanceTransactions(c.id)
        .filter((x) => String(x.metadata?.payg_report).startsWith("payg_usage"))
        .reduce((sum, x) => sum + x.amount, 0);
      expect(debited, c.id).toBe(consumed.get(c.id));
      expect((await customerStub(c.id).balanceCheck())!.balanceMicros).toBe(-stripe.balanceOf(c.id) * 1_000_000 || 0);
      // Within 40 minutes (< the 1-hour wait) each enrollment gets at most one email per cohort.
      const subjects = mail.sentTo(c.email).map((m) => m.subject);
      expect(new Set(subjects).size).toBe(subjects.length);
    }
    const drained = customers.filter((c) => c.credit <= 40);
    for (const c of drained) {
      const sent = mail.sentTo(c.email).filter((m) => m.subject === "You're out of API credit");
      expect(sent.length, c.email).toBeLessThanOrEqual(1);
    }
  });
});
