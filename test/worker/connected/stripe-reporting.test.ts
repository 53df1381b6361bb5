import { describe, expect, it } from "vitest";
import { admin, customerStub, gateway, withKey } from "../helpers";
import { connect, cron, deleteInStripe, deliverAll, fundedCustomer, settle, spend } from "./doubles";

type Doubles = ReturnType<typeof connect>;

const usageDebits = (doubles: Doubles, id: string) => doubles.stripe.balanceTransactions(id).filter((t) => String(t.metadata?.payg_report ?? "").startsWith("payg_usage"));
/** Stripe calls about one customer (other tests' customers share the directory and the cron). */
const calls = (doubles: Doubles, id: string) => doubles.stripe.requests.filter((r) => r.path.includes(id) || JSON.stringify(r.params).includes(id)).length;

describe("edge → Stripe: the cron reports usage (happy)", () => {
  it("usage past Stripe's 8 digits of minor units goes in transactions that each fit", async () => {
    const doubles = connect();
    const { id, key } = await fundedCustomer(doubles, 150_000_000);
    const { sha256Hex } = await import("../../../src/lib/api-key-format");
    const charge = await customerStub(id).authorize({ keyHash: await sha256Hex(key), meter: "api_requests", priceMicros: 150_000_000 * 1_000_000, requestId: "huge_1" });
    expect(charge.outcome).toBe("ok");
    await settle(id);
    await cron();
    expect(usageDebits(doubles, id).map((t) => t.amount)).toEqual([99_999_999, 50_000_001]);
    expect(doubles.stripe.balanceOf(id)).toBe(0);
  });

  it("reports prepaid usage as one balance transaction per run, carrying the sub-cent remainder", async () => {
    const doubles = connect();
    const { id, key } = await fundedCustomer(doubles, 100);
    expect(await spend(key, 7)).toBe(7);
    expect(await spend(key, 30, "/v1/search/q")).toBe(30); // 30 × 0.05 = 1.5 cents
    await settle(id);
    await cron();
    expect(usageDebits(doubles, id).map((t) => t.amount)).toEqual([8]);
    expect(doubles.stripe.balanceOf(id)).toBe(-92);
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: 91_500_000, pendingUsageMicros: 500_000 });

    // Stripe's customer.updated for our own debit is not subtracted again.
    await deliverAll(doubles.stripe);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(91_500_000);

    // Nothing to report costs nothing; the half cent waits for the next one.
    const before = calls(doubles, id);
    await cron(Date.now() + 60_000);
    expect(calls(doubles, id)).toBe(before);
    expect(await spend(key, 10, "/v1/search/q")).toBe(10);
    await settle(id);
    await cron(Date.now() + 120_000);
    expect(usageDebits(doubles, id).map((t) => t.amount)).toEqual([8, 1]);
    expect(doubles.stripe.balanceOf(id)).toBe(-91);
    const summary = await admin("GET", `/customers/${id}`);
    expect(summary.body.stripe).toMatchObject({ last_known_stripe_balance: -91, pending_usage_exact_cents: "0" });
  });

  it("reports post-paid usage as meter events per meter and never blocks for balance", async () => {
    const doubles = connect();
    const { id, key } = await fundedCustomer(doubles, 0, { payg_plan: "postpaid" });
    expect(await spend(key, 5)).toBe(5);
    expect(await spend(key, 3, "/v1/search/q")).toBe(3);
    await settle(id);
    await cron();
    expect(doubles.stripe.meterUsage(id, "api_requests")).toBe(5);
    expect(doubles.stripe.meterUsage(id, "search_requests")).toBe(3);
    expect(doubles.stripe.meterEvents.every((e) => e.identifier.startsWith("payg_meter"))).toBe(true);
    expect(doubles.stripe.balanceTransactions(id)).toHaveLength(0);
  });

  it("blocks a post-paid customer while an invoice is unpaid, in any delivery order", async () => {
    const doubles = connect();
    const { id, key } = await fundedCustomer(doubles, 0, { payg_plan: "postpaid" });
    doubles.stripe.invoiceEvent(id, "invoice.payment_failed", "in_late_1");
    await deliverAll(doubles.stripe);
    const blocked = await gateway("/v1/x", withKey(key));
    expect(blocked.status).toBe(402);
    expect(((await blocked.json()) as any).error.code).toBe("payment_overdue");
    doubles.stripe.invoiceEvent(id, "invoice.paid", "in_late_1");
    await deliverAll(doubles.stripe);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);

    // Reordered: paid arrives before the failure it settles.
    doubles.stripe.invoiceEvent(id, "invoice.payment_failed", "in_late_2");
    doubles.stripe.invoiceEvent(id, "invoice.paid", "in_late_2");
    const [failed, paid] = doubles.stripe.takeEvents();
    const { deliver } = await import("./doubles");
    await deliver(doubles.stripe, paid!);
    await deliver(doubles.stripe, failed!);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
  });

  it("pushes admin credits to Stripe so Stripe stays the book of record", async () => {
    const doubles = connect();
    const { id } = await fundedCustomer(doubles, 0);
    expect((await admin("POST", `/customers/${id}/credits`, { amount: 250, reason: "goodwill" })).status).toBe(201);
    expect(doubles.stripe.balanceOf(id)).toBe(-250);
    await deliverAll(doubles.stripe);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(250_000_000);
  });
});

