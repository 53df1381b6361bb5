import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { uuidV7 } from "../../../src/middleware/request-id";
import { verifyOriginRequest } from "../../../src/verify/payg-signature";
import { customerStub, customerWithCredit, echoOrigin, gateway, gatewayWith, ORIGIN, withKey } from "../helpers";

const SECRET = (env as unknown as { ORIGIN_SIGNING_SECRET: string }).ORIGIN_SIGNING_SECRET;
/** The project's PRICING (vitest.config.ts): /v1/search/** costs 0.05 cents, anything else 1 cent. */
const PRICING = (env as unknown as { PRICING: Record<string, unknown> }).PRICING;
const errorOf = async (response: Response) => ((await response.json()) as { error: { code: string; message: string; requestId: string } }).error;
const balanceOf = async (id: string) => (await customerStub(id).balanceCheck())!.balanceMicros;

describe("what the origin sees (happy)", () => {
  it("signs every forwarded request: the copyable helper verifies it, client IP included (v2)", async () => {
    const seen = echoOrigin();
    const { id, key } = await customerWithCredit(5);
    const response = await gateway("/v1/things?x=1", withKey(key, { method: "POST", headers: { "cf-connecting-ip": "203.0.113.9" }, body: "{}" }));
    expect(response.status).toBe(200);
    const forwarded = seen[0]!;
    expect(forwarded.headers.get("x-payg-signature")).toMatch(/^t=\d+,v1=[0-9a-f]{64},v2=[0-9a-f]{64}$/);
    expect(await verifyOriginRequest(forwarded, SECRET)).toEqual({
      ok: true,
      customerId: id,
      requestId: response.headers.get("x-request-id"),
      clientIp: "203.0.113.9",
    });
    expect((await verifyOriginRequest(forwarded, "another-secret-0123456789abcdef0123")).ok).toBe(false);
  });

  it("keeps the signature's v1 string as specified when the gateway saw no client IP", async () => {
    const seen = echoOrigin();
    const { key } = await customerWithCredit(5);
    expect((await gateway("/v1/things", withKey(key))).status).toBe(200);
    expect(seen[0]!.headers.get("x-payg-client-ip")).toBeNull();
    expect(seen[0]!.headers.get("x-payg-signature")).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect((await verifyOriginRequest(seen[0]!, SECRET)).ok).toBe(true);
  });

  it("without ORIGIN_SIGNING_SECRET forwards unsigned", async () => {
    const seen = echoOrigin();
    const { key } = await customerWithCredit(5);
    expect((await gatewayWith({ ORIGIN_SIGNING_SECRET: "" }, "/v1/things", withKey(key))).status).toBe(200);
    expect(seen[0]!.headers.get("x-payg-signature")).toBeNull();
  });

  it("passes a client's X-Request-Id on only as X-Client-Request-Id; the origin, the response and error bodies carry the gateway's own", async () => {
    const seen = echoOrigin();
    const { key } = await customerWithCredit(5);
    const response = await gateway("/v1/things", withKey(key, { headers: { "x-request-id": "client-chosen-id" } }));
    const ours = response.headers.get("x-request-id");
    expect(ours).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen[0]!.headers.get("x-request-id")).toBe(ours);
    expect(seen[0]!.headers.get("x-client-request-id")).toBe("client-chosen-id");

    const refused = await gateway("/v1/things", { headers: { "x-request-id": "client-chosen-id" } });
    expect(refused.status).toBe(401);
    const error = await errorOf(refused);
    expect(error.requestId).not.toBe("client-chosen-id");
    expect(refused.headers.get("x-request-id")).toBe(error.requestId);
    const adminError = await gateway("/admin/nothing", { headers: { "x-request-id": "client-chosen-id" } });
    expect((await errorOf(adminError)).requestId).not.toBe("client-chosen-id");
  });
});

