import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { OLD_USAGE_BUCKETS } from "../../../durable-objects/customer-account/credit/ledger";
import type { Directory } from "../../../durable-objects/directory/index";
import { TEST_OUTBOX_KEPT } from "../../../durable-objects/directory/index";
import type { WebhookDispatcher } from "../../../durable-objects/webhook-dispatcher";
import { PRUNE } from "../../../durable-objects/webhook-dispatcher/store";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { admin, customerStub, customerWithCredit, gateway, portalCsrf, portalLinkSession, queryPlan, settle, uniqueId } from "../helpers";

// Bounded state: every table of the customer object, the directory and the webhook
// dispatcher has a retention rule and the index it needs (docs/concepts/retention.md).
const DAY = 86_400_000;

afterEach(() => vi.useRealTimers());

/** Moves the clock to `at` and runs the customer's due timers (a timer set for a second later too). */
async function runTimersAt(id: string, at: number) {
  vi.setSystemTime(at);
  await settle(id);
  vi.setSystemTime(at + 2_000);
  await settle(id);
}

type KindTotals = Record<string, { count: number; total_cents: string }>;
const byKind = (summary: { ledger_summary: { kind: string; count: number; total_cents: string; entries: number }[] }) =>
  Object.fromEntries(summary.ledger_summary.map((r) => [r.kind, { count: r.count, total_cents: r.total_cents }])) as KindTotals;
const entriesOf = (summary: { ledger_summary: { kind: string; entries: number }[] }, kind: string) => summary.ledger_summary.find((r) => r.kind === kind)?.entries ?? 0;

describe("usage buckets older than PRICING.usage_retention_days fold into a carried-forward row", () => {
  it("keeps the balance equal to the ledger's sum and every total the summary shows, by index, from a timer", async () => {
    const { id, key } = await customerWithCredit(1000);
    const stub = customerStub(id);
    const keyHash = await sha256Hex(key);
    vi.useFakeTimers({ toFake: ["Date"] });
    const t = Date.now();
    // Charges on two meters in buckets from 100 days ago to now, and the refund of the oldest.
    await runInDurableObject(stub, async (instance) => {
      let n = 0;
      for (const days of [100, 99, 95, 10, 0]) {
        for (const [meter, priceMicros] of [
          ["api_requests", 1_000_000],
          ["search", 50_000],
        ] as const) {
          expect((await instance.authorize({ keyHash, meter, priceMicros, requestId: `req_${n++}`, now: t - days * DAY })).outcome).toBe("ok");
        }
      }
      expect(instance.refund({ requestId: "req_0" }).refunded).toBe(true);
    });
    const before = (await admin("GET", `/customers/${id}`)).body;
    const seriesBefore = (await admin("GET", `/customers/${id}/usage?hours=${24 * 90}`)).body;
    expect(entriesOf(before, "usage")).toBe(10);
    expect(entriesOf(before, "refund")).toBe(1);

    await runTimersAt(id, t + 10_000);
    const after = (await admin("GET", `/customers/${id}`)).body;
    // Three buckets per meter were older than 90 days: each kind and meter now has one carried row.
    expect(entriesOf(after, "usage")).toBe(2 + 2 * 2);
    expect(entriesOf(after, "refund")).toBe(1);
    expect(byKind(after)).toEqual(byKind(before));
    expect(after.balance).toMatchObject({
      available_exact_cents: before.balance.available_exact_cents,
      total_exact_cents: before.balance.total_exact_cents,
      ledger_sum_exact_cents: before.balance.ledger_sum_exact_cents,
    });
    expect(after.usage_last_24h).toEqual(before.usage_last_24h);
    expect((await admin("GET", `/customers/${id}/usage?hours=${24 * 90}`)).body.series).toEqual(seriesBefore.series);
    const check = (await stub.balanceCheck())!;
    expect(check.balanceMicros).toBe(check.ledgerSumMicros);
    expect(check.balanceMicros).toBe(1000 * 1_000_000 - 4 * 1_000_000 - 5 * 50_000);

    const carried = (await admin("GET", `/customers/${id}/ledger?limit=50`)).body.entries.filter((e: { bucket: number | null }) => e.bucket === 0);
    expect(carried.map((e: { kind: string; meter: string; amount: number; count: number }) => [e.kind, e.meter, e.amount, e.count]).sort()).toEqual(
      [
        ["refund", "api_requests", 1_000_000, 1],
        ["usage", "api_requests", -3_000_000, 3],
        ["usage", "search", -150_000, 3],
      ].sort(),
    );
    expect(carried[0].reason).toMatch(/^carried forward: (usage|refund) of buckets up to \d{4}-\d\d-\d\dT/);

    // Later buckets fold into the same rows once they are old enough.
    await runTimersAt(id, t + 81 * DAY);
    const later = (await admin("GET", `/customers/${id}`)).body;
    expect(entriesOf(later, "usage")).toBe(2 + 2);
    expect(byKind(later)).toEqual(byKind(before));
    const recheck = (await stub.balanceCheck())!;
    expect(recheck.balanceMicros).toBe(recheck.ledgerSumMicros);
    expect(recheck.balanceMicros).toBe(check.balanceMicros);

    // The fold reads old buckets through an index, not by scanning the ledger.
    const folding = await runInDurableObject(stub, (_instance, state) => queryPlan(state, OLD_USAGE_BUCKETS, 0, t, 500));
    expect(folding).toMatch(/USING INDEX ledger_usage_bucket/);
    expect(folding).not.toMatch(/SCAN ledger/);
  });
});

