import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { admin, customerStub, customerWithCredit, echoOrigin, gateway, ORIGIN, uniqueId, withKey } from "../helpers";

describe("what a request cannot reach or leave behind", () => {
  it("keeps every path on the origin: //host is a path (collapsed to /host), not another host", async () => {
    const seen = echoOrigin();
    const { key } = await customerWithCredit(5);
    const response = await gateway("//evil.example/steal?x=1", withKey(key));
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ path: "/evil.example/steal", query: "?x=1" });
    expect(seen.map((r) => new URL(r.url).host)).toEqual([new URL(ORIGIN).host]);
  });

  it("a forged key for an unknown customer id leaves no storage behind", async () => {
    const id = uniqueId("cus_forged");
    expect((await gateway("/v1/x", withKey(`payg_${id}.${"C".repeat(43)}`))).status).toBe(401);
    const tables = await runInDurableObject(customerStub(id), (_instance, state) => state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table'").toArray());
    expect(tables).toEqual([]);
  });

  it("answers 409 when an admin Idempotency-Key is reused for another amount", async () => {
    const { id } = await customerWithCredit(0);
    expect((await admin("POST", `/customers/${id}/credits`, { amount: 10, reason: "x" }, { "idempotency-key": "k-1" })).status).toBe(201);
    const reused = await admin("POST", `/customers/${id}/credits`, { amount: 11, reason: "x" }, { "idempotency-key": "k-1" });
    expect(reused.status).toBe(409);
    expect(reused.body.error.code).toBe("conflict");
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(10_000_000);
  });
});
