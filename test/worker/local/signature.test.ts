import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { signOriginRequest, signWebhook } from "../../../src/lib/signing";
import { parseSignatureHeader, verifyOriginRequest, verifyWebhook } from "../../../src/verify/payg-signature";

const SECRET = "whsec_origin_test_secret";

function forwarded(headers: Record<string, string>, path = "/v1/things?x=1", method = "POST") {
  return new Request(`http://origin.example${path}`, { method, headers });
}

describe("the verification helper origins copy (payg-signature.ts)", () => {
  it("accepts what the gateway signs, with and without the client IP", async () => {
    const base = { method: "POST", pathAndQuery: "/v1/things?x=1", customerId: "cus_1", requestId: "req_1" };
    const plain = await signOriginRequest(SECRET, base);
    const ok = await verifyOriginRequest(forwarded({ "x-payg-signature": plain, "x-payg-customer-id": "cus_1", "x-request-id": "req_1" }), SECRET);
    expect(ok).toEqual({ ok: true, customerId: "cus_1", requestId: "req_1", clientIp: null });
    const withIp = await signOriginRequest(SECRET, { ...base, clientIp: "203.0.113.7" });
    const headers = { "x-payg-signature": withIp, "x-payg-customer-id": "cus_1", "x-request-id": "req_1", "x-payg-client-ip": "203.0.113.7" };
    expect(await verifyOriginRequest(forwarded(headers), SECRET)).toMatchObject({ ok: true, clientIp: "203.0.113.7" });
  });

  it("refuses a changed method, path, customer, request id or client IP, a wrong secret, and a stale or missing signature", async () => {
    const sig = await signOriginRequest(SECRET, { method: "POST", pathAndQuery: "/v1/things?x=1", customerId: "cus_1", requestId: "req_1", clientIp: "203.0.113.7" });
    const good = { "x-payg-signature": sig, "x-payg-customer-id": "cus_1", "x-request-id": "req_1", "x-payg-client-ip": "203.0.113.7" };
    const refused = async (request: Request, secret = SECRET, now?: number) =>
      expect((await verifyOriginRequest(request, secret, now === undefined ? {} : { now })).ok).toBe(false);
    await refused(forwarded(good, "/v1/things?x=1", "GET"));
    await refused(forwarded(good, "/v1/things?x=2"));
    await refused(forwarded(good, "/v1/other?x=1"));
    await refused(forwarded({ ...good, "x-payg-customer-id": "cus_2" }));
    await refused(forwarded({ ...good, "x-request-id": "req_2" }));
    await refused(forwarded({ ...good, "x-payg-client-ip": "198.51.100.1" }));
    await refused(forwarded(good), "another_secret");
    await refused(forwarded(good), SECRET, Date.now() + 301_000);
    await refused(forwarded({ ...good, "x-payg-signature": "" }));
    expect((await verifyOriginRequest(forwarded(good), SECRET, { now: Date.now() + 299_000 })).ok).toBe(true);
  });

  it("verifies webhooks on the raw body and refuses any change to it", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), async (text, other) => {
        const body = JSON.stringify({ id: "evt_1", type: "customer.balance.low", created: 1, data: { text } });
        const header = await signWebhook(SECRET, body);
        expect(await verifyWebhook(body, header, SECRET)).toMatchObject({ ok: true, event: { id: "evt_1" } });
        const changed = JSON.stringify({ id: "evt_1", type: "customer.balance.low", created: 1, data: { text: text + other } });
        expect((await verifyWebhook(changed, header, SECRET)).ok).toBe(false);
      }),
      { numRuns: 30 },
    );
  });

  it("parses the header leniently but needs t and v1", () => {
    expect(parseSignatureHeader("t=12,v1=AB,v1=cd,v2=ef")).toEqual({ t: 12, v1: ["ab", "cd"], v2: ["ef"] });
    expect(parseSignatureHeader("v1=ab")).toBeNull();
    expect(parseSignatureHeader("t=x,v1=ab")).toBeNull();
    expect(parseSignatureHeader(null)).toBeNull();
  });
});
