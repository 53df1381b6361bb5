import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DemoOrigin, startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { customerWithKey, type Gateway, startGateway } from "./harness";

// The spellings an origin may route differently from the gateway, over real HTTP: `rejecting`
// runs the default PRICING.path_parameters ("reject"), `keeping` runs "keep". The demo origin
// checks every request's signature, so what it received is what the gateway signed.
const ORIGIN_SIGNING_SECRET = "e2e-origin-signing-secret-0123456789abcdef";
const PRICING = {
  currency: "usd",
  default_price_cents: "1",
  meters: [{ name: "expensive", path: "/v1/expensive/**", price_cents: "50", stripe_event_name: "expensive_requests" }],
};

let rejecting: Gateway;
let keeping: Gateway;
let origin: DemoOrigin;

beforeAll(async () => {
  origin = await startDemoOrigin({ port: 0, signingSecret: ORIGIN_SIGNING_SECRET });
  const vars = { ORIGIN_URL: origin.url };
  [rejecting, keeping] = await Promise.all([
    startGateway({ vars: { ...vars, PRICING: JSON.stringify(PRICING) }, secrets: { ORIGIN_SIGNING_SECRET } }),
    startGateway({ vars: { ...vars, PRICING: JSON.stringify({ ...PRICING, path_parameters: "keep" }) }, secrets: { ORIGIN_SIGNING_SECRET } }),
  ]);
});
afterAll(async () => {
  await Promise.all([rejecting?.stop(), keeping?.stop()]);
  await origin?.close();
});

const forCustomer = (customer: string) => origin.received.filter((r) => r.headers["x-payg-customer-id"] === customer);
const balance = async (gateway: Gateway, id: string): Promise<string> => (await gateway.admin("GET", `/customers/${id}`)).body.balance.available_exact_cents;

/** A GET through node:http, which sends a Connection header as written (fetch refuses most values). */
function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const sent = request(url, { headers, agent: false }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode!, body }));
    });
    sent.on("error", reject);
    sent.end();
  });
}

describe("one path, one price over real HTTP (security)", () => {
  it("refuses every ';' spelling with 400 by default, /admin;x/status included: nothing forwarded, nothing charged", async () => {
    const id = "cus_e2e_paths_reject";
    const { key } = await customerWithKey(rejecting, id, 500);
    for (const path of ["/v1/expensive;v=1/report", "/v1/expensive/report;v=1", "/v1/expensive;/report", "/v1/..;/admin/status", "/admin;x/status"]) {
      const response = await rejecting.fetch(path, { headers: { authorization: `Bearer ${key}` } });
      expect(response.status, path).toBe(400);
      expect((await response.json()).error.code, path).toBe("invalid_request");
    }
    expect(forCustomer(id)).toHaveLength(0);
    expect(await balance(rejecting, id)).toBe("500");
  });

  it("prices the upper-case spelling by the meter, forwards it as sent; an encoded %3B is part of the segment", async () => {
    const id = "cus_e2e_paths_case";
    const { key } = await customerWithKey(rejecting, id, 500);
    const upper = await rejecting.fetch("/v1/EXPENSIVE/report", { headers: { authorization: `Bearer ${key}` } });
    expect(upper.status).toBe(200);
    expect(upper.headers.get("x-payg-charge-cents")).toBe("50");
    const encoded = await rejecting.fetch("/v1/expensive%3Bv=1/report", { headers: { authorization: `Bearer ${key}` } });
    expect(encoded.status).toBe(200);
    expect(encoded.headers.get("x-payg-charge-cents")).toBe("1");
    expect(forCustomer(id).map((r) => [r.path, r.signature])).toEqual([
      ["/v1/EXPENSIVE/report", "valid"],
      ["/v1/expensive%3Bv=1/report", "valid"],
    ]);
    expect(await balance(rejecting, id)).toBe("449");
  });

  it('with path_parameters = "keep": priced by the meter without the parameters, forwarded as sent; /admin;x/status stays refused', async () => {
    const id = "cus_e2e_paths_keep";
    const { key } = await customerWithKey(keeping, id, 500);
    const paths = ["/v1/expensive;v=1/report", "/v1/Expensive/report;v=1", "/v1/expensive;/report"];
    for (const path of paths) {
      const response = await keeping.fetch(path, { headers: { authorization: `Bearer ${key}` } });
      expect(response.status, path).toBe(200);
      expect(response.headers.get("x-payg-charge-cents"), path).toBe("50");
    }
    for (const path of ["/admin;x/status", "/v1/..;/admin/status"]) {
      const response = await keeping.fetch(path, { headers: { authorization: `Bearer ${key}` } });
      expect(response.status, path).toBe(404);
      expect((await response.json()).error.code, path).toBe("not_found");
    }
    expect(forCustomer(id).map((r) => [r.path, r.signature])).toEqual(paths.map((path) => [path, "valid"]));
    expect(await balance(keeping, id)).toBe("350");
  });
});

describe("what the origin receives over real HTTP (security)", () => {
  it("a header the client's Connection names reaches the origin: the runtime consumes Connection before the worker can read it", async () => {
    const id = "cus_e2e_paths_hop";
    const { key } = await customerWithKey(rejecting, id, 5);
    const response = await rawGet(`${rejecting.url}/v1/hello`, {
      authorization: `Bearer ${key}`,
      connection: "keep-alive, x-secret-hop",
      "x-secret-hop": "1",
      "keep-alive": "timeout=5",
      "proxy-connection": "keep-alive",
    });
    expect(response.status).toBe(200);
    const [seen] = forCustomer(id);
    expect(seen!.signature).toBe("valid");
    // What docs/concepts/security.md says the origin receives: the named header arrives as sent, and
    // neither the client's Connection nor its Keep-Alive does (the runtime's fetch sends none).
    expect(seen!.headers["x-secret-hop"]).toBe("1");
    for (const name of ["connection", "keep-alive", "proxy-connection", "authorization"]) expect(seen!.headers[name], name).toBeUndefined();
  });
});
