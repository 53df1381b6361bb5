import { describe, expect, it } from "vitest";
import { admin, customerStub, customerWithCredit, echoOrigin, gateway, withKey } from "../helpers";

describe("the request path (happy)", () => {
  it("lets exactly three 1-cent requests through 3 cents of credit, then answers 402 with the template body", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(3, { name: "Ada Lovelace" });
    for (let i = 0; i < 3; i++) {
      const ok = await gateway("/v1/things?x=1", withKey(key));
      expect(ok.status).toBe(200);
      expect(ok.headers.get("x-payg-charge-cents")).toBe("1");
      expect(ok.headers.get("x-payg-balance-cents")).toBe(String(2 - i));
      const echoed = (await ok.json()) as Record<string, unknown>;
      expect(echoed).toMatchObject({ path: "/v1/things", query: "?x=1", customer: id, authorization: null });
    }
    const refused = await gateway("/v1/things", withKey(key));
    expect(refused.status).toBe(402);
    expect(await refused.json()).toEqual({
      code: "insufficient_credit",
      message: "Your API credit is used up: $0.00 left, $0.01 needed. Top up at http://127.0.0.1:8787/portal",
      customer_id: id,
      available_balance_cents: 0,
      minimum_balance_cents: 0,
      request_price_cents: "1",
      topup_url: "http://127.0.0.1:8787/portal",
      // No PUBLIC_URL here: the portal link is the top-up page.
      next_steps: { topup_url: "http://127.0.0.1:8787/portal", portal_url: "http://127.0.0.1:8787/portal" },
    });

    const grant = await admin("POST", `/customers/${id}/credits`, { amount: 1, reason: "top-up" });
    expect(grant.body.balance.available_cents).toBe(1);
    expect((await gateway("/v1/things", withKey(key))).status).toBe(200);
    expect((await gateway("/v1/things", withKey(key))).status).toBe(402);

    const check = await customerStub(id).balanceCheck();
    expect(check).toMatchObject({ balanceMicros: 0, ledgerSumMicros: 0 });
  });

  it("accepts the key as X-API-Key and never forwards it", async () => {
    echoOrigin();
    const { key } = await customerWithCredit(5);
    const response = await gateway("/anything", { method: "POST", headers: { "x-api-key": key }, body: "hello" });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ method: "POST", body: "hello", apiKey: null, authorization: null });
  });

  it("does not charge free routes", async () => {
    echoOrigin();
    const { key } = await customerWithCredit(1);
    const health = await gateway("/health", withKey(key));
    expect(health.status).toBe(200);
    expect(health.headers.get("x-payg-charge-cents")).toBe("0");
    expect(health.headers.get("x-payg-balance-cents")).toBe("1");
  });
});

describe("the request path (concurrency)", () => {
  it("80 concurrent requests against 50 cents: exactly 50 succeed, 30 get 402, balance ends at 0", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(50);
    const statuses = await Promise.all(Array.from({ length: 80 }, () => gateway("/v1/x", withKey(key)).then((r) => r.status)));
    expect(statuses.filter((s) => s === 200)).toHaveLength(50);
    expect(statuses.filter((s) => s === 402)).toHaveLength(30);
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: 0, ledgerSumMicros: 0 });
  });

  it("holds with several keys of one customer in parallel", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(50);
    const more = await Promise.all([1, 2, 3].map(() => admin("POST", `/customers/${id}/keys`, { name: "parallel" })));
    const keys = [key, ...more.map((m) => m.body.key as string)];
    const statuses = await Promise.all(Array.from({ length: 80 }, (_, i) => gateway("/v1/x", withKey(keys[i % keys.length]!)).then((r) => r.status)));
    expect(statuses.filter((s) => s === 200)).toHaveLength(50);
    expect(statuses.filter((s) => s === 402)).toHaveLength(30);
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: 0, ledgerSumMicros: 0 });
  });
});