describe("edge → Stripe: exactly once under faults", () => {
  it.each([
    ["500_after_commit", 2],
    ["drop_after_commit", 1],
    ["500", 2],
    ["429", 2],
    ["timeout", 2],
  ] as const)("a %s on the report is retried without double charging", async (kind, runs) => {
    const doubles = connect();
    const { id, key } = await fundedCustomer(doubles, 100);
    expect(await spend(key, 12)).toBe(12);
    await settle(id);
    doubles.stripe.inject({ match: { method: "POST", path: /balance_transactions$/ }, kind, times: 3 });
    let t = Date.now();
    for (let i = 0; i < runs + 2; i++) {
      await cron(t);
      t += 3_600_000;
    }
    expect(usageDebits(doubles, id).map((t) => t.amount)).toEqual([12]);
    expect(doubles.stripe.balanceOf(id)).toBe(-88);
    await deliverAll(doubles.stripe);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(88_000_000);
    const summary = await admin("GET", `/customers/${id}`);
    expect(summary.body.stripe.recent_reports[0]).toMatchObject({ status: "sent", amount: 12 });
  });

  it("overlapping and repeated cron runs report once", async () => {
    const doubles = connect();
    const { id, key } = await fundedCustomer(doubles, 100);
    expect(await spend(key, 9)).toBe(9);
    await settle(id);
    const now = Date.now();
    await Promise.all([cron(now), cron(now), cron(now + 1)]);
    await cron(now + 60_000);
    expect(usageDebits(doubles, id).map((t) => t.amount)).toEqual([9]);
  });

  it("keeps a report Stripe refused for good, visible in the admin API, and never loses the usage", async () => {
    const doubles = connect();
    const { id, key } = await fundedCustomer(doubles, 100);
    expect(await spend(key, 4)).toBe(4);
    await settle(id);
    // The customer is deleted in Stripe: the report's 404 is permanent, not retried forever.
    await deleteInStripe(doubles.stripe, id);
    await cron();
    await cron(Date.now() + 3_600_000);
    const summary = await admin("GET", `/customers/${id}`);
    expect(summary.body.stripe.recent_reports[0]).toMatchObject({ amount: 4, status: "failed", attempts: 1 });
    expect(summary.body.stripe.recent_reports[0].last_error).toMatch(/404|No such customer/);
    expect(usageDebits(doubles, id)).toHaveLength(0);
    expect((await customerStub(id).balanceCheck())!.ledgerSumMicros).toBe(96_000_000);
  });
});
