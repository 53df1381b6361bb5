import { describe, expect, it } from "vitest";
import { admin, customerStub, customerWithCredit, echoOrigin, gateway, uniqueId, withKey } from "../helpers";

describe("security", () => {
  it("refuses the admin API without the right token", async () => {
    for (const authorization of [undefined, "Bearer wrong-token-0123456789", "Basic dGVzdA==", "Bearer "]) {
      const response = await gateway("/admin/customers/whoever", { headers: authorization ? { authorization } : {} });
      expect(response.status).toBe(401);
      expect(((await response.json()) as any).error.code).toBe("unauthorized");
    }
  });

  it("answers 401 for a missing, malformed or unknown key, without touching the origin", async () => {
    const seen = echoOrigin();
    const { id } = await customerWithCredit(5);
    const cases: [Record<string, string>, string][] = [
      [{}, "unauthorized"],
      [{ authorization: "Bearer not-a-key" }, "invalid_api_key"],
      [{ authorization: `Bearer payg_${id}.${"A".repeat(43)}` }, "invalid_api_key"],
      [{ "x-api-key": `payg_${uniqueId()}.${"B".repeat(43)}` }, "invalid_api_key"],
    ];
    for (const [headers, code] of cases) {
      const response = await gateway("/v1/x", { headers });
      expect(response.status).toBe(401);
      expect(((await response.json()) as any).error).toMatchObject({ code, requestId: expect.any(String) });
    }
    expect(seen).toHaveLength(0);
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: 5_000_000 });
  });

  it("stores keys only as hashes and shows the key once", async () => {
    const { id, key } = await customerWithCredit(0);
    const listed = await admin("GET", `/customers/${id}/keys`);
    expect(JSON.stringify(listed.body)).not.toContain(key.split(".")[1]);
    expect(listed.body.keys[0].prefix).toBe(key.slice(0, key.indexOf(".") + 5));
  });

  it("revocation is immediate: the very next request with that key gets 401", async () => {
    echoOrigin();
    const { id, key, keyId } = await customerWithCredit(10);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    expect((await admin("DELETE", `/customers/${id}/keys/${keyId}`)).status).toBe(204);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(401);
    expect((await admin("DELETE", `/customers/${id}/keys/${keyId}`)).status).toBe(404);
  });

  it("one customer's key never reaches another customer's balance", async () => {
    echoOrigin();
    const a = await customerWithCredit(10);
    const b = await customerWithCredit(10);
    const forged = `payg_${b.id}.${a.key.split(".")[1]}`;
    expect((await gateway("/v1/x", withKey(forged))).status).toBe(401);
    expect((await gateway("/v1/x", withKey(a.key))).status).toBe(200);
    expect(await customerStub(a.id).balanceCheck()).toMatchObject({ balanceMicros: 9_000_000 });
    expect(await customerStub(b.id).balanceCheck()).toMatchObject({ balanceMicros: 10_000_000 });
  });

  it("blocks every request from a deleted customer", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(10);
    await customerStub(id).applyStripeEvent(id, {
      id: `evt_${uniqueId()}`,
      type: "customer.deleted",
      created: Math.floor(Date.now() / 1000),
      data: { object: { id, object: "customer", deleted: true } },
    } as never);
    const response = await gateway("/v1/x", withKey(key));
    expect(response.status).toBe(401);
    expect(((await response.json()) as any).error.code).toBe("customer_deleted");
  });
});
