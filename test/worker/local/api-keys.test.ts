import { describe, expect, it } from "vitest";
import { generateApiKey } from "../../../src/lib/api-key-format";
import { admin, clientIp, customerStub, customerWithCredit, echoOrigin, freshWindow, gateway, gatewayWith, legacyKey, objectExists, uniqueId, withKey } from "../helpers";

const SIGNED = /^payg_[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{43}\.[0-9a-f]{32}$/;
const UNSIGNED = /^payg_[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{43}$/;

const errorOf = async (response: Response) => ((await response.json()) as { error: { code: string; message: string; requestId: string } }).error;

describe("signed API keys (happy)", () => {
  it("issues keys carrying a MAC of the customer id and secret, which work and are listed as signed", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(2);
    expect(key).toMatch(SIGNED);
    expect(key.startsWith(`payg_${id}.`)).toBe(true);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    const listed = await admin("GET", `/customers/${id}/keys`);
    expect(listed.body.keys).toEqual([expect.objectContaining({ signed: true, prefix: key.slice(0, key.indexOf(".") + 5) })]);
  });

  it("keeps accepting a key issued before keys were signed, until it is revoked", async () => {
    echoOrigin();
    const { id } = await customerWithCredit(2);
    const legacy = await legacyKey(id);
    expect(legacy.key).toMatch(UNSIGNED);
    expect((await gateway("/v1/x", withKey(legacy.key))).status).toBe(200);
    const listed = await admin("GET", `/customers/${id}/keys`);
    expect(listed.body.keys.map((k: { signed: boolean }) => k.signed)).toEqual([true, false]);
    expect((await admin("DELETE", `/customers/${id}/keys/${legacy.id}`)).status).toBe(204);
    expect((await gateway("/v1/x", withKey(legacy.key))).status).toBe(401);
  });

  it("without KEY_SIGNING_SECRET (a local quick start) issues unsigned keys, and the worker leaves every key to the object", async () => {
    echoOrigin();
    expect((await generateApiKey("cus_local")).key).toMatch(UNSIGNED);
    const { id, key } = await customerWithCredit(3);
    const legacy = await legacyKey(id);
    for (const k of [key, legacy.key]) expect((await gatewayWith({ KEY_SIGNING_SECRET: "" }, "/v1/x", withKey(k))).status).toBe(200);
    const forged = await gatewayWith({ KEY_SIGNING_SECRET: "" }, "/v1/x", withKey(`payg_${id}.${"F".repeat(43)}`));
    expect(forged.status).toBe(401);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(1_000_000);
  });
});

describe("signed API keys (error)", () => {
  it("answers a bad MAC with the same 401 invalid_api_key as an unknown key", async () => {
    const { id, key } = await customerWithCredit(1);
    const badMac = key.slice(0, -4) + (key.endsWith("0000") ? "1111" : "0000");
    const response = await gateway("/v1/x", withKey(badMac));
    expect(response.status).toBe(401);
    expect(await errorOf(response)).toMatchObject({ code: "invalid_api_key", message: "Unknown or revoked API key." });
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(1_000_000);
  });
});

describe("signed API keys (security)", () => {
  it("stops a forged customer id at the worker: 401, and no Durable Object is ever started for it", async () => {
    const seen = echoOrigin();
    const real = await customerWithCredit(5);
    // A well-formed key: a real one with the customer id swapped for one never seen.
    const id = uniqueId("cus_forged");
    const forged = real.key.replace(`payg_${real.id}.`, `payg_${id}.`);
    const response = await gateway("/v1/x", withKey(forged));
    expect(response.status).toBe(401);
    expect((await errorOf(response)).code).toBe("invalid_api_key");
    const checkout = await gateway("/billing/checkout", withKey(forged, { method: "POST", body: '{"amount_cents":1000}' }));
    expect(checkout.status).toBe(401);
    expect(await objectExists(id)).toBe(false);
    expect(seen).toHaveLength(0);
  });

  it("refuses another key's MAC or a changed secret under a real customer id, before that customer's object", async () => {
    echoOrigin();
    const a = await customerWithCredit(5);
    const b = await customerWithCredit(5);
    const [, aSecret, aMac] = a.key.split(".");
    const [bHead, , bMac] = b.key.split(".");
    for (const forged of [`${bHead}.${aSecret}.${aMac}`, `${bHead}.${aSecret}.${bMac}`]) {
      expect((await gateway("/v1/x", withKey(forged))).status).toBe(401);
    }
    expect((await customerStub(b.id).balanceCheck())!.balanceMicros).toBe(5_000_000);
  });

  it("after rotation, ACCEPT_UNSIGNED_KEYS=false refuses unsigned keys at the worker while signed keys keep working", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(5);
    const legacy = await legacyKey(id);
    // Accepted (and remembered by this isolate) before the rotation: what a key passed under one
    // configuration is never taken for another.
    expect((await gateway("/v1/x", withKey(legacy.key))).status).toBe(200);
    const rotated = { ACCEPT_UNSIGNED_KEYS: "false" };
    const refused = await gatewayWith(rotated, "/v1/x", withKey(legacy.key));
    expect(refused.status).toBe(401);
    expect((await errorOf(refused)).code).toBe("invalid_api_key");
    expect((await gatewayWith(rotated, "/v1/x", withKey(key))).status).toBe(200);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(3_000_000);

    const unknown = uniqueId("cus_forged");
    expect((await gatewayWith(rotated, "/v1/x", withKey(`payg_${unknown}.${"U".repeat(43)}`))).status).toBe(401);
    expect(await objectExists(unknown)).toBe(false);
  });

  it("limits failed authentications per client IP: past 100 a minute, 429 rate_limited with Retry-After", async () => {
    echoOrigin();
    const { key } = await customerWithCredit(5);
    const ip = clientIp();
    await freshWindow();
    const forged = (n: number) => withKey(`payg_${uniqueId("cus_probe")}.${"P".repeat(43)}.${n.toString(16).padStart(32, "0")}`, { headers: { "cf-connecting-ip": ip } });
    for (let i = 0; i < 100; i++) expect((await gateway("/v1/x", forged(i))).status).toBe(401);

    const limited = await gateway("/v1/x", forged(100));
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(await errorOf(limited)).toMatchObject({ code: "rate_limited", requestId: expect.any(String) });
    // Every kind of failed authentication counts, the admin API's too.
    expect((await gateway("/v1/x", { headers: { "cf-connecting-ip": ip } })).status).toBe(429);
    expect((await gateway("/admin/status", { headers: { "cf-connecting-ip": ip, authorization: "Bearer wrong-token-0123456789" } })).status).toBe(429);

    // Only failures are limited, and only for that address.
    expect((await gateway("/v1/x", withKey(key, { headers: { "cf-connecting-ip": ip } }))).status).toBe(200);
    expect((await gateway("/v1/x", { ...forged(101), headers: { ...forged(101).headers, "cf-connecting-ip": clientIp() } })).status).toBe(401);
  });
});
