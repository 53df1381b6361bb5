import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { CustomerAccount } from "../../../durable-objects/customer-account";
import type { Directory } from "../../../durable-objects/directory/index";
import type { CustomerRollup } from "../../../durable-objects/directory/rollup";
import { admin, customerStub, customerWithCredit, echoOrigin, gateway, settle, uniqueId, withKey } from "../helpers";

const HOUR = 3_600_000;

/** A directory of the test's own (the global one is shared by every test file). */
function freshDirectory(): DurableObjectStub<Directory> {
  const ns = env.DIRECTORY as DurableObjectNamespace<Directory>;
  return ns.get(ns.idFromName(uniqueId("dir")));
}

function rollup(customerId: string, seq: number, fields: Partial<CustomerRollup> = {}): CustomerRollup {
  return {
    customerId,
    seq,
    plan: "prepaid",
    deleted: false,
    balanceMicros: 0,
    lastActivityAt: null,
    reports: { pending: 0, failed: 0 },
    emails: { sent: 0, failed: 0, unknown: 0, retrying: 0 },
    usage: [],
    ...fields,
  };
}

const rollupState = (id: string) =>
  runInDurableObject(customerStub(id), (_i: CustomerAccount, state) => ({
    state: state.storage.sql.exec("SELECT seq, pushed_at, watermark FROM rollup_state").one(),
    due: state.storage.sql.exec("SELECT due_at FROM timers WHERE name = 'rollup'").toArray()[0]?.due_at ?? null,
  }));

