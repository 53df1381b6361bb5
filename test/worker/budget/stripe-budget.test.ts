import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Directory } from "../../../durable-objects/directory/index";
import { shardOf } from "../../../durable-objects/directory/placement";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { ENDPOINTS } from "../../../src/lib/stripe-budget";
import { connect, cron, deliver, deliverAll, settle } from "../connected/doubles";
import { admin, customerStub, gateway, withKey } from "../helpers";

/**
 * This project: DIRECTORY_SHARDS = 2 and STRIPE_BUDGET 20 calls a second (10 per endpoint, 20%
 * kept for Checkout), so each shard starts with 10 a second, 5 per endpoint (vitest.config.ts).
 */
const SHARDS = 2;

function shard(k: number): DurableObjectStub<Directory> {
  const ns = env.DIRECTORY as DurableObjectNamespace<Directory>;
  return ns.get(ns.idFromName(k === 0 ? "global" : `shard-${k}`));
}

/**
 * Each test starts from a budget at rest: no shrink from an earlier test's 429s, full buckets, an
 * even share, no batching, and no sweep still going on from an earlier test's cron (at its clock).
 */
async function budgetAtRest() {
  for (let k = 0; k < SHARDS; k++) {
    await runInDurableObject(shard(k), async (_i, state) => {
      state.storage.sql.exec("UPDATE shard_state SET shrink_divisor = 1, shrunk_until = 0, share_ppm = 500000, batching_until = 0");
      state.storage.sql.exec("DELETE FROM sweep");
      await state.storage.deleteAlarm();
    });
    await evictDurableObject(shard(k));
  }
}

type Doubles = ReturnType<typeof connect>;

/** A Stripe customer whose directory shard is `k`, with `cents` of credit and a key. */
async function customerIn({ stripe }: Doubles, k: number, cents: number) {
  for (;;) {
    const customer = stripe.createCustomer({ email: `b.${Math.random().toString(36).slice(2)}@example.com`, name: "Budget", balance: -cents });
    if (shardOf(customer.id, SHARDS) !== k) continue;
    await deliverAll(stripe);
    await settle(customer.id);
    // Its first reconcile (the credit it has in Stripe) may have waited for the budget: until it lands.
    for (let i = 0; i < 20 && (await customerStub(customer.id).balanceCheck())?.balanceMicros !== cents * 1_000_000; i++) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      await customerStub(customer.id).runCycle(Date.now());
    }
    const key = (await admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
    return { id: customer.id, key };
  }
}

const usageReports = ({ stripe }: Doubles, id: string) =>
  stripe
    .balanceTransactions(id)
    .filter((t) => String(t.metadata?.payg_report ?? "").startsWith("payg_usage"))
    .map((t) => t.amount);

const background = {
  priority: "background" as const,
  calls: { [ENDPOINTS.balanceTransactionCreate]: 100, [ENDPOINTS.customerRetrieve]: 100, [ENDPOINTS.balanceTransactionList]: 100 },
};
const checkout = (priority: "background" | "interactive") => ({ priority, calls: { [ENDPOINTS.checkoutSessionCreate]: 1 } });
const granted = (grant: { calls: Record<string, number> }) => Object.values(grant.calls).reduce((a, b) => a + b, 0);