describe("request ids (happy)", () => {
  it("are UUIDv7 (RFC 9562): the current millisecond up front, version 7, the variant bits, and unique", () => {
    const before = Date.now();
    const ids = Array.from({ length: 1000 }, () => uuidV7(Date.now()));
    const after = Date.now();
    expect(new Set(ids).size).toBe(1000);
    for (const id of ids) {
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      const ms = parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
      expect(ms).toBeGreaterThanOrEqual(before);
      expect(ms).toBeLessThanOrEqual(after);
    }
    // Ids of later milliseconds sort after earlier ones (the charge log's index grows at one end).
    expect(uuidV7(before + 1) > uuidV7(before)).toBe(true);
    expect(uuidV7(2 ** 48 - 1).slice(0, 13)).toBe("ffffffff-ffff");
  });
});

describe("what the origin sees (security)", () => {
  // Connection itself never reaches the worker over HTTP (test/e2e/paths.test.ts shows what does).
  it("strips hop-by-hop headers and every forwarding claim from the client", async () => {
    const seen = echoOrigin();
    const { id, key } = await customerWithCredit(5);
    const sent: Record<string, string> = {
      te: "trailers",
      trailer: "x-checksum",
      "proxy-authorization": "Basic cHJveHk6cGFzcw==",
      "proxy-connection": "keep-alive",
      "keep-alive": "timeout=5",
      forwarded: "for=192.0.2.1;host=evil.example",
      "x-forwarded-for": "192.0.2.1",
      "x-forwarded-host": "evil.example",
      "x-forwarded-proto": "http",
      "x-real-ip": "192.0.2.1",
      "cf-connecting-ip": "198.51.100.7",
      "cf-ipcountry": "XX",
      "cf-ray": "fake-ray",
      "x-payg-customer-id": "cus_someone_else",
      "x-payg-signature": `t=1,v1=${"0".repeat(64)}`,
      "x-payg-client-ip": "192.0.2.66",
      "x-payg-anything": "claimed",
      "x-client-request-id": "not-from-x-request-id",
      "x-custom": "kept",
      accept: "application/json",
    };
    const response = await gateway("/v1/things", withKey(key, { headers: sent }));
    expect(response.status).toBe(200);
    const names = [...seen[0]!.headers.keys()];
    for (const name of Object.keys(sent).filter((n) => !["x-custom", "accept", "cf-connecting-ip"].includes(n))) {
      if (name.startsWith("x-payg-")) continue;
      expect(names, name).not.toContain(name);
    }
    expect(names.filter((n) => n.startsWith("x-payg-")).sort()).toEqual(["x-payg-client-ip", "x-payg-customer-id", "x-payg-signature"]);
    expect(names.filter((n) => n.startsWith("cf-") || n.startsWith("x-forwarded-"))).toEqual([]);
    const headers = seen[0]!.headers;
    expect(headers.get("x-payg-customer-id")).toBe(id);
    expect(headers.get("x-payg-client-ip")).toBe("198.51.100.7");
    expect(headers.get("x-custom")).toBe("kept");
    expect(headers.get("accept")).toBe("application/json");
    expect(headers.get("authorization")).toBeNull();
    expect((await verifyOriginRequest(seen[0]!, SECRET)).ok).toBe(true);
  });
});

describe("one path, one price (happy)", () => {
  it("prices and forwards the normalized path: repeated slashes, dot segments, encoded unreserved characters", async () => {
    const seen = echoOrigin();
    const { id, key } = await customerWithCredit(1);
    // PRICING in vitest.config.ts: /v1/search/** costs 0.05 cents, anything else 1 cent.
    const spellings = ["//v1//search/q", "/v1/./search/q", "/v1/x/../search/q", "/v1/%73earch/q", "/%76%31/search/%2e/q", "/v1/search/q/."];
    for (const path of spellings) {
      const response = await gateway(path, withKey(key));
      expect(response.status, path).toBe(200);
      expect(response.headers.get("x-payg-charge-cents"), path).toBe("0.05");
    }
    expect(seen.map((r) => new URL(r.url).pathname)).toEqual(["/v1/search/q", "/v1/search/q", "/v1/search/q", "/v1/search/q", "/v1/search/q", "/v1/search/q/"]);
    expect(await balanceOf(id)).toBe(1_000_000 - 6 * 50_000);
    for (const r of seen) expect((await verifyOriginRequest(r, SECRET)).ok).toBe(true);
  });

  it("keeps the query string and other percent-encodings (upper-cased) as they are", async () => {
    const seen = echoOrigin();
    const { key } = await customerWithCredit(5);
    expect((await gateway("/v1/caf%c3%a9/a%20b?q=%2F&x=..", withKey(key))).status).toBe(200);
    expect(new URL(seen[0]!.url).pathname).toBe("/v1/caf%C3%A9/a%20b");
    expect(new URL(seen[0]!.url).search).toBe("?q=%2F&x=..");
  });
});

