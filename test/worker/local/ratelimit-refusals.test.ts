import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { parseList } from "structured-headers";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/lib/config";
import { problemType, refusalResponse } from "../../../src/proxy/refusals";
import { admin, customerWithCredit, echoOrigin, gateway, gatewayWith, ORIGIN, withKey } from "../helpers";
import { server } from "../setup";

// RateLimit header fields: draft-ietf-httpapi-ratelimit-headers-10 (Structured Fields lists,
// RFC 9651), parsed here with the `structured-headers` library, as a generic client would.

/** The items of a RateLimit or RateLimit-Policy field, by policy name, with their parameters. */
function items(field: string | null): Map<string, Record<string, unknown>> {
  expect(field).not.toBeNull();
  const out = new Map<string, Record<string, unknown>>();
  for (const [value, params] of parseList(field!)) {
    // The draft: "The Item value MUST be a String", q/w/r/t Integers.
    expect(typeof value).toBe("string");
    out.set(value as string, Object.fromEntries(params));
  }
  return out;
}

function monthSeconds(now = Date.now()) {
  const d = new Date(now);
  return (Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) - Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)) / 1000;
}

async function cappedKey(cents: number, cap: number, period?: "day" | "month") {
  const { id } = await customerWithCredit(cents);
  const key = await admin("POST", `/customers/${id}/keys`, { spend_cap_cents: cap, ...(period ? { cap_period: period } : {}) });
  expect(key.status).toBe(201);
  return { id, key: key.body.key as string, keyId: key.body.id as string };
}

describe("RateLimit-Policy and RateLimit on a capped key's responses", () => {
  it("carry the cap, its window, what remains (whole cents, rounded down) and the seconds to the reset", async () => {
    echoOrigin();
    const { key } = await cappedKey(100, 5);
    const response = await gateway("/v1/x", withKey(key));
    expect(response.status).toBe(200);
    expect(response.headers.get("ratelimit-policy")).toBe(`"key_cap";q=5;w=${monthSeconds()};payg-unit="cents"`);
    const policy = items(response.headers.get("ratelimit-policy")).get("key_cap")!;
    expect(policy).toEqual({ q: 5, w: monthSeconds(), "payg-unit": "cents" });
    const limit = items(response.headers.get("ratelimit")).get("key_cap")!;
    expect(limit.r).toBe(4);
    const d = new Date();
    const toMonthEnd = (Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) - Date.now()) / 1000;
    expect(limit.t).toBeGreaterThan(toMonthEnd - 5);
    expect(limit.t).toBeLessThanOrEqual(Math.ceil(toMonthEnd) + 1);
    expect(Number.isInteger(limit.t)).toBe(true);
    // A sub-cent price: 0.05 cents spent leaves 4.95, shown as 4.
    const search = await gateway("/v1/search/q", withKey(key));
    expect(items(search.headers.get("ratelimit")).get("key_cap")!.r).toBe(3);
  });

  it("a daily cap has a day's window; a key without a cap gets neither field", async () => {
    echoOrigin();
    const { key } = await cappedKey(100, 30, "day");
    const response = await gateway("/v1/x", withKey(key));
    expect(items(response.headers.get("ratelimit-policy")).get("key_cap")).toEqual({ q: 30, w: 86_400, "payg-unit": "cents" });
    expect(items(response.headers.get("ratelimit")).get("key_cap")!.t).toBeLessThanOrEqual(86_400);
    const { key: plain } = await customerWithCredit(10);
    const uncapped = await gateway("/v1/x", withKey(plain));
    expect(uncapped.headers.has("ratelimit")).toBe(false);
    expect(uncapped.headers.has("ratelimit-policy")).toBe(false);
  });

  it("the origin's own RateLimit fields stay, the key cap's item appended to each list", async () => {
    server.use(http.all(`${ORIGIN}/*`, () => HttpResponse.json({}, { headers: { "ratelimit-policy": '"burst";q=100;w=60', ratelimit: '"burst";r=99;t=60' } })));
    const { key } = await cappedKey(100, 5);
    const response = await gateway("/v1/x", withKey(key));
    expect([...items(response.headers.get("ratelimit-policy")).keys()]).toEqual(["burst", "key_cap"]);
    const limits = items(response.headers.get("ratelimit"));
    expect(limits.get("burst")).toEqual({ r: 99, t: 60 });
    expect(limits.get("key_cap")!.r).toBe(4);
  });

  it("402 key_cap_reached carries them with r=0 and Retry-After no earlier than the reset", async () => {
    echoOrigin();
    const { id, key, keyId } = await cappedKey(100, 2);
    for (let i = 0; i < 2; i++) expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    const refused = await gateway("/v1/x", withKey(key));
    expect(refused.status).toBe(402);
    const limit = items(refused.headers.get("ratelimit")).get("key_cap")!;
    expect(limit.r).toBe(0);
    expect(Number(refused.headers.get("retry-after"))).toBe(limit.t);
    expect(items(refused.headers.get("ratelimit-policy")).get("key_cap")).toMatchObject({ q: 2 });
    const body = await refused.json<any>();
    expect(body.error).toMatchObject({
      code: "key_cap_reached",
      details: { customer_id: id, key_id: keyId, cap_cents: 2, period: "month", retry_after_seconds: limit.t, next_steps: { portal_url: expect.any(String) } },
    });
  });

  it("402 insufficient_credit of a capped key carries them too", async () => {
    echoOrigin();
    const { key } = await cappedKey(1, 5);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    const refused = await gateway("/v1/x", withKey(key));
    expect(refused.status).toBe(402);
    expect((await refused.json<any>()).code).toBe("insufficient_credit");
    expect(items(refused.headers.get("ratelimit")).get("key_cap")!.r).toBe(4);
  });
});

