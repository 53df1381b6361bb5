import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { admin, cron, customerStub, customerWithCredit, echoOrigin, gateway, settle, uniqueId, withKey } from "../helpers";

const inDays = (days: number) => Math.floor(Date.now() / 1000) + days * 86_400;

async function customer(profile: Record<string, unknown> = {}) {
  return customerWithCredit(0, { name: "Grace Hopper", ...profile });
}

async function grant(id: string, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  return admin("POST", `/customers/${id}/grants`, { reason: "test", ...body }, headers);
}

describe("credit grants (happy)", () => {
  it("drains in the fixed order: priority, then earliest expiry, then promotional before paid, then oldest", async () => {
    echoOrigin();
    const { id, key } = await customer();
    const paid = (await grant(id, { amount: 2 })).body;
    const promo = (await grant(id, { amount: 2, category: "promotional" })).body;
    const expiring = (await grant(id, { amount: 2, expires_at: inDays(30) })).body;
    const urgent = (await grant(id, { amount: 2, priority: 10 })).body;
    const order: string[] = [];
    for (let i = 0; i < 8; i++) {
      const response = await gateway("/v1/x", withKey(key));
      expect(response.status).toBe(200);
      order.push(response.headers.get("x-payg-grant")!);
    }
    expect(order).toEqual([urgent.id, urgent.id, expiring.id, expiring.id, promo.id, promo.id, paid.id, paid.id]);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(402);
    const listed = (await admin("GET", `/customers/${id}/grants`)).body.grants;
    expect(listed.every((g: { remaining_cents: number; amount_cents: number }) => g.remaining_cents === 0 && g.amount_cents === 2)).toBe(true);
  });

  it("pays one request across grants in one step", async () => {
    const { id, key } = await customer();
    await grant(id, { amount: 2, category: "promotional" });
    await grant(id, { amount: 2 });
    const result = await customerStub(id).authorize({ keyHash: await sha256Hex(key), meter: "api_requests", priceMicros: 3_000_000, requestId: "req_split" });
    expect(result).toMatchObject({ outcome: "ok", chargedMicros: 3_000_000, balanceMicros: 1_000_000 });
    const remaining = (await admin("GET", `/customers/${id}/grants`)).body.grants.map((g: { category: string; remaining_cents: number }) => [g.category, g.remaining_cents]);
    expect(remaining.sort()).toEqual([
      ["paid", 1],
      ["promotional", 0],
    ]);
  });

  it("a grant limited to some meters pays only for them; the 402 rule looks at what the request's meter may use", async () => {
    echoOrigin();
    const { id, key } = await customer();
    await grant(id, { amount: 1, meters: ["search"], category: "promotional" });
    const refused = await gateway("/v1/x", withKey(key));
    expect(refused.status).toBe(402);
    expect(((await refused.json()) as { available_balance_cents: number }).available_balance_cents).toBe(0);
    for (let i = 0; i < 20; i++) expect((await gateway("/v1/search/q", withKey(key))).status).toBe(200);
    expect((await gateway("/v1/search/q", withKey(key))).status).toBe(402);
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: 0, ledgerSumMicros: 0, grantsRemainingMicros: 0 });
  });

  it("a grant past its expiry pays for nothing from the first request after that instant", async () => {
    const { id, key } = await customer();
    const expiresAt = inDays(1);
    await grant(id, { amount: 5, expires_at: expiresAt });
    const stub = customerStub(id);
    const keyHash = await sha256Hex(key);
    const before = await stub.authorize({ keyHash, meter: "api_requests", priceMicros: 1_000_000, requestId: "r1", now: expiresAt * 1000 - 1 });
    expect(before.outcome).toBe("ok");
    const after = await stub.authorize({ keyHash, meter: "api_requests", priceMicros: 1_000_000, requestId: "r2", now: expiresAt * 1000 });
    expect(after.outcome).toBe("insufficient_credit");
  });

  it("the alarm writes an expiry into the ledger, and the balance still equals the ledger", async () => {
    const { id } = await customer();
    const short = (await grant(id, { amount: 3, expires_at: Math.floor(Date.now() / 1000) + 1 })).body;
    await grant(id, { amount: 2 });
    await new Promise((r) => setTimeout(r, 1_100));
    await runDurableObjectAlarm(customerStub(id));
    const listed = (await admin("GET", `/customers/${id}/grants`)).body.grants;
    expect(listed.find((g: { id: string }) => g.id === short.id)).toMatchObject({ status: "expired", remaining_cents: 0 });
    const ledger = (await admin("GET", `/customers/${id}/ledger`)).body.entries;
    expect(ledger[0]).toMatchObject({ kind: "expiry", amount: -3_000_000, grant_id: short.id });
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: 2_000_000, ledgerSumMicros: 2_000_000 });
  });

  it("warns before expiry: the credit_expiring cohort and its email, with {{credit.expiring_soon}}", async () => {
    const { id } = await customer({ email: `exp-${uniqueId()}@example.com` });
    await grant(id, { amount: 250, expires_at: inDays(3) });
    await settle(id);
    const summary = (await admin("GET", `/customers/${id}`)).body;
    expect(summary.cohorts.current.map((c: { cohort: string }) => c.cohort)).toContain("credit_expiring");
    expect(summary.balance.expiring_soon_cents).toBe(250);
    await cron();
    const emails = (await admin("GET", `/customers/${id}/emails`)).body.emails;
    expect(emails[0]).toMatchObject({ cohort: "credit_expiring", subject: "Some of your API credit expires soon" });
    expect(emails[0].text).toContain("$2.50 of your API credit expires");
  });

  it("voids what remains of a grant as a ledger entry", async () => {
    echoOrigin();
    const { id, key } = await customer();
    const g = (await grant(id, { amount: 5 })).body;
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    const voided = await admin("DELETE", `/customers/${id}/grants/${g.id}`);
    expect(voided).toMatchObject({ status: 200, body: { id: g.id, status: "voided", remaining_cents: 0 } });
    expect((await admin("GET", `/customers/${id}/ledger`)).body.entries[0]).toMatchObject({ kind: "void", amount: -4_000_000 });
    expect((await gateway("/v1/x", withKey(key))).status).toBe(402);
    expect((await admin("DELETE", `/customers/${id}/grants/${g.id}`)).status).toBe(404);
  });

  it("honours Idempotency-Key: the same request returns the same grant, another body is a 409", async () => {
    const { id } = await customer();
    const first = await grant(id, { amount: 7, category: "promotional" }, { "idempotency-key": "promo-7" });
    const again = await grant(id, { amount: 7, category: "promotional" }, { "idempotency-key": "promo-7" });
    expect([first.status, again.status]).toEqual([201, 200]);
    expect(again.body.id).toBe(first.body.id);
    expect((await grant(id, { amount: 8, category: "promotional" }, { "idempotency-key": "promo-7" })).status).toBe(409);
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: 7_000_000 });
  });

  it("keeps POST /credits working: a paid never-expiring grant, or a deduction that drains grants and then becomes debt", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(5);
    expect((await admin("GET", `/customers/${id}/grants`)).body.grants[0]).toMatchObject({ category: "paid", expires_at: null, source: "admin", amount_cents: 5 });
    expect((await admin("POST", `/customers/${id}/credits`, { amount: -7, reason: "correction" })).status).toBe(201);
    expect((await admin("GET", `/customers/${id}`)).body.balance).toMatchObject({ available_exact_cents: "-2", debt_exact_cents: "2", ledger_sum_exact_cents: "-2" });
    expect((await gateway("/v1/x", withKey(key))).status).toBe(402);
    // New credit pays the debt first.
    await admin("POST", `/customers/${id}/credits`, { amount: 3, reason: "top-up" });
    expect((await admin("GET", `/customers/${id}`)).body.balance).toMatchObject({ available_exact_cents: "1", debt_exact_cents: "0" });
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
  });
});

