import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { admin, customerWithCredit, gateway, gatewayWith, withKey } from "../helpers";
import { call, type Message, mcp, mcpServer } from "../mcp-origin";

// MCP metering (units = "mcp") against the MCP server double of ../mcp-origin.ts. The project's mcp_tools meter
// prices search* at 0.5 cents, render_chart at 3 and any other tool at 1 (vitest.config.ts).
// The official SDK client talks to the demo origin's real SDK server in test/e2e/mcp.test.ts.

async function balance(id: string): Promise<string> {
  return (await admin("GET", `/customers/${id}`)).body.balance.available_exact_cents;
}

/** The SSE events of a response body, as data objects with their event id. */
function events(text: string) {
  return text
    .split("\n\n")
    .filter((e) => e.includes("data: "))
    .map((e) => ({ id: /^id: (.*)$/m.exec(e)?.[1] ?? null, data: JSON.parse(/^data: (.*)$/m.exec(e)![1]!) as Message }));
}

const chargeOf = (m: Message) => m.result?._meta?.["payg/charge"];

describe("MCP: protocol traffic is free", () => {
  it("initialize, notifications, ping, tools/list, GET and DELETE pass with no credit at all, and are never held", async () => {
    const seen = mcpServer();
    const { id, key } = await customerWithCredit(0);
    const init = await mcp(key, {
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: { protocolVersion: "2025-03-26", capabilities: {}, clientInfo: { name: "t", version: "1" } },
    });
    expect(init.status).toBe(200);
    expect(init.headers.get("mcp-session-id")).toBe("sess-1");
    expect(((await init.json()) as Message).result.protocolVersion).toBe("2025-03-26");
    const session = { "mcp-session-id": "sess-1" };
    expect((await mcp(key, { jsonrpc: "2.0", method: "notifications/initialized" }, { headers: session })).status).toBe(202);
    const listed = await mcp(key, { jsonrpc: "2.0", id: 1, method: "tools/list" }, { headers: session, mode: "sse" });
    expect(events(await listed.text()).at(-1)!.data.result.tools).toHaveLength(1);
    expect(((await (await mcp(key, { jsonrpc: "2.0", id: 2, method: "ping" }, { headers: session })).json()) as Message).result).toEqual({});
    const stream = await gateway("/mcp", withKey(key, { headers: { accept: "text/event-stream", ...session } }));
    expect([stream.status, await stream.text()]).toEqual([200, ": open\n\n"]);
    expect((await gateway("/mcp", withKey(key, { method: "DELETE", headers: session }))).status).toBe(200);
    expect(seen.methods).toEqual(["POST", "POST", "POST", "POST", "GET", "DELETE"]);
    // The session id went to the server untouched.
    expect(seen.posts).toHaveLength(4);
    expect(await balance(id)).toBe("0");
    const usage = (await admin("GET", `/customers/${id}/usage`)).body;
    expect(JSON.stringify(usage)).not.toContain("mcp_tools");
  });

  it("still needs a valid key", async () => {
    const seen = mcpServer();
    const refused = await mcp("payg_nobody.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", { jsonrpc: "2.0", id: 1, method: "tools/list" });
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("invalid_api_key");
    expect(seen.posts).toHaveLength(0);
  });
});

