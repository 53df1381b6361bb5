import { runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { OLD_SETTLED_REPORTS } from "../../../durable-objects/customer-account/retention/reports";
import { PRUNE_STRIPE_EVENTS } from "../../../durable-objects/customer-account/stripe/event-log";
import { admin, customerStub, queryPlan } from "../helpers";
import { connect, cron, deliver, deliverAll, fundedCustomer, refuseOnce, settle, spend } from "./doubles";

// Bounded state: Stripe reports are deleted after REPORT_RETENTION_DAYS once settled,
// keeping the sums the summary shows; Stripe event ids are pruned by an index, not a scan.
const DAY = 86_400_000;

afterEach(() => vi.useRealTimers());

const stripeView = async (id: string) => (await admin("GET", `/customers/${id}`)).body.stripe;

describe("Stripe reports older than REPORT_RETENTION_DAYS", () => {
  it("are deleted from a timer once settled, keeping per kind and status the count and amount the summary shows; pending and failed ones stay", async () => {
    const doubles = connect();
    const { id, key } = await fundedCustomer(doubles, 1000);
    vi.useFakeTimers({ toFake: ["Date"] });
    const t = Date.now();
    // Sent: a usage report and a grant.
    expect(await spend(key, 3)).toBe(3);
    await settle(id);
    await cron(t);
    expect((await admin("POST", `/customers/${id}/credits`, { amount: 50, reason: "goodwill" })).status).toBe(201);
    // Failed: Stripe refuses a grant for good.
    refuseOnce();
    expect((await admin("POST", `/customers/${id}/credits`, { amount: 20, reason: "refused" })).status).toBe(201);
    // Pending: Stripe keeps failing (transiently) to take a usage report.
    doubles.stripe.inject({ match: { method: "POST", path: /balance_transactions$/ }, kind: "500_retryable", times: 1000 });
    expect(await spend(key, 2)).toBe(2);
    await settle(id);
    await cron(t + 60_000);
    const before = await stripeView(id);
    expect(before.recent_reports.map((r: { kind: string; status: string }) => `${r.kind}:${r.status}`).sort()).toEqual(
      ["grant:failed", "grant:sent", "usage_debit:pending", "usage_debit:sent"].sort(),
    );
    expect(before).toMatchObject({ report_rows_kept: 4, report_rows_archived: 0, report_retention_days: 90 });

    // Nothing is deleted before the rows are 90 days old.
    vi.setSystemTime(t + 80 * DAY);
    await settle(id);
    expect((await stripeView(id)).report_rows_kept).toBe(4);

    vi.setSystemTime(t + 100 * DAY);
    await settle(id);
    const after = await stripeView(id);
    expect(after).toMatchObject({ report_rows_kept: 2, report_rows_archived: 2 });
    expect(after.report_totals).toEqual(before.report_totals);
    expect(after.report_totals).toEqual(
      expect.arrayContaining([
        { kind: "usage_debit", status: "sent", n: 1, amount: 3 },
        { kind: "grant", status: "sent", n: 1, amount: -50 },
      ]),
    );
    expect(after.recent_reports.map((r: { kind: string; status: string }) => `${r.kind}:${r.status}`).sort()).toEqual(["grant:failed", "usage_debit:pending"]);

    // The pruning query searches an index holding only settled reports.
    const pruning = await runInDurableObject(customerStub(id), (_instance, state) => queryPlan(state, OLD_SETTLED_REPORTS, t, 500));
    expect(pruning).toMatch(/USING INDEX reports_settled/);
    expect(pruning).not.toMatch(/SCAN reports/);
  });
});

describe("Stripe event ids", () => {
  it("are kept 30 days for deduplication, then pruned on the next record by an index, not a scan", async () => {
    const doubles = connect();
    const { id } = await fundedCustomer(doubles, 100);
    const rows = () =>
      runInDurableObject(customerStub(id), (_instance, state) =>
        state.storage.sql
          .exec("SELECT id FROM stripe_events")
          .toArray()
          .map((r) => r.id),
      );
    const first = await rows();
    expect(first.length).toBeGreaterThan(0);
    vi.useFakeTimers({ toFake: ["Date"] });
    const t = Date.now();
    vi.setSystemTime(t + 29 * DAY);
    const paid = doubles.stripe.invoiceEvent(id, "invoice.paid");
    expect((await deliver(doubles.stripe, paid, { timestamp: Math.floor(Date.now() / 1000) })).status).toBe(200);
    expect(await rows()).toEqual(expect.arrayContaining([...first, paid.id]));
    vi.setSystemTime(t + 31 * DAY);
    const later = doubles.stripe.invoiceEvent(id, "invoice.paid");
    expect((await deliver(doubles.stripe, later, { timestamp: Math.floor(Date.now() / 1000) })).status).toBe(200);
    expect((await rows()).sort()).toEqual([paid.id, later.id].sort());
    await deliverAll(doubles.stripe);

    const pruning = await runInDurableObject(customerStub(id), (_instance, state) => queryPlan(state, PRUNE_STRIPE_EVENTS, t));
    expect(pruning).toMatch(/USING (COVERING )?INDEX stripe_events_received/);
    expect(pruning).not.toMatch(/SCAN stripe_events/);
  });
});