describe("credit grants (errors)", () => {
  it("refuses bad grants with a JSON error and changes nothing", async () => {
    const { id } = await customerWithCredit(1);
    const cases: Record<string, unknown>[] = [
      { amount: 0 },
      { amount: 100_000_000 },
      { amount: 1.5 },
      { amount: 5, category: "gift" },
      { amount: 5, expires_at: Math.floor(Date.now() / 1000) - 10 },
      { amount: 5, meters: ["no_such_meter"] },
      { amount: 5, colour: "red" },
      { amount: 5, priority: -1 },
    ];
    for (const body of cases) {
      const response = await grant(id, body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.body.error).toMatchObject({ code: "invalid_request", message: expect.any(String), requestId: expect.any(String) });
    }
    expect((await grant("nobody_here", { amount: 5 })).status).toBe(404);
    expect((await admin("POST", `/customers/${id}/credits`, { amount: 100_000_000, reason: "too much" })).status).toBe(400);
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: 1_000_000, rows: 1 });
  });
});

describe("per-key spend caps", () => {
  it("100 parallel requests on a key capped at 30 cents pass exactly 30; the customer's other keys keep working", async () => {
    echoOrigin();
    const { id } = await customerWithCredit(1_000);
    const capped = await admin("POST", `/customers/${id}/keys`, { name: "capped", spend_cap_cents: 30, cap_period: "day" });
    expect(capped.status).toBe(201);
    const statuses = await Promise.all(Array.from({ length: 100 }, () => gateway("/v1/x", withKey(capped.body.key)).then((r) => r.status)));
    expect(statuses.filter((s) => s === 200)).toHaveLength(30);
    expect(statuses.filter((s) => s === 402)).toHaveLength(70);
    const refused = await gateway("/v1/x", withKey(capped.body.key));
    expect(((await refused.json()) as any).error).toMatchObject({ code: "key_cap_reached", details: { cap_cents: 30, period: "day" } });
    const other = await admin("POST", `/customers/${id}/keys`, { name: "other" });
    expect((await gateway("/v1/x", withKey(other.body.key))).status).toBe(200);
    const keys = (await admin("GET", `/customers/${id}/keys`)).body.keys;
    expect(keys.find((k: { id: string }) => k.id === capped.body.id)).toMatchObject({ spend_cap_cents: 30, cap_period: "day", period_spend_exact_cents: "30" });
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: 969_000_000 });
  });

  it("PATCH raises, lowers or removes a cap; bad caps are refused", async () => {
    echoOrigin();
    const { id } = await customerWithCredit(100);
    const key = (await admin("POST", `/customers/${id}/keys`, { spend_cap_cents: 1 })).body;
    expect((await gateway("/v1/x", withKey(key.key))).status).toBe(200);
    expect((await gateway("/v1/x", withKey(key.key))).status).toBe(402);
    expect((await admin("PATCH", `/customers/${id}/keys/${key.id}`, { spend_cap_cents: 2, cap_period: "month" })).body).toMatchObject({ spend_cap_cents: 2, cap_period: "month" });
    expect((await gateway("/v1/x", withKey(key.key))).status).toBe(200);
    expect((await gateway("/v1/x", withKey(key.key))).status).toBe(402);
    expect((await admin("PATCH", `/customers/${id}/keys/${key.id}`, { spend_cap_cents: null })).status).toBe(200);
    expect((await gateway("/v1/x", withKey(key.key))).status).toBe(200);
    expect((await admin("PATCH", `/customers/${id}/keys/${key.id}`, { spend_cap_cents: -5 })).status).toBe(400);
    expect((await admin("PATCH", `/customers/${id}/keys/${key.id}`, {})).status).toBe(400);
    expect((await admin("PATCH", `/customers/${id}/keys/key_nope`, { spend_cap_cents: 5 })).status).toBe(404);
  });
});