describe("MCP: tool calls by name", () => {
  it("prices each call by the first matching row (glob, `*` across `/`), else the meter's price, and puts the charge in _meta", async () => {
    mcpServer();
    const { id, key } = await customerWithCredit(10);
    const cases: [string, string, string][] = [
      ["search_docs", "0.5", "9.5"],
      ["search/deep/web", "0.5", "9"],
      ["render_chart", "3", "6"],
      ["render_chart_v2", "1", "5"],
    ];
    for (const [n, [name, charged, left]] of cases.entries()) {
      const response = await mcp(key, call(n, name));
      expect(response.status).toBe(200);
      expect(response.headers.get("x-payg-charge-cents")).toBe(charged);
      const answer = (await response.json()) as Message;
      expect(answer.id).toBe(n);
      expect(answer.result.content[0].text).toBe(`ran ${name}`);
      expect(chargeOf(answer)).toEqual({ charged_cents: charged, balance_cents: left, request_id: response.headers.get("x-request-id") });
    }
    expect(await balance(id)).toBe("5");
  });

  it("over SSE: other events pass first, the answer carries its charge and keeps its event id", async () => {
    mcpServer();
    const { id, key } = await customerWithCredit(5);
    const response = await mcp(key, call("a", "render_chart"), { mode: "sse" });
    expect(response.headers.get("content-type")).toContain("text/event-stream");
    const got = events(await response.text());
    expect(got.map((e) => e.data.method ?? e.data.id)).toEqual(["notifications/progress", "a"]);
    expect(got[1]!.id).toBe("ev-0");
    expect(chargeOf(got[1]!.data)).toMatchObject({ charged_cents: "3", balance_cents: "2" });
    expect(await balance(id)).toBe("2");
  });

  it("a tool error (isError) is charged by default; a JSON-RPC error is not (the tool did not run)", async () => {
    mcpServer();
    const { id, key } = await customerWithCredit(5);
    const broken = (await (await mcp(key, call(1, "broken"))).json()) as Message;
    expect(broken.result.isError).toBe(true);
    expect(chargeOf(broken).charged_cents).toBe("1");
    const invalid = await mcp(key, call(2, "invalid"));
    expect(invalid.headers.get("x-payg-charge-cents")).toBe("0");
    expect(((await invalid.json()) as Message).error.code).toBe(-32602);
    expect(await balance(id)).toBe("4");
  });

  it("charge_tool_errors = false gives a tool error's charge back", async () => {
    mcpServer();
    const { id, key } = await customerWithCredit(5);
    const pricing = JSON.parse(JSON.stringify(env.PRICING));
    pricing.meters.find((m: { name: string }) => m.name === "mcp_tools").charge_tool_errors = false;
    const init = withKey(key, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(call(1, "broken")) });
    const response = await gatewayWith({ PRICING: pricing }, "/mcp", init);
    expect(response.headers.get("x-payg-charge-cents")).toBe("0");
    expect(chargeOf((await response.json()) as Message).charged_cents).toBe("0");
    expect(await balance(id)).toBe("5");
  });

  it("origin failures follow GOVERNANCE.refund_on: a 503 releases the hold, a 500 is charged; a 4xx (the server refused the request) charges nothing", async () => {
    const seen = mcpServer();
    const { id, key } = await customerWithCredit(5);
    const released = await mcp(key, call(1, "render_chart"), { mode: "503" });
    expect([released.status, released.headers.get("x-payg-charge-cents")]).toEqual([503, "0"]);
    const refused = await mcp(key, call(2, "render_chart"), { mode: "404" });
    expect([refused.status, refused.headers.get("x-payg-charge-cents")]).toEqual([404, "0"]);
    expect(await balance(id)).toBe("5");
    const kept = await mcp(key, call(3, "render_chart"), { mode: "500" });
    expect([kept.status, kept.headers.get("x-payg-charge-cents")]).toEqual([500, "3"]);
    expect(seen.posts).toHaveLength(3);
    expect(await balance(id)).toBe("2");
  });

  it("a stream that ends without answering charges the call (its tool may have run; the answer can come on a resumed stream)", async () => {
    mcpServer();
    const { id, key } = await customerWithCredit(5);
    const response = await mcp(key, call(1, "render_chart"), { mode: "silent" });
    expect(events(await response.text()).map((e) => e.data.method)).toEqual(["notifications/progress"]);
    const charge = (await admin("GET", `/customers/${id}/requests/${response.headers.get("x-request-id")}`)).body;
    expect(charge).toMatchObject({ meter: "mcp_tools", status: "settled", charged_exact_cents: "3" });
    expect(await balance(id)).toBe("2");
  });
});