describe("the overview's rollup", () => {
  it("the directory sums customers' rollups: credit outstanding, report and email health, requests and charges per meter per hour", async () => {
    const directory = freshDirectory();
    const hour = Math.floor(Date.now() / HOUR) * HOUR;
    await directory.rollup(
      rollup("cus_r1", 1, {
        balanceMicros: 1_500_000,
        reports: { pending: 2, failed: 1 },
        emails: { sent: 3, failed: 1, unknown: 1, retrying: 0 },
        usage: [
          { meter: "api_requests", hour, requests: 10, micros: 10_000_000 },
          { meter: "search", hour: hour - HOUR, requests: 3, micros: 150_000 },
        ],
      }),
    );
    await directory.rollup(rollup("cus_r2", 1, { balanceMicros: 250_000, usage: [{ meter: "api_requests", hour, requests: 5, micros: 5_000_000 }] }));
    await directory.rollup(rollup("cus_r3", 1, { balanceMicros: -700_000 }));
    const o = await directory.overview();
    expect(o).toMatchObject({
      outstandingMicros: 1_750_000,
      customersWithCredit: 2,
      overdrawnMicros: -700_000,
      reports: { pending: 2, failed: 1, customersWithFailed: 1 },
      emails: { sent: 3, failed: 1, unknown: 1, retrying: 0 },
    });
    expect(o.usage).toEqual([
      { meter: "search", hour: hour - HOUR, requests: 3, micros: 150_000 },
      { meter: "api_requests", hour, requests: 15, micros: 15_000_000 },
    ]);
  });

  it("a later push replaces a customer's hour (absolute totals), and an older push arriving late changes nothing", async () => {
    const directory = freshDirectory();
    const hour = Math.floor(Date.now() / HOUR) * HOUR;
    const usage = (requests: number) => [{ meter: "api_requests", hour, requests, micros: requests * 1_000_000 }];
    expect(await directory.rollup(rollup("cus_o", 1, { balanceMicros: 9_000_000, usage: usage(1) }))).toEqual({ applied: true });
    expect(await directory.rollup(rollup("cus_o", 3, { balanceMicros: 7_000_000, usage: usage(3) }))).toEqual({ applied: true });
    expect(await directory.rollup(rollup("cus_o", 2, { balanceMicros: 8_000_000, usage: usage(2) }))).toEqual({ applied: false });
    const o = await directory.overview();
    expect(o.outstandingMicros).toBe(7_000_000);
    expect(o.usage).toEqual([{ meter: "api_requests", hour, requests: 3, micros: 3_000_000 }]);
  });

  it("hours older than 8 days are dropped; the overview charts the last 7 days", async () => {
    const directory = freshDirectory();
    const hour = Math.floor(Date.now() / HOUR) * HOUR;
    await directory.rollup(
      rollup("cus_old", 1, {
        usage: [
          { meter: "api_requests", hour: hour - 9 * 24 * HOUR, requests: 1, micros: 1 },
          { meter: "api_requests", hour: hour - 7 * 24 * HOUR - HOUR, requests: 2, micros: 2 },
          { meter: "api_requests", hour: hour - 6 * 24 * HOUR, requests: 4, micros: 4 },
        ],
      }),
    );
    expect((await directory.overview()).usage.map((u) => u.requests)).toEqual([4]);
  });

  it("a customer object pushes once right away, then at most once per interval and only after a change, never per request", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(100);
    await settle(id);
    const first = await rollupState(id);
    expect(first.state).toMatchObject({ seq: 1 });
    expect(first.due).toBeNull();
    // Many requests: one timer, due a full interval (60 s by default) after the last push.
    for (let i = 0; i < 5; i++) expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    const armed = await rollupState(id);
    expect(armed.state.seq).toBe(1);
    expect(armed.due).toBe((first.state.pushed_at as number) + 60_000);
    // The directory still shows the balance of the first push until the timer fires.
    const before = (await admin("GET", `/customers?q=${id}`)).body.customers[0];
    expect(before.balance_cents).toBe(100);
    // An alarm before the due time pushes nothing; once the minute has passed, it does.
    await runDurableObjectAlarm(customerStub(id));
    expect((await admin("GET", `/customers?q=${id}`)).body.customers[0].balance_cents).toBe(100);
    await runInDurableObject(customerStub(id), (_i: CustomerAccount, state) => {
      state.storage.sql.exec("UPDATE timers SET due_at = ? WHERE name = 'rollup'", Date.now() - 1);
    });
    await runDurableObjectAlarm(customerStub(id));
    const pushed = (await admin("GET", `/customers?q=${id}`)).body.customers[0];
    expect(pushed).toMatchObject({ id, balance_cents: 95, balance_exact_cents: "95", plan: "prepaid", cohorts: ["low_balance"] });
    expect(pushed.last_activity_at).toBeGreaterThan(Date.now() - 60_000);
    const after = await rollupState(id);
    expect(after.due).toBeNull();
    // Nothing changed since: the alarm (other timers share it) pushes nothing more.
    await runDurableObjectAlarm(customerStub(id));
    expect((await rollupState(id)).state.seq).toBe(after.state.seq);
  });

  it("a customer's push carries only the hours written since the last push, as absolute totals", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(100);
    for (let i = 0; i < 3; i++) await gateway("/v1/search/q", withKey(key));
    await settle(id);
    const built = await runInDurableObject(customerStub(id), (instance: CustomerAccount) => {
      const context = (instance as unknown as { context: { rollup: { build(now: number): CustomerRollup } } }).context;
      return context.rollup.build(Date.now());
    });
    // Pushed already: no ledger row changed since, so no hour to send again.
    expect(built.usage).toEqual([]);
    await gateway("/v1/search/q", withKey(key));
    const next = await runInDurableObject(customerStub(id), (instance: CustomerAccount) =>
      (instance as unknown as { context: { rollup: { build(now: number): CustomerRollup } } }).context.rollup.build(Date.now()),
    );
    expect(next.usage).toEqual([{ meter: "search", hour: Math.floor(Date.now() / HOUR) * HOUR, requests: 4, micros: 200_000 }]);
  });
});