describe("charges carry the gateway's request id", () => {
  it("a retried authorize replays the first result; a refund is applied at most once", async () => {
    const { id, key } = await customerWithCredit(5);
    const stub = customerStub(id);
    const keyHash = await sha256Hex(key);
    const input = { keyHash, meter: "api_requests", priceMicros: 1_000_000, requestId: "req_lost_reply" };
    expect(await stub.authorize(input)).toMatchObject({ outcome: "ok", chargedMicros: 1_000_000 });
    expect(await stub.authorize({ ...input, retry: true })).toMatchObject({ outcome: "ok", replayed: true });
    expect((await stub.balanceCheck())!.balanceMicros).toBe(4_000_000);
    // The same id without the retry flag (the worker always sets it on a retry): the charge log's key
    // refuses a second charge, and the first result comes back.
    expect(await stub.authorize(input)).toMatchObject({ outcome: "ok", replayed: true, chargedMicros: 1_000_000 });
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 4_000_000, ledgerSumMicros: 4_000_000 });
    expect(await stub.refund({ requestId: "req_lost_reply" })).toMatchObject({ refunded: true, balanceMicros: 5_000_000 });
    expect(await stub.refund({ requestId: "req_lost_reply" })).toMatchObject({ refunded: false, reason: "already_refunded" });
    expect(await stub.refund({ requestId: "req_never_seen" })).toMatchObject({ refunded: false, reason: "unknown_request" });
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 5_000_000, ledgerSumMicros: 5_000_000 });
  });

  it("bounds refunds per customer: past GOVERNANCE.refund_limit_per_hour a failed request stays charged, and the admin API shows it", async () => {
    echoOrigin({ status: 502 });
    const { id, key } = await customerWithCredit(100);
    const charged: string[] = [];
    for (let i = 0; i < 22; i++) {
      const response = await gateway("/v1/x", withKey(key));
      expect(response.status).toBe(502);
      charged.push(response.headers.get("x-payg-charge-cents")!);
    }
    expect(charged.slice(0, 20).every((c) => c === "0")).toBe(true);
    expect(charged.slice(20)).toEqual(["1", "1"]);
    const summary = (await admin("GET", `/customers/${id}`)).body;
    expect(summary.balance.available_cents).toBe(98);
    expect(summary.refunds).toMatchObject({ denied_total: 2, last_denied_at: expect.any(Number) });
  });
});