describe("MCP: out of credit", () => {
  it("a tool call is answered by the gateway as a tool error in x402's MCP shape, never reaching the server; free methods still pass", async () => {
    const seen = mcpServer();
    const { id, key } = await customerWithCredit(1);
    expect(chargeOf((await (await mcp(key, call(1, "search_docs"))).json()) as Message).balance_cents).toBe("0.5");
    const response = await mcp(key, call(2, "render_chart"));
    expect(response.status).toBe(200);
    const answer = (await response.json()) as Message;
    expect(answer).toMatchObject({ jsonrpc: "2.0", id: 2, result: { isError: true } });
    const error = JSON.parse(answer.result.content[0].text)["x402/error"];
    expect(error.code).toBe(402);
    // The 402 template's message (GOVERNANCE.blocked_body), rendered for this customer.
    expect(error.message).toBe(error.data.message);
    expect(error.message).toContain("credit is used up");
    expect(error.data).toMatchObject({ code: "insufficient_credit", customer_id: id });
    expect(answer.result.structuredContent).toEqual(error.data);
    expect(seen.posts.flat().filter((m) => m.method === "tools/call")).toHaveLength(1);
    const listed = await mcp(key, { jsonrpc: "2.0", id: 3, method: "tools/list" });
    expect(((await listed.json()) as Message).result.tools).toHaveLength(1);
    expect(await balance(id)).toBe("0.5");
  });

  it("a key at its cap gets the cap's error in the same shape; the account's other keys keep working", async () => {
    mcpServer();
    const { id, key } = await customerWithCredit(10);
    const capped = await admin("POST", `/customers/${id}/keys`, { spend_cap_cents: 1, cap_period: "day" });
    expect(((await (await mcp(capped.body.key, call(1, "search_docs"))).json()) as Message).result.isError).toBe(false);
    const answer = (await (await mcp(capped.body.key, call(2, "render_chart"))).json()) as Message;
    expect(answer.result.isError).toBe(true);
    const error = JSON.parse(answer.result.content[0].text)["x402/error"];
    expect(error.data.error).toMatchObject({ code: "key_cap_reached", details: { key_id: capped.body.id, cap_cents: 1, period: "day" } });
    expect(error.message).toContain("spend cap");
    expect(((await (await mcp(key, call(3, "render_chart"))).json()) as Message).result.isError).toBe(false);
  });
});

describe("MCP: money refusals render as the proxy's (src/proxy/refusals.ts)", () => {
  const governance = (env as unknown as { GOVERNANCE: Record<string, unknown> }).GOVERNANCE;
  const withProblems = { GOVERNANCE: { ...governance, problem_details: true } };
  const post = (bindings: Record<string, unknown>, key: string, body: unknown) =>
    gatewayWith(
      bindings,
      "/mcp",
      withKey(key, { method: "POST", headers: { "content-type": "application/json", accept: "application/json, text/event-stream" }, body: JSON.stringify(body) }),
    );

  it("a capped key's paid calls carry RateLimit-Policy and RateLimit, refused or not; free methods do not", async () => {
    mcpServer();
    const { id } = await customerWithCredit(10);
    const capped = await admin("POST", `/customers/${id}/keys`, { spend_cap_cents: 1, cap_period: "day" });
    const paid = await mcp(capped.body.key, call(1, "search_docs"));
    expect(paid.headers.get("ratelimit-policy")).toBe('"key_cap";q=1;w=86400;payg-unit="cents"');
    expect(paid.headers.get("ratelimit")).toMatch(/^"key_cap";r=0;t=\d+$/);
    const refused = await mcp(capped.body.key, call(2, "render_chart"));
    expect(((await refused.json()) as Message).result.isError).toBe(true);
    expect(refused.headers.get("ratelimit")).toMatch(/^"key_cap";r=0;t=\d+$/);
    expect((await mcp(capped.body.key, { jsonrpc: "2.0", id: 3, method: "tools/list" })).headers.has("ratelimit")).toBe(false);
  });

  it("with GOVERNANCE.problem_details a refused tool call carries the RFC 9457 problem the proxy would answer", async () => {
    mcpServer();
    const { id, key } = await customerWithCredit(0);
    // A tool at 1 cent, the proxy's default price: the same numbers in both.
    const answer = (await (await post(withProblems, key, call(1, "lookup"))).json()) as Message;
    expect(answer.result.isError).toBe(true);
    expect(answer.result.structuredContent).toMatchObject({
      type: "tag:payg-edge-gateway,2026:problems/insufficient_credit",
      title: "Insufficient credit",
      status: 402,
      code: "insufficient_credit",
      customer_id: id,
    });
    const proxied = await gatewayWith(withProblems, "/v1/x", withKey(key));
    expect(proxied.headers.get("content-type")).toBe("application/problem+json");
    const problem = (await proxied.json()) as Record<string, unknown>;
    const { request_id: _a, ...fromProxy } = problem;
    const { request_id: _b, ...fromMcp } = answer.result.structuredContent as Record<string, unknown>;
    expect(fromMcp).toEqual(fromProxy);
  });
});

