import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DemoOrigin, startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { freePort, type Gateway, startGateway } from "./harness";

// Origin faults over real HTTP: refused connections, 5xx, slow answers, a client that hangs up
// mid-body. The gateway must answer with JSON rather than hang, and refund when configured to.
let origin: DemoOrigin;
let refunding: Gateway;
let charging: Gateway;
let deadOrigin: Gateway;

beforeAll(async () => {
  origin = await startDemoOrigin({ port: 0 });
  const governance = (refund: boolean) => JSON.stringify({ origin_timeout_ms: 1000, refund_on_origin_error: refund });
  [refunding, charging, deadOrigin] = await Promise.all([
    startGateway({ vars: { ORIGIN_URL: origin.url, GOVERNANCE: governance(true) } }),
    startGateway({ vars: { ORIGIN_URL: origin.url, GOVERNANCE: governance(false) } }),
    startGateway({ vars: { ORIGIN_URL: `http://127.0.0.1:${await freePort()}` } }),
  ]);
});
afterAll(async () => {
  await Promise.all([refunding?.stop(), charging?.stop(), deadOrigin?.stop()]);
  await origin?.close();
});

async function customer(gateway: Gateway, id: string, cents: number) {
  expect((await gateway.admin("PUT", `/customers/${id}`, { name: "Fault Tester" })).status).toBe(201);
  const key = await gateway.admin("POST", `/customers/${id}/keys`, {});
  expect(key.status).toBe(201);
  expect((await gateway.admin("POST", `/customers/${id}/credits`, { amount: cents, reason: "faults" })).status).toBe(201);
  return key.body.key as string;
}
const balance = async (gateway: Gateway, id: string) => (await gateway.admin("GET", `/customers/${id}`)).body.balance.available_cents;
const get = (gateway: Gateway, key: string, path: string) => gateway.fetch(path, { headers: { authorization: `Bearer ${key}` } });

describe("origin faults", () => {
  it("a refused connection is a JSON 502 and costs nothing", async () => {
    const key = await customer(deadOrigin, "cus_refused", 5);
    const response = await get(deadOrigin, key, "/v1/x");
    expect(response.status).toBe(502);
    expect(await response.json()).toMatchObject({ error: { code: "origin_unavailable", details: { charged_cents: "0" } } });
    expect(await balance(deadOrigin, "cus_refused")).toBe(5);
  });

  it("a slow origin times out into a JSON 502 and costs nothing", async () => {
    const key = await customer(refunding, "cus_slow", 5);
    const started = Date.now();
    const response = await get(refunding, key, "/fault/slow?ms=10000");
    expect(response.status).toBe(502);
    expect(((await response.json()) as any).error.code).toBe("origin_timeout");
    expect(Date.now() - started).toBeLessThan(8000);
    expect(await balance(refunding, "cus_slow")).toBe(5);
  });

  it("a 503 is passed through and refunded when configured, charged when not", async () => {
    const refundedKey = await customer(refunding, "cus_5xx_refund", 5);
    const refunded = await get(refunding, refundedKey, "/fault/503");
    expect(refunded.status).toBe(503);
    expect(refunded.headers.get("x-payg-charge-cents")).toBe("0");
    expect(await balance(refunding, "cus_5xx_refund")).toBe(5);

    const chargedKey = await customer(charging, "cus_5xx_charge", 5);
    const charged = await get(charging, chargedKey, "/fault/503");
    expect(charged.status).toBe(503);
    expect(charged.headers.get("x-payg-charge-cents")).toBe("1");
    expect(await balance(charging, "cus_5xx_charge")).toBe(4);
  });

  it("a client that disconnects mid-body is not charged", async () => {
    const key = await customer(refunding, "cus_hangup", 5);
    const url = new URL(refunding.url);
    await new Promise<void>((resolve) => {
      const req = http.request({
        hostname: url.hostname,
        port: url.port,
        path: "/v1/upload",
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/octet-stream", "transfer-encoding": "chunked" },
      });
      req.on("error", () => resolve());
      req.write(Buffer.alloc(64 * 1024, 1));
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 300);
    });
    let cents = 0;
    for (let i = 0; i < 50; i++) {
      cents = await balance(refunding, "cus_hangup");
      if (cents === 5) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(cents).toBe(5);
    // And the gateway still serves that customer normally.
    expect((await get(refunding, key, "/v1/x")).status).toBe(200);
  });
});
