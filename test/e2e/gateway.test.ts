import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { customerWithKey, type Gateway, startGateway } from "./harness";

let gateway: Gateway;
let origin: Awaited<ReturnType<typeof startDemoOrigin>>;

beforeAll(async () => {
  origin = await startDemoOrigin({ port: 0 });
  gateway = await startGateway({ vars: { ORIGIN_URL: origin.url } });
});
afterAll(async () => {
  await gateway?.stop();
  await origin?.close();
});

const customer = (id: string, cents: number) => customerWithKey(gateway, id, cents);

const bearer = (key: string) => ({ headers: { authorization: `Bearer ${key}` } });

describe("wrangler dev, over HTTP", () => {
  it("3 cents at 1 cent a request: three 200s, then a 402 JSON body; a grant unblocks the next request", async () => {
    const { key } = await customer("cus_e2e_three", 3);
    for (let i = 0; i < 3; i++) {
      const response = await gateway.fetch(`/v1/hello?i=${i}`, bearer(key));
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ path: "/v1/hello", query: `?i=${i}`, customer: "cus_e2e_three" });
    }
    const refused = await gateway.fetch("/v1/hello", bearer(key));
    expect(refused.status).toBe(402);
    expect(refused.headers.get("content-type")).toContain("application/json");
    expect(await refused.json()).toMatchObject({ code: "insufficient_credit", customer_id: "cus_e2e_three", available_balance_cents: 0 });
    await gateway.admin("POST", "/customers/cus_e2e_three/credits", { amount: 1, reason: "top-up" });
    expect((await gateway.fetch("/v1/hello", bearer(key))).status).toBe(200);
    expect((await gateway.fetch("/v1/hello", bearer(key))).status).toBe(402);
  });

  it("80 concurrent requests against 50 cents: exactly 50 pass and the ledger agrees", async () => {
    const { key } = await customer("cus_e2e_race", 50);
    const statuses = await Promise.all(Array.from({ length: 80 }, () => gateway.fetch("/v1/race", bearer(key)).then((r) => r.status)));
    expect(statuses.filter((s) => s === 200)).toHaveLength(50);
    expect(statuses.filter((s) => s === 402)).toHaveLength(30);
    const summary = await gateway.admin("GET", "/customers/cus_e2e_race");
    expect(summary.body.balance).toMatchObject({ available_cents: 0, available_exact_cents: "0", ledger_sum_exact_cents: "0" });
  });

  it("revocation is immediate and keys never cross customers", async () => {
    const a = await customer("cus_e2e_a", 10);
    const b = await customer("cus_e2e_b", 10);
    expect((await gateway.fetch("/v1/x", bearer(a.key))).status).toBe(200);
    expect(
      (await gateway.fetch(`/admin/customers/cus_e2e_a/keys/${a.keyId}`, { method: "DELETE", headers: { authorization: "Bearer e2e-admin-token-0123456789abcdef" } })).status,
    ).toBe(204);
    const revoked = await gateway.fetch("/v1/x", bearer(a.key));
    expect(revoked.status).toBe(401);
    expect((await revoked.json()).error.code).toBe("invalid_api_key");
    // B's secret presented under A's id routes to A's object, where it matches nothing.
    const forged = `payg_cus_e2e_a.${b.key.split(".")[1]}`;
    expect((await gateway.fetch("/v1/x", bearer(forged))).status).toBe(401);
    expect((await gateway.admin("GET", "/customers/cus_e2e_b")).body.balance.available_cents).toBe(10);
  });

  it("refunds the charge when the origin fails (502/503/504, no answer), charges a plain 500, and answers a dead origin with a JSON 502", async () => {
    const { key } = await customer("cus_e2e_faults", 6);
    const failed = await gateway.fetch("/fault/503", bearer(key));
    expect(failed.status).toBe(503);
    expect(failed.headers.get("x-payg-charge-cents")).toBe("0");
    // GOVERNANCE.refund_on does not list 500 by default: the origin did the work and said so.
    const crashed = await gateway.fetch("/fault/500", bearer(key));
    expect(crashed.status).toBe(500);
    expect(crashed.headers.get("x-payg-charge-cents")).toBe("1");
    const reset = await gateway.fetch("/fault/reset", bearer(key));
    expect(reset.status).toBe(502);
    expect((await reset.json()).error.code).toBe("origin_unavailable");
    expect((await gateway.admin("GET", "/customers/cus_e2e_faults")).body.balance.available_cents).toBe(5);
  });

  it("bad admin input gets a JSON error with a stable code and changes nothing", async () => {
    await customer("cus_e2e_bad", 7);
    const malformed = await gateway.fetch("/admin/customers/cus_e2e_bad/credits", {
      method: "POST",
      headers: { authorization: "Bearer e2e-admin-token-0123456789abcdef", "content-type": "application/json" },
      body: "{not json",
    });
    expect(malformed.status).toBe(400);
    expect((await malformed.json()).error.code).toBe("invalid_json");
    expect((await gateway.admin("POST", "/customers/cus_e2e_bad/credits", { amount: 1.5, reason: "x" })).body.error.code).toBe("invalid_request");
    expect((await gateway.admin("GET", "/customers/cus_e2e_bad")).body.balance.available_cents).toBe(7);
    expect((await gateway.fetch("/admin/customers/cus_e2e_bad")).status).toBe(401);
  });
});