describe("MCP: batches", () => {
  const batch = [call(1, "search_docs"), { jsonrpc: "2.0", method: "notifications/progress", params: {} }, call(2, "render_chart"), { jsonrpc: "2.0", id: 3, method: "ping" }];

  it("under 2025-03-26 a batch is charged the sum of its calls, each answer with its own charge (JSON and SSE)", async () => {
    mcpServer();
    const { id, key } = await customerWithCredit(10);
    const headers = { "mcp-protocol-version": "2025-03-26" };
    const json = await mcp(key, batch, { headers });
    expect(json.headers.get("x-payg-charge-cents")).toBe("3.5");
    const answers = (await json.json()) as Message[];
    expect(answers.map((a) => [a.id, chargeOf(a)?.charged_cents, chargeOf(a)?.balance_cents])).toEqual([
      [1, "0.5", "6.5"],
      [2, "3", "6.5"],
      [3, undefined, undefined],
    ]);
    const sse = events(await (await mcp(key, batch, { headers, mode: "sse" })).text());
    expect(sse.map((e) => [e.data.method ?? e.data.id, chargeOf(e.data)?.charged_cents])).toEqual([
      ["notifications/progress", undefined],
      [1, "0.5"],
      [2, "3"],
      [3, undefined],
    ]);
    expect(await balance(id)).toBe("3");
  });

  it("is refused whole when its calls cannot all be paid: nothing reaches the server, nothing is charged", async () => {
    const seen = mcpServer();
    const { id, key } = await customerWithCredit(3);
    const answers = (await (await mcp(key, batch, { headers: { "mcp-protocol-version": "2025-03-26" } })).json()) as Message[];
    expect(answers.map((a) => [a.id, a.result?.isError ?? a.error?.code])).toEqual([
      [1, true],
      [2, true],
      [3, -32000],
    ]);
    expect(seen.posts).toHaveLength(0);
    expect(await balance(id)).toBe("3");
  });

  it("is refused with -32600 before the server under 2025-06-18 and later: by header, or by the version the session's initialize negotiated", async () => {
    const seen = mcpServer({ protocolVersion: "2025-11-25", session: "sess-new" });
    const { id, key } = await customerWithCredit(10);
    const byHeader = await mcp(key, batch, { headers: { "mcp-protocol-version": "2025-06-18" } });
    expect(byHeader.status).toBe(400);
    expect(((await byHeader.json()) as Message).error).toMatchObject({ code: -32600, data: { code: "invalid_request" } });
    await mcp(key, { jsonrpc: "2.0", id: 0, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "t", version: "1" } } });
    const bySession = await mcp(key, batch, { headers: { "mcp-session-id": "sess-new" } });
    expect(bySession.status).toBe(400);
    expect(((await bySession.json()) as Message).error.message).toContain("2025-11-25");
    // Another session (or none) still has the default 2025-03-26.
    expect((await mcp(key, batch, { headers: { "mcp-session-id": "sess-old" } })).headers.get("x-payg-charge-cents")).toBe("3.5");
    // Ending the session forgets it.
    await gateway("/mcp", withKey(key, { method: "DELETE", headers: { "mcp-session-id": "sess-new" } }));
    expect((await mcp(key, batch, { headers: { "mcp-session-id": "sess-new" } })).status).toBe(200);
    expect(seen.posts.filter((p) => p.length > 1)).toHaveLength(2);
    expect(await balance(id)).toBe("3");
  });
});