describe("one path, one price in any letter case (happy)", () => {
  it("prices a path by its meter in any letter case, and forwards it as sent", async () => {
    const seen = echoOrigin();
    const { key } = await customerWithCredit(5);
    for (const path of ["/V1/SEARCH/q", "/v1/Search/Q", "/v1/%53EARCH/q"]) {
      const response = await gateway(path, withKey(key));
      expect(response.status, path).toBe(200);
      expect(response.headers.get("x-payg-charge-cents"), path).toBe("0.05");
    }
    expect(seen.map((r) => new URL(r.url).pathname)).toEqual(["/V1/SEARCH/q", "/v1/Search/Q", "/v1/SEARCH/q"]);
  });

  it("with PRICING.case_sensitive_paths = true, only the meter's own spelling gets its price", async () => {
    echoOrigin();
    const { key } = await customerWithCredit(5);
    const pricing = { PRICING: { ...PRICING, case_sensitive_paths: true } };
    const charge = async (path: string) => (await gatewayWith(pricing, path, withKey(key))).headers.get("x-payg-charge-cents");
    expect(await charge("/v1/search/q")).toBe("0.05");
    expect(await charge("/v1/Search/q")).toBe("1");
  });
});

describe("path parameters (error)", () => {
  it("refuses a ';' in any segment with 400 invalid_request by default: nothing forwarded or charged", async () => {
    const seen = echoOrigin();
    const { id, key } = await customerWithCredit(5);
    for (const path of ["/v1/search;v=1/q", "/v1/search/q;v=1", "/v1/search;/q", "/v1/;x/search/q", "/v1/..;/search/q", "/admin;x/status", "/v1/..;/admin/status"]) {
      const response = await gateway(path, withKey(key));
      expect(response.status, path).toBe(400);
      const error = await errorOf(response);
      expect(error.code, path).toBe("invalid_request");
      expect(error.message).toContain("';'");
    }
    expect(seen).toHaveLength(0);
    expect(await balanceOf(id)).toBe(5_000_000);
  });

  it("an encoded %3B is no parameter: part of the segment, priced as that segment and forwarded upper-cased", async () => {
    const seen = echoOrigin();
    const { key } = await customerWithCredit(5);
    const response = await gateway("/v1/search%3bv=1/q", withKey(key));
    expect(response.status).toBe(200);
    expect(response.headers.get("x-payg-charge-cents")).toBe("1");
    expect(new URL(seen[0]!.url).pathname).toBe("/v1/search%3Bv=1/q");
  });
});

describe("path parameters kept (happy)", () => {
  const keep = { PRICING: { ...PRICING, path_parameters: "keep" } };

  it("prices and dot-resolves each segment without its parameters, and forwards the parameters as sent", async () => {
    const seen = echoOrigin();
    const { id, key } = await customerWithCredit(1);
    const cases: [string, string][] = [
      ["/v1/search;v=1/q", "/v1/search;v=1/q"],
      ["/v1/SEARCH;v=1/q", "/v1/SEARCH;v=1/q"],
      ["/v1/search/q;v=1;w=2", "/v1/search/q;v=1;w=2"],
      ["/v1/search;/q", "/v1/search;/q"],
      ["/v1/x;y/..;z/search/q", "/v1/search/q"],
      ["/v1/;x/search//q/.;y", "/v1/search/q/"],
    ];
    for (const [path] of cases) {
      const response = await gatewayWith(keep, path, withKey(key));
      expect(response.status, path).toBe(200);
      expect(response.headers.get("x-payg-charge-cents"), path).toBe("0.05");
    }
    expect(seen.map((r) => new URL(r.url).pathname)).toEqual(cases.map(([, forwarded]) => forwarded));
    for (const r of seen) expect((await verifyOriginRequest(r, SECRET)).ok).toBe(true);
    expect(await balanceOf(id)).toBe(1_000_000 - cases.length * 50_000);
  });
});