describe("GOVERNANCE.problem_details: money refusals as RFC 9457 problems", () => {
  const problems = { GOVERNANCE: { ...(env as unknown as { GOVERNANCE: Record<string, unknown> }).GOVERNANCE, problem_details: true } };

  it("insufficient credit: type, title, status, detail and the template's fields, as application/problem+json", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(0);
    const refused = await gatewayWith(problems, "/v1/x", withKey(key));
    expect(refused.status).toBe(402);
    expect(refused.headers.get("content-type")).toBe("application/problem+json");
    const body = await refused.json<any>();
    expect(body).toMatchObject({
      type: problemType("insufficient_credit"),
      title: "Insufficient credit",
      status: 402,
      detail: body.message,
      code: "insufficient_credit",
      customer_id: id,
      available_balance_cents: 0,
      next_steps: { topup_url: "http://127.0.0.1:8787/portal", portal_url: "http://127.0.0.1:8787/portal" },
      request_id: refused.headers.get("x-request-id"),
    });
    expect(body.detail).toMatch(/^Your API credit is used up/);
    // Off (the default): the template as it is, plain JSON.
    const plain = await gateway("/v1/x", withKey(key));
    expect(plain.headers.get("content-type")).toBe("application/json");
    expect(await plain.json()).not.toHaveProperty("type");
  });

  it("a key's cap: the quota problem with the violated policy, its headers kept", async () => {
    echoOrigin();
    const { key, keyId } = await cappedKey(10, 1);
    expect((await gatewayWith(problems, "/v1/x", withKey(key))).status).toBe(200);
    const refused = await gatewayWith(problems, "/v1/x", withKey(key));
    expect(refused.headers.get("content-type")).toBe("application/problem+json");
    expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(await refused.json()).toMatchObject({ type: problemType("key_cap_reached"), status: 402, code: "key_cap_reached", key_id: keyId, "violated-policies": ["key_cap"] });
  });

  it("one function renders every money refusal, the agent payment rails' too", async () => {
    const config = parseConfig({ ...env, GOVERNANCE: problems.GOVERNANCE });
    const rail = refusalResponse(config, "req_1", {
      outcome: "payment",
      code: "insufficient_credit",
      title: "Payment required",
      detail: "Pay 5 cents to call this tool.",
      fields: { amount_cents: 5 },
      headers: { "payment-required": "e30=" },
    });
    expect(rail.status).toBe(402);
    expect(rail.headers.get("payment-required")).toBe("e30=");
    expect(await rail.json()).toEqual({
      type: problemType("insufficient_credit"),
      title: "Payment required",
      status: 402,
      detail: "Pay 5 cents to call this tool.",
      code: "insufficient_credit",
      amount_cents: 5,
      request_id: "req_1",
    });
    const house = refusalResponse(parseConfig(env as never), "req_2", {
      outcome: "payment",
      code: "insufficient_credit",
      title: "Payment required",
      detail: "Pay.",
      fields: { amount_cents: 5 },
    });
    expect(await house.json()).toEqual({ error: { code: "insufficient_credit", message: "Pay.", requestId: "req_2", details: { amount_cents: 5 } } });
  });
});