describe("MCP: a body that is not JSON-RPC", () => {
  it.each([
    ["{not json", -32700],
    ["[]", -32600],
    [JSON.stringify({ id: 1, method: "tools/call", params: { name: "x" } }), -32600],
    [JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: {} }), -32600],
    [JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: 7 } }), -32600],
    [JSON.stringify({ jsonrpc: "2.0", method: "tools/call", params: { name: "x" } }), -32600],
    [JSON.stringify([call(1, "a"), call(1, "b")]), -32600],
  ])("%s is answered with %i before the server and not charged", async (body, code) => {
    const seen = mcpServer();
    const { id, key } = await customerWithCredit(5);
    const response = await mcp(key, body, { headers: { "mcp-protocol-version": "2025-03-26" } });
    expect(response.status).toBe(400);
    const answer = (await response.json()) as Message;
    expect(answer).toMatchObject({ jsonrpc: "2.0", id: null, error: { code, data: { code: "invalid_request" } } });
    expect(typeof answer.error.message).toBe("string");
    expect(seen.posts).toHaveLength(0);
    expect(await balance(id)).toBe("5");
  });
});

describe("MCP: Idempotency-Key on a paid POST", () => {
  const keyed = (key: string, idem: string, body: unknown, mode?: string) => mcp(key, body, { headers: { "idempotency-key": idem }, ...(mode ? { mode } : {}) });

  it("a retried tool call replays its first answer: the server runs it once, it is charged once; another body is 422", async () => {
    const seen = mcpServer();
    const { id, key } = await customerWithCredit(10);
    const first = await keyed(key, "mcp-1", call(1, "render_chart"));
    const firstBody = await first.text();
    const again = await keyed(key, "mcp-1", call(1, "render_chart"));
    expect(again.status).toBe(200);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await again.text()).toBe(firstBody);
    expect(seen.posts).toHaveLength(1);
    expect(await balance(id)).toBe("7");
    const mismatch = await keyed(key, "mcp-1", call(1, "search_docs"));
    expect([mismatch.status, ((await mismatch.json()) as any).error.code]).toEqual([422, "idempotency_mismatch"]);
    expect(seen.posts).toHaveLength(1);
    expect(await balance(id)).toBe("7");
  });

  it("an SSE answer cannot be replayed (409, never a second charge); a released hold (503) or a refused request (4xx) forgets the key", async () => {
    const seen = mcpServer();
    const { id, key } = await customerWithCredit(10);
    expect(events(await (await keyed(key, "mcp-sse", call(1, "render_chart"), "sse")).text()).at(-1)!.data.id).toBe(1);
    const retried = await keyed(key, "mcp-sse", call(1, "render_chart"), "sse");
    expect([retried.status, ((await retried.json()) as any).error.code]).toEqual([409, "idempotency_not_replayable"]);
    expect(await balance(id)).toBe("7");
    for (const mode of ["503", "404"]) {
      await (await keyed(key, `mcp-${mode}`, call(2, "render_chart"), mode)).text();
      const again = await keyed(key, `mcp-${mode}`, call(2, "render_chart"), mode);
      expect(again.headers.get("idempotent-replayed")).toBeNull();
      expect(again.status).toBe(Number(mode));
    }
    expect(seen.posts).toHaveLength(5);
    expect(await balance(id)).toBe("7");
  });

  it("a JSON answer that charged nothing (the server's JSON-RPC error: no tool ran) forgets the key, so a retry runs the tool", async () => {
    const seen = mcpServer();
    const { id, key } = await customerWithCredit(10);
    const failed = await keyed(key, "mcp-err", call(1, "invalid"));
    expect([failed.headers.get("x-payg-charge-cents"), ((await failed.json()) as Message).error.code]).toEqual(["0", -32602]);
    const again = await keyed(key, "mcp-err", call(1, "invalid"));
    expect(again.headers.get("idempotent-replayed")).toBeNull();
    await again.text();
    expect(seen.posts).toHaveLength(2);
    expect(await balance(id)).toBe("10");
  });
});
