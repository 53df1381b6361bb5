import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DemoOrigin, startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { customerWithKey, type Gateway, startGateway } from "./harness";

const ORIGIN_SIGNING_SECRET = "e2e-origin-signing-secret-0123456789abcdef";
const KEY_SIGNING_SECRET = "e2e-key-signing-secret-0123456789abcdef";

let gateway: Gateway;
let origin: DemoOrigin;

beforeAll(async () => {
  // The demo origin as `npm start` runs it: it accepts only requests the gateway signed.
  origin = await startDemoOrigin({ port: 0, signingSecret: ORIGIN_SIGNING_SECRET });
  gateway = await startGateway({ vars: { ORIGIN_URL: origin.url }, secrets: { ORIGIN_SIGNING_SECRET, KEY_SIGNING_SECRET } });
});
afterAll(async () => {
  await gateway?.stop();
  await origin?.close();
});

const customer = async (id: string, cents: number) => (await customerWithKey(gateway, id, cents)).key;

describe("wrangler dev with both signing secrets, over HTTP (happy)", () => {
  it("forwards a normalized, signed request that the demo origin verifies; client claims never reach it", async () => {
    const key = await customer("cus_e2e_signed", 5);
    expect(key).toMatch(/^payg_cus_e2e_signed\.[A-Za-z0-9_-]{43}\.[0-9a-f]{32}$/);
    const before = origin.received.length;
    const response = await gateway.fetch("//v1/./hello/../greet?x=1", {
      headers: {
        authorization: `Bearer ${key}`,
        "x-request-id": "client-id-1",
        "x-payg-customer-id": "cus_someone_else",
        "x-payg-client-ip": "192.0.2.66",
        "x-forwarded-for": "192.0.2.1",
        forwarded: "for=192.0.2.1",
        "x-real-ip": "192.0.2.1",
      },
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ path: "/v1/greet", query: "?x=1", customer: "cus_e2e_signed", signature: "valid" });
    const seen = origin.received.slice(before);
    expect(seen).toHaveLength(1);
    const headers = seen[0]!.headers;
    expect(seen[0]!.signature).toBe("valid");
    expect(headers["x-request-id"]).toBe(response.headers.get("x-request-id"));
    expect(headers["x-request-id"]).not.toBe("client-id-1");
    expect(headers["x-client-request-id"]).toBe("client-id-1");
    expect(headers["x-payg-customer-id"]).toBe("cus_e2e_signed");
    // wrangler dev sets CF-Connecting-IP to the address it saw, as Cloudflare does.
    expect(headers["x-payg-client-ip"]).toBe("127.0.0.1");
    expect(headers["x-payg-signature"]).toMatch(/^t=\d+,v1=[0-9a-f]{64}/);
    for (const name of ["x-forwarded-for", "forwarded", "x-real-ip", "authorization"]) expect(headers[name], name).toBeUndefined();
  });
});

describe("wrangler dev with both signing secrets, over HTTP (security)", () => {
  it("the demo origin refuses what did not come through the gateway, or was changed on the way", async () => {
    const direct = await fetch(`${origin.url}/v1/hello`, { headers: { "x-payg-customer-id": "cus_e2e_signed" } });
    expect(direct.status).toBe(401);

    const key = await customer("cus_e2e_replay", 5);
    const before = origin.received.length;
    expect((await gateway.fetch("/v1/cheap", { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    const signed = origin.received[before]!.headers;
    const replayed = await fetch(`${origin.url}/v1/expensive`, {
      headers: Object.fromEntries(["x-payg-signature", "x-payg-customer-id", "x-request-id", "x-payg-client-ip"].flatMap((n) => (signed[n] ? [[n, String(signed[n])]] : []))),
    });
    expect(replayed.status).toBe(401);
    expect((await replayed.json()).reason).toBe("signature does not match");
  });

  it("limits failed authentications per client IP in wrangler dev too: 429 with Retry-After after 100", async () => {
    // The local simulation counts in windows aligned to the wall clock: start early in one.
    const left = 60_000 - (Date.now() % 60_000);
    if (left < 20_000) await new Promise((resolve) => setTimeout(resolve, left + 50));
    const forged = (n: number) => ({ headers: { authorization: `Bearer payg_cus_nobody_${n}.${"F".repeat(43)}.${"0".repeat(32)}` } });
    const statuses: number[] = [];
    for (let i = 0; i < 101; i++) statuses.push((await gateway.fetch("/v1/x", forged(i))).status);
    expect(statuses.slice(0, 100).every((s) => s === 401)).toBe(true);
    expect(statuses[100]).toBe(429);
    const limited = await gateway.fetch("/v1/x", forged(101));
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("60");
    expect((await limited.json()).error.code).toBe("rate_limited");
  });
});