describe("path parameters kept (security)", () => {
  it("checks the reserved prefixes on the path without parameters: never forwarded, never charged", async () => {
    const seen = echoOrigin();
    const { id, key } = await customerWithCredit(5);
    const keep = { PRICING: { ...PRICING, path_parameters: "keep" } };
    for (const path of ["/admin;x/status", "/ADMIN;/customers", "/v1/..;/admin/status", "/webhooks;a=b/stripe", "/billing;x"]) {
      const response = await gatewayWith(keep, path, withKey(key));
      expect(response.status, path).toBe(404);
      expect((await errorOf(response)).code).toBe("not_found");
    }
    expect(seen).toHaveLength(0);
    expect(await balanceOf(id)).toBe(5_000_000);
  });
});

describe("one path, one price (error)", () => {
  it("refuses an encoded slash, an encoded backslash, a NUL or a broken escape with 400 invalid_request, and charges nothing", async () => {
    const seen = echoOrigin();
    const { id, key } = await customerWithCredit(5);
    for (const path of ["/v1/a%2Fb", "/v1/a%2fb", "/v1/a%5Cb", "/v1/a%5cb", "/v1/a%00b", "/v1/a%zzb", "/v1/a%2"]) {
      const response = await gateway(path, withKey(key));
      expect(response.status, path).toBe(400);
      expect((await errorOf(response)).code).toBe("invalid_request");
    }
    expect(seen).toHaveLength(0);
    expect(await balanceOf(id)).toBe(5_000_000);
  });
});

describe("one path, one price (security)", () => {
  it("a path never climbs above the origin's path prefix", async () => {
    const seen = echoOrigin();
    const { key } = await customerWithCredit(5);
    const prefixed = { ORIGIN_URL: `${ORIGIN}/base` };
    for (const path of ["/../secret", "/%2e%2e/secret", "/a/../../secret"]) {
      expect((await gatewayWith(prefixed, path, withKey(key))).status, path).toBe(200);
    }
    expect(seen.map((r) => r.url)).toEqual([`${ORIGIN}/base/secret`, `${ORIGIN}/base/secret`, `${ORIGIN}/base/secret`]);
  });
});

describe("reserved paths in every spelling (security)", () => {
  it("never forwards or charges anything under /admin, /webhooks, /billing, /portal, /dashboard or /email", async () => {
    const seen = echoOrigin();
    const { id, key } = await customerWithCredit(5);
    const cases: [string, string][] = [
      ["GET", "/ADMIN/customers"],
      ["GET", "//admin/status"],
      ["GET", "/Admin"],
      ["POST", "/webhooks/stripe/"],
      ["POST", "/WEBHOOKS/Stripe"],
      ["GET", "/billing/checkout"],
      ["POST", "/Billing/Checkout"],
      ["GET", "/billing/anything"],
      ["GET", "/PORTAL/x"],
      ["GET", "/Dashboard"],
      ["POST", "/EMAIL/unsubscribe"],
    ];
    for (const [method, path] of cases) {
      const response = await gateway(path, withKey(key, { method }));
      expect(response.status, `${method} ${path}`).toBe(404);
      expect((await errorOf(response)).code).toBe("not_found");
    }
    // Handled by the gateway itself: the admin API (which wants its token), or refused as a bad path.
    for (const path of ["/%61dmin/status", "/v1/../admin/status"]) expect((await gateway(path, withKey(key))).status, path).toBe(401);
    expect((await gateway("/admin%2Fstatus", withKey(key))).status).toBe(400);
    expect(seen).toHaveLength(0);
    expect(await balanceOf(id)).toBe(5_000_000);
  });

  it("leaves paths that merely start with the same letters to the origin", async () => {
    const seen = echoOrigin();
    const { key } = await customerWithCredit(5);
    for (const path of ["/administrators", "/v1/admin", "/billings", "/emails/x"]) expect((await gateway(path, withKey(key))).status, path).toBe(200);
    expect(seen).toHaveLength(4);
  });
});