describe("the Stripe call budget", () => {
  it("a 429 storm from Stripe shrinks the budget instead of retrying at once, and every cent is still reported exactly once", { timeout: 60_000 }, async () => {
    await budgetAtRest();
    const doubles = connect();
    const made = [];
    for (let i = 0; i < 12; i++) made.push(await customerIn(doubles, i % SHARDS, 100));
    for (const c of made) {
      expect((await gateway("/v1/x", withKey(c.key))).status).toBe(200);
      await settle(c.id);
    }
    // Stripe now allows 3 balance transactions a second; the gateway's budget would send 10.
    doubles.stripe.rateLimit({ perSecond: 25, perEndpointPerSecond: 3 });
    let t = Date.now();
    // Shrunk to an eighth, the budget reports about one customer a second: up to 30 s of cron runs.
    const until = Date.now() + 30_000;
    while (Date.now() < until && made.some((c) => usageReports(doubles, c.id).length === 0)) {
      t += 120_000; // past each report's backoff after its 429
      await cron(t);
      await new Promise((resolve) => setTimeout(resolve, 400));
    }
    for (const c of made) expect([c.id, usageReports(doubles, c.id)]).toEqual([c.id, [1]]);
    expect(doubles.stripe.rateLimitedCount).toBeGreaterThan(0);
    const status = (await admin("GET", "/status")).body;
    expect(status.stripe_budget.shrunk_by).toBeGreaterThanOrEqual(2);
    expect(status.stripe_budget.calls_per_second_now).toBeLessThan(20);
    expect(status.stripe_budget.last_minute.stripe_429).toBeGreaterThan(0);
  });

  it("background work never takes Checkout's share; Checkout gets it at once", async () => {
    await budgetAtRest();
    const doubles = connect();
    const { key } = await customerIn(doubles, 0, 0);
    // Reports and reconciles have used everything background work may use.
    while (granted(await shard(0).takeStripeCalls(background)) > 0);
    expect(granted(await shard(0).takeStripeCalls(checkout("background")))).toBe(0);
    expect(granted(await shard(0).takeStripeCalls(checkout("interactive")))).toBe(1);
    const response = await gateway("/billing/checkout", withKey(key, { method: "POST", body: JSON.stringify({ amount_cents: 500 }) }));
    expect(response.status).toBe(201);
  });

  it("a burst of refund events waits its turn for the budget instead of failing deliveries: each lands once", { timeout: 30_000 }, async () => {
    await budgetAtRest();
    const doubles = connect();
    const { id, key } = await customerIn(doubles, 0, 0);
    const response = await gateway("/billing/checkout", withKey(key, { method: "POST", body: JSON.stringify({ amount_cents: 1000 }) }));
    const session = doubles.stripe.completeCheckout(((await response.json()) as { id: string }).id, { paymentMethod: "pm_card_visa" });
    await deliverAll(doubles.stripe);
    // Three refunds: their events at once, each a charge lookup and a refund list, where each shard's
    // bucket holds 4 calls. Without waiting some deliveries fail with 502 (Stripe repeats them minutes later).
    for (const cents of [100, 150, 250]) doubles.stripe.refundCharge(session.payment_intent as string, cents);
    const events = doubles.stripe.takeEvents();
    expect(events.length).toBeGreaterThanOrEqual(6);
    const statuses = await Promise.all(events.map((event) => deliver(doubles.stripe, event).then((r) => r.status)));
    expect(statuses).toEqual(events.map(() => 200));
    expect((await admin("GET", `/customers/${id}`)).body.balance).toMatchObject({ available_exact_cents: "500" });
  });

  it("Checkout with no call free within a second gets 429 with Retry-After and a clear message, and its hourly slot is not used", async () => {
    await budgetAtRest();
    const doubles = connect();
    const { id, key } = await customerIn(doubles, 1, 0);
    // After three 429s from Stripe each shard is down to an eighth: a Checkout call refills in 1.6 s.
    for (let k = 0; k < SHARDS; k++) {
      for (let i = 0; i < 3; i++) await shard(k).stripeRateLimited();
      while (granted(await shard(k).takeStripeCalls(checkout("interactive"))) > 0);
    }
    const sessionsBefore = doubles.stripe.requests.filter((r) => r.path === "/v1/checkout/sessions").length;
    const response = await gateway("/billing/checkout", withKey(key, { method: "POST", body: JSON.stringify({ amount_cents: 500 }) }));
    expect(response.status).toBe(429);
    expect(Number(response.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    const body = (await response.json()) as { error: { code: string; message: string; details: { retry_after_seconds: number } } };
    expect(body.error).toMatchObject({ code: "rate_limited", details: { retry_after_seconds: Number(response.headers.get("retry-after")) } });
    expect(body.error.message).toMatch(/try the top-up again in \d+ s/);
    expect(doubles.stripe.requests.filter((r) => r.path === "/v1/checkout/sessions").length).toBe(sessionsBefore);
    const slots = await runInDurableObject(customerStub(id), (_i, state) => state.storage.sql.exec("SELECT COUNT(*) AS n FROM checkout_sessions").one().n);
    expect(slots).toBe(0);
  });

  it("batches reports while customers due outnumber the shard's budget: usage waits for min_report_cents, max_report_delay_seconds or a cohort crossing, and goes every cycle again after", async () => {
    await budgetAtRest();
    const doubles = connect();
    const a = await customerIn(doubles, 1, 2);
    const b = await customerIn(doubles, 1, 500);
    const c = await customerIn(doubles, 1, 500);
    const more = [];
    for (let i = 0; i < 5; i++) more.push(await customerIn(doubles, 1, 500));
    const all = [a, b, c, ...more];
    for (const x of all) {
      expect((await gateway("/v1/x", withKey(x.key))).status).toBe(200);
      await settle(x.id);
    }
    // The cron gives shard 1 a hundredth of the budget: 0.1 balance transactions a second, 6 a minute, for 8 customers due.
    const placement = (sharePpm: number) => ({ shard: 1, shards: SHARDS, sharePpm });
    expect((await shard(1).claimDue(Date.now(), 0, placement(10_000))).batching).toBe(true);
    for (const x of all) await customerStub(x.id).runCycle(Date.now());
    for (const x of all) expect(usageReports(doubles, x.id)).toEqual([]);
    const held = await runInDurableObject(shard(1), (_i, state) =>
      state.storage.sql.exec(`SELECT id, held_since, due_at FROM customers WHERE id IN (${all.map(() => "?").join(",")})`, ...all.map((x) => x.id)).toArray(),
    );
    for (const row of held) {
      expect(row.held_since).not.toBeNull();
      // Not due at every cron run: next when the hourly reconcile is (the day's delay is later still).
      expect(row.due_at as number).toBeGreaterThan(Date.now() + 30 * 60_000);
    }
    const status = (await admin("GET", "/status")).body;
    expect(status.report_delay).toMatchObject({ batching: true, batching_shards: 1, min_report_cents: 100, max_report_delay_seconds: 86_400 });

    // All of the budget to this shard now (batching stays on at least 10 minutes): 5 balance
    // transactions a second, a bucket holding 4; each call below waits a little for it to refill.
    await shard(1).claimDue(Date.now(), 0, placement(1_000_000));
    const refill = () => new Promise((resolve) => setTimeout(resolve, 400));
    await refill();
    // A cohort crossing: a's credit runs out, its 2 cents go with the next cycle.
    expect((await gateway("/v1/x", withKey(a.key))).status).toBe(200);
    expect((await gateway("/v1/x", withKey(a.key))).status).toBe(402);
    await settle(a.id);
    await customerStub(a.id).runCycle(Date.now());
    expect(usageReports(doubles, a.id)).toEqual([2]);

    // Worth a call: b passes min_report_cents (100).
    const charge = await customerStub(b.id).authorize({ keyHash: await sha256Hex(b.key), meter: "api_requests", priceMicros: 150_000_000, requestId: "big_b" });
    expect(charge.outcome).toBe("ok");
    await settle(b.id);
    await refill();
    await customerStub(b.id).runCycle(Date.now());
    expect(usageReports(doubles, b.id)).toEqual([151]);

    // c's one cent goes once the day has passed.
    await refill();
    await customerStub(c.id).runCycle(Date.now() + 86_400_000 + 1000);
    expect(["c", usageReports(doubles, c.id)]).toEqual(["c", [1]]);

    // Batching ends (it stays on at least 10 minutes): the usage held back is due at once and reported.
    const later = Date.now() + 11 * 60_000;
    expect((await shard(1).claimDue(later, 0, placement(1_000_000))).batching).toBe(false);
    for (const x of more) {
      const row = await runInDurableObject(shard(1), (_i, state) => state.storage.sql.exec("SELECT due_at FROM customers WHERE id = ?", x.id).one());
      expect(row.due_at as number).toBeLessThanOrEqual(later);
      await refill();
      await customerStub(x.id).runCycle(later);
      expect(["more", usageReports(doubles, x.id)]).toEqual(["more", [1]]);
    }
  });

  it("one cron run reports everyone due, however small the budget: the shard's alarm visits at the budget's pace; customers with reports go before those due only for the periodic reconcile", {
    timeout: 60_000,
  }, async () => {
    await budgetAtRest();
    const doubles = connect();
    const made = [];
    for (let i = 0; i < 8; i++) made.push(await customerIn(doubles, 0, 100));
    // Due only for its hourly reconcile: listed as due, but not as work.
    const idle = await customerIn(doubles, 0, 100);
    await runInDurableObject(shard(0), (_i, state) => state.storage.sql.exec("UPDATE customers SET due_at = 1, work_at = NULL WHERE id = ?", idle.id));
    for (const c of made) {
      expect((await gateway("/v1/x", withKey(c.key))).status).toBe(200);
      await settle(c.id);
    }
    const row = (id: string) => runInDurableObject(shard(0), (_i, state) => state.storage.sql.exec("SELECT due_at, work_at FROM customers WHERE id = ?", id).one());
    expect((await row(made[0]!.id)).work_at as number).toBeLessThanOrEqual(Date.now());
    // The reconcile-only customer has waited longest, and still comes after every one with a report.
    const order = (await shard(0).claimDue(Date.now(), 500)).customerIds;
    expect(Math.max(...made.map((c) => order.indexOf(c.id)))).toBeLessThan(order.indexOf(idle.id));
    await runInDurableObject(shard(0), (_i, state) => state.storage.sql.exec("UPDATE customers SET lease_until = 0"));
    // One cron run: shard 0 has 5 balance transactions a second; its alarm visits the rest at that pace.
    await cron(Date.now());
    const until = Date.now() + 20_000;
    while (Date.now() < until && made.some((c) => usageReports(doubles, c.id).length === 0)) await new Promise((resolve) => setTimeout(resolve, 250));
    for (const c of made) expect([c.id, usageReports(doubles, c.id)]).toEqual([c.id, [1]]);
  });
});

describe("the cron's visit to an idle shard", () => {
  it("writes nothing: the share is stored only when it changes", async () => {
    await budgetAtRest();
    const changes = () => runInDurableObject(shard(1), (_i, state) => state.storage.sql.exec("SELECT total_changes() AS n").one().n as number);
    const placement = (sharePpm: number) => ({ shard: 1, shards: SHARDS, sharePpm });
    const now = Date.now();
    await shard(1).claimDue(now, 0, placement(500_000));
    const before = await changes();
    // Two more cron runs with nothing due and the same share: no row written.
    await shard(1).claimDue(now + 60_000, 0, placement(500_000));
    await shard(1).claimDue(now + 120_000, 0, placement(500_000));
    expect((await changes()) - before).toBe(0);
    // A new share is written, once.
    await shard(1).claimDue(now + 180_000, 0, placement(250_000));
    expect((await changes()) - before).toBe(1);
  });
});