describe("admin routes that only need the customer to exist", () => {
  it("do not build its summary (which reads every report): they answer with the reports table out of reach", async () => {
    const { id } = await customerWithCredit(10);
    const cookie = await portalLinkSession(id);
    const csrf = await portalCsrf(cookie);
    const reports = (from: string, to: string) =>
      runInDurableObject(customerStub(id), (_instance, state) => {
        state.storage.sql.exec(`ALTER TABLE ${from} RENAME TO ${to}`);
        return state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'reports'").toArray().length;
      });
    // Only what reads reports can fail now (the summary does: GET /admin/customers/{id} is a 500).
    expect(await reports("reports", "reports_elsewhere")).toBe(0);
    try {
      for (const path of ["keys", "ledger", "emails", "usage", "grants", "storage"]) {
        expect((await admin("GET", `/customers/${id}/${path}`)).status, path).toBe(200);
      }
      // A portal session opened from a link checks its customer without the summary too.
      const signOut = await gateway("/portal/sign-out", {
        method: "POST",
        redirect: "manual",
        headers: { "content-type": "application/x-www-form-urlencoded", origin: "http://gateway.test", cookie },
        body: new URLSearchParams({ _csrf: csrf }).toString(),
      });
      expect(signOut.status).toBe(303);
      expect(signOut.headers.get("location")).toBe("/portal");
    } finally {
      expect(await reports("reports_elsewhere", "reports")).toBe(1);
    }
    expect((await admin("GET", `/customers/${id}`)).status).toBe(200);
  });
});

describe("GET /admin/customers/{id}/storage", () => {
  it("shows rows per table and the database size; unknown customers 404, bad ids 400", async () => {
    const { id } = await customerWithCredit(10);
    const { body, status } = await admin("GET", `/customers/${id}/storage`);
    expect(status).toBe(200);
    expect(body.database_bytes).toBeGreaterThan(0);
    expect(body.tables).toMatchObject({ account: 1, api_keys: 1, grants: 1, ledger: 1, reports: 0, report_totals: 0, stripe_events: 0 });
    expect(Object.keys(body.tables).some((name) => name.startsWith("_cf_") || name.startsWith("sqlite_"))).toBe(false);
    expect((await admin("GET", `/customers/${uniqueId()}/storage`)).status).toBe(404);
    expect((await admin("GET", "/customers/bad%20id/storage")).body.error.code).toBe("invalid_request");
  });
});

describe("the directory's local test outbox", () => {
  it(`keeps the newest ${TEST_OUTBOX_KEPT} test emails, however many are sent`, async () => {
    const ns = env.DIRECTORY as DurableObjectNamespace<Directory>;
    const directory = ns.get(ns.idFromName("global"));
    let last = 0;
    for (let i = 0; i < TEST_OUTBOX_KEPT + 20; i++) {
      last = await directory.recordTestEmail({ to: "t@example.com", subject: `s${i}`, text: "x", html: null });
    }
    const rows = await runInDurableObject(directory, (_instance, state) => state.storage.sql.exec("SELECT MIN(id) AS lo, COUNT(*) AS n FROM test_outbox").one());
    expect(rows).toEqual({ lo: last - TEST_OUTBOX_KEPT + 1, n: TEST_OUTBOX_KEPT });
  });
});

describe("the webhook dispatcher's events", () => {
  it("are pruned after 30 days even when no endpoint is subscribed (no delivery alarm ever runs), by index", async () => {
    // A dispatcher of its own: no endpoints, whatever other tests registered on the global one.
    const ns = env.WEBHOOK_DISPATCHER as DurableObjectNamespace<WebhookDispatcher>;
    const stub = ns.get(ns.idFromName(uniqueId("dispatcher_")));
    const event = (id: string) => ({ id, type: "customer.balance.low" as const, customerId: "cus_retention", body: "{}" });
    vi.useFakeTimers({ toFake: ["Date"] });
    const t = Date.now();
    expect(await stub.accept([event("evt_old")])).toEqual({ accepted: 1 });
    vi.setSystemTime(t + 29 * DAY);
    expect(await stub.accept([event("evt_mid")])).toEqual({ accepted: 1 });
    vi.setSystemTime(t + 31 * DAY);
    expect(await stub.accept([event("evt_new")])).toEqual({ accepted: 1 });
    const ids = await runInDurableObject(stub, (_instance, state) =>
      state.storage.sql
        .exec("SELECT id FROM events ORDER BY received_at")
        .toArray()
        .map((r) => r.id),
    );
    expect(ids).toEqual(["evt_mid", "evt_new"]);
    const plans = await runInDurableObject(stub, (_instance, state) => [queryPlan(state, PRUNE.deliveries, t), queryPlan(state, PRUNE.events, t)]);
    expect(plans[0]).toMatch(/USING INDEX deliveries_created/);
    expect(plans[1]).toMatch(/USING INDEX events_received/);
    expect(plans[1]).toMatch(/USING (COVERING )?INDEX sqlite_autoindex_deliveries_2/);
  });
});