describe("an overdraft paid off by a later grant, then refunded", () => {
  const CENT = 1_000_000;
  /** A customer allowed to overdraw to -20 cents, with no credit. */
  async function overdraftCustomer() {
    const id = uniqueId("cus_od");
    const stub = customerStub(id);
    await stub.upsertProfile(id, { name: "Overdraft", minimum_balance_cents: -20 });
    const keyHash = await sha256Hex((await stub.createKey(null))!.key);
    return { id, stub, keyHash };
  }

  it("a refund gives the whole charge back, as a refund grant, when a top-up has paid its debt", async () => {
    const { id, stub, keyHash } = await overdraftCustomer();
    expect(await stub.authorize({ keyHash, meter: "api_requests", priceMicros: 10 * CENT, requestId: "r1" })).toMatchObject({ outcome: "ok" });
    expect((await stub.balanceCheck())!).toMatchObject({ balanceMicros: -10 * CENT, debtMicros: 10 * CENT });
    await stub.credit({ customerId: id, amountCents: 50, reason: "top-up" });
    expect((await stub.balanceCheck())!).toMatchObject({ balanceMicros: 40 * CENT, debtMicros: 0 });
    expect(await stub.refund({ requestId: "r1" })).toMatchObject({ refunded: true, restoredMicros: 10 * CENT, balanceMicros: 50 * CENT });
    expect((await stub.balanceCheck())!).toMatchObject({ balanceMicros: 50 * CENT, ledgerSumMicros: 50 * CENT, grantsRemainingMicros: 50 * CENT, debtMicros: 0 });
    const grants = (await admin("GET", `/customers/${id}/grants`)).body.grants as { source: string; remaining_cents: number }[];
    expect(grants.filter((g) => g.source === "refund")).toEqual([expect.objectContaining({ remaining_cents: 10 })]);
  });

  it("settling a hold with 0 units releases all of it when a top-up has paid its debt", async () => {
    const { id, stub, keyHash } = await overdraftCustomer();
    const held = await stub.authorize({ keyHash, meter: "header_tokens", priceMicros: 100_000, requestId: "h1", hold: { units: 100, onMissing: "hold" } });
    expect(held).toMatchObject({ outcome: "ok", heldUnits: 100 });
    await stub.credit({ customerId: id, amountCents: 50, reason: "top-up" });
    expect(await stub.settleHold({ requestId: "h1", units: 0, reason: "completed" })).toMatchObject({ chargedMicros: 0, balanceMicros: 50 * CENT });
    expect((await stub.balanceCheck())!).toMatchObject({ balanceMicros: 50 * CENT, ledgerSumMicros: 50 * CENT, debtMicros: 0 });
  });

  it("a partial settlement charges the units and gives back the rest of the repaid debt", async () => {
    const { id, stub, keyHash } = await overdraftCustomer();
    await stub.authorize({ keyHash, meter: "header_tokens", priceMicros: 100_000, requestId: "h2", hold: { units: 100, onMissing: "hold" } });
    await stub.credit({ customerId: id, amountCents: 50, reason: "top-up" });
    // 30 units at 0.1 cent: 3 cents charged, 7 of the 10 held come back.
    expect(await stub.settleHold({ requestId: "h2", units: 30, reason: "completed" })).toMatchObject({ chargedMicros: 3 * CENT, balanceMicros: 47 * CENT });
    expect((await stub.balanceCheck())!).toMatchObject({ balanceMicros: 47 * CENT, ledgerSumMicros: 47 * CENT });
  });
});