describe("admin API for the dashboard", () => {
  it("GET /admin/overview answers in one read with cohorts, credit outstanding, usage by hour, report and email health", async () => {
    const response = await admin("GET", "/overview");
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({
      customers: expect.any(Number),
      cohorts: [
        { name: "out_of_credits", members: expect.any(Number) },
        { name: "low_balance", members: expect.any(Number) },
        { name: "payment_failed", members: expect.any(Number) },
        { name: "credit_expiring", members: expect.any(Number) },
        { name: "topup_failed", members: expect.any(Number) },
        { name: "auto_topup_capped", members: expect.any(Number) },
      ],
      credit_outstanding: { currency: "usd", total_cents: expect.any(Number), total_exact_cents: expect.any(String), total: expect.stringMatching(/^-?\$\d+\.\d{2}/) },
      stripe_reports: { pending: expect.any(Number), failed: expect.any(Number) },
      emails: { sent: expect.any(Number), failed: expect.any(Number), unknown: expect.any(Number) },
      usage_totals: { last_24h: expect.any(Array), last_7d: expect.any(Array) },
      usage_by_hour: expect.any(Array),
    });
  });

  it("GET /admin/customers searches id, email and name (case-insensitive, wildcards literal), with paging", async () => {
    const tag = uniqueId("srch").toLowerCase();
    for (const [suffix, name] of [
      ["a", "Grace Hopper"],
      ["b", "Grace_Kelly"],
      ["c", "Alan Turing"],
    ] as const) {
      expect((await admin("PUT", `/customers/${tag}${suffix}`, { email: `${suffix}@${tag}.example`, name })).status).toBe(201);
      await settle(`${tag}${suffix}`);
    }
    const ids = async (query: string) => (await admin("GET", `/customers?${query}`)).body.customers.map((c: { id: string }) => c.id);
    expect(await ids(`q=${tag}`)).toEqual([`${tag}a`, `${tag}b`, `${tag}c`]);
    expect(await ids(`q=${tag.toUpperCase()}C`)).toEqual([`${tag}c`]);
    expect(await ids(`q=c@${tag}`)).toEqual([`${tag}c`]);
    expect((await ids("q=grace_")).filter((id: string) => id.startsWith(tag))).toEqual([`${tag}b`]);
    const first = await admin("GET", `/customers?q=${tag}&limit=2`);
    expect(first.body.next_cursor).toBe(`${tag}b`);
    expect(await ids(`q=${tag}&limit=2&cursor=${first.body.next_cursor}`)).toEqual([`${tag}c`]);
  });

  it("GET /admin/customers/{id}/usage: requests and exact charges per meter per bucket; 404 for an unknown customer", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(100);
    for (let i = 0; i < 3; i++) await gateway("/v1/search/x", withKey(key));
    await gateway("/v1/other", withKey(key));
    const usage = await admin("GET", `/customers/${id}/usage?hours=24`);
    expect(usage.status).toBe(200);
    expect(usage.body.totals.last_24h).toEqual([
      { meter: "api_requests", requests: 1, charged_exact_cents: "1" },
      { meter: "search", requests: 3, charged_exact_cents: "0.15" },
    ]);
    expect(usage.body.series).toHaveLength(2);
    expect((await admin("GET", `/customers/${uniqueId()}/usage`)).body.error.code).toBe("not_found");
    expect((await admin("GET", `/customers/${id}/usage?hours=0`)).body.error.code).toBe("invalid_request");
  });

  it("POST /admin/customers/{id}/portal-sessions: 201 {url, expires_at}; bad input and unknown customers get house-format errors", async () => {
    const { id } = await customerWithCredit(5);
    const created = await admin("POST", `/customers/${id}/portal-sessions`, {});
    expect(created.status).toBe(201);
    expect(Object.keys(created.body).sort()).toEqual(["expires_at", "url"]);
    expect(created.body.url).toMatch(new RegExp(`^http://gateway\\.test/portal/enter\\?token=${id}\\.[A-Za-z0-9_-]{43}\\.[0-9a-f]{32}$`));
    expect(created.body.expires_at).toBeGreaterThan(Date.now() + 590_000);
    expect(created.body.expires_at).toBeLessThanOrEqual(Date.now() + 600_000);
    const day = await admin("POST", `/customers/${id}/portal-sessions`, { expires_in_seconds: 86_400 });
    expect(day.body.expires_at).toBeGreaterThan(Date.now() + 86_000_000);
    for (const body of [{ expires_in_seconds: 5 }, { expires_in_seconds: 1.5 }, { customer: "x" }]) {
      const bad = await admin("POST", `/customers/${id}/portal-sessions`, body);
      expect(bad.status).toBe(400);
      expect(bad.body.error).toMatchObject({ code: "invalid_request", requestId: expect.any(String) });
    }
    const unknown = await admin("POST", `/customers/${uniqueId()}/portal-sessions`, {});
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("not_found");
    expect((await gateway(`/admin/customers/${id}/portal-sessions`, { method: "POST" })).status).toBe(401);
  });
});