describe("per-key spend caps across periods and cap changes", () => {
  const CENT = 1_000_000;
  const DAY = 86_400_000;

  /** A key of a fresh customer with $10 of credit, optionally capped. */
  async function keyed(cap?: { spend_cap_cents: number; cap_period: "day" | "month" }) {
    const { id } = await customerWithCredit(1_000);
    const created = await admin("POST", `/customers/${id}/keys`, cap ?? {});
    expect(created.status).toBe(201);
    return { id, stub: customerStub(id), keyId: created.body.id as string, keyHash: await sha256Hex(created.body.key as string) };
  }

  it("a refund of a charge made before the cap was set gives back cap room the charge never took", async () => {
    const { id, stub, keyId, keyHash } = await keyed();
    const now = Date.now();
    // 20 cents charged while the key has no cap: not counted anywhere.
    expect(await stub.authorize({ keyHash, meter: "api_requests", priceMicros: 20 * CENT, requestId: "pre_cap", now })).toMatchObject({ outcome: "ok" });
    expect((await admin("PATCH", `/customers/${id}/keys/${keyId}`, { spend_cap_cents: 30, cap_period: "day" })).status).toBe(200);
    expect(await stub.authorize({ keyHash, meter: "api_requests", priceMicros: 25 * CENT, requestId: "c1", now: now + 1 })).toMatchObject({ outcome: "ok" });
    // The pre-cap charge fails at the origin and is refunded.
    expect(await stub.refund({ requestId: "pre_cap", now: now + 2 })).toMatchObject({ refunded: true });
    // 25 cents of the 30-cent cap are spent and kept: another 25 must not pass.
    const next = await stub.authorize({ keyHash, meter: "api_requests", priceMicros: 25 * CENT, requestId: "c2", now: now + 3 });
    expect(next.outcome).toBe("key_cap_reached");
  });

  it("extending a hold opened in yesterday's period does not wipe today's spend on the key", async () => {
    const { stub, keyHash } = await keyed({ spend_cap_cents: 100, cap_period: "day" });
    const midnight = Math.ceil((Date.now() + 60_000) / DAY) * DAY;
    const before = midnight - 20_000;
    const after = midnight + 10_000;
    // A streaming request opens a 10-cent hold 20 s before midnight.
    expect(await stub.authorize({ keyHash, meter: "json_tokens", priceMicros: CENT, requestId: "stream", hold: { units: 10, onMissing: "hold" }, now: before })).toMatchObject({
      outcome: "ok",
      heldUnits: 10,
    });
    // After midnight: a 50-cent charge on the new day's period.
    expect(await stub.authorize({ keyHash, meter: "api_requests", priceMicros: 50 * CENT, requestId: "day2_a", now: after })).toMatchObject({ outcome: "ok" });
    // The stream extends its hold by 10 cents (it fits: 50 + 10 <= 100).
    expect(await stub.extendHold({ requestId: "stream", units: 10, now: after + 1 })).toMatchObject({ grantedUnits: 10 });
    // Today the key has spent at least 50 (60 if the extension counts today): another 60 takes it past 100 either way.
    const next = await stub.authorize({ keyHash, meter: "api_requests", priceMicros: 60 * CENT, requestId: "day2_b", now: after + 2 });
    expect(next.outcome).toBe("key_cap_reached");
  });

  it("changing a key's cap from per day to per month keeps what it spent today (which is in this month)", async () => {
    const { id, stub, keyId, keyHash } = await keyed({ spend_cap_cents: 30, cap_period: "day" });
    let now = Date.now();
    if (new Date(now).getUTCDate() === 1) now += DAY; // a day that is not the first of its month
    expect(await stub.authorize({ keyHash, meter: "api_requests", priceMicros: 30 * CENT, requestId: "d1", now })).toMatchObject({ outcome: "ok" });
    expect((await admin("PATCH", `/customers/${id}/keys/${keyId}`, { spend_cap_cents: 30, cap_period: "month" })).status).toBe(200);
    // 30 of this month's 30 cents are spent: nothing more may pass this month.
    const next = await stub.authorize({ keyHash, meter: "api_requests", priceMicros: 30 * CENT, requestId: "d2", now: now + 1 });
    expect(next.outcome).toBe("key_cap_reached");
  });
});
