import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { customerWithKey, type Gateway, startGateway } from "./harness";

// The shipped mcp_tools meter (wrangler.toml) in the real `wrangler dev`, in front of the demo
// origin's MCP server (the official SDK's McpServer), with the official SDK's Client and
// StreamableHTTPClientTransport as the agent: search_docs costs 0.5 cents, render_chart 3.
let gateway: Gateway;
let origin: Awaited<ReturnType<typeof startDemoOrigin>>;

beforeAll(async () => {
  origin = await startDemoOrigin({ port: 0 });
  gateway = await startGateway({ vars: { ORIGIN_URL: origin.url } });
});
afterAll(async () => {
  await gateway?.stop();
  await origin?.close();
});

/** An SDK client through the gateway; `json` asks the demo server for JSON answers instead of SSE. */
async function connect(key: string, json = false) {
  const transport = new StreamableHTTPClientTransport(new URL(`${gateway.url}/mcp${json ? "?response=json" : ""}`), {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
  });
  const client = new Client({ name: "e2e-agent", version: "1.0.0" });
  await client.connect(transport);
  return { client, transport };
}

async function balance(id: string): Promise<string> {
  return (await gateway.admin("GET", `/customers/${id}`)).body.balance.available_exact_cents;
}

const charge = (result: { _meta?: Record<string, unknown> }) => result._meta?.["payg/charge"] as { charged_cents: string; balance_cents: string; request_id: string } | undefined;

/** The tools/call messages the MCP server received for a customer. */
const toolCallsAtOrigin = (customer: string) =>
  origin.received.filter((r) => r.path === "/mcp" && r.headers["x-payg-customer-id"] === customer && r.method === "POST" && r.body.includes('"tools/call"')).length;

describe.each([
  ["SSE", false],
  ["JSON", true],
])("the MCP SDK client through the gateway (%s answers)", (_mode, json) => {
  it("lists tools for free, pays each tool its price, and reads the charge in _meta", async () => {
    const id = `cus_e2e_mcp_${json ? "json" : "sse"}`;
    const { key } = await customerWithKey(gateway, id, 10);
    const { client, transport } = await connect(key, json);
    expect(transport.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(["render_chart", "search_docs"]);
    await client.ping();
    expect(await balance(id)).toBe("10");

    const search = await client.callTool({ name: "search_docs", arguments: { query: "mcp" } });
    expect((search.content as { text: string }[])[0]!.text).toContain("MCP meter");
    expect(charge(search)).toMatchObject({ charged_cents: "0.5", balance_cents: "9.5" });
    const chart = await client.callTool({ name: "render_chart", arguments: { kind: "bar", values: [1, 2] } });
    expect(chart.isError).toBeFalsy();
    expect(charge(chart)).toMatchObject({ charged_cents: "3", balance_cents: "6.5" });
    // A tool error from the server: the tool ran, so it is charged (charge_tool_errors defaults to true).
    const failed = await client.callTool({ name: "render_chart", arguments: { kind: "pie", values: [1] } });
    expect(failed.isError).toBe(true);
    expect(charge(failed)).toMatchObject({ charged_cents: "3", balance_cents: "3.5" });
    const record = await gateway.admin("GET", `/customers/${id}/requests/${charge(failed)!.request_id}`);
    expect(record.body).toMatchObject({ meter: "mcp_tools", status: "settled", charged_exact_cents: "3" });
    expect(await balance(id)).toBe("3.5");
    await transport.terminateSession();
    await client.close();
  });
});

describe("the MCP SDK client at zero credit", () => {
  it("sees the refusal as a tool error (x402's MCP shape) and can still list tools; the call never reaches the server", async () => {
    const id = "cus_e2e_mcp_broke";
    const { key } = await customerWithKey(gateway, id, 1);
    const { client } = await connect(key);
    expect(charge(await client.callTool({ name: "search_docs", arguments: { query: "x" } }))?.balance_cents).toBe("0.5");
    const refused = await client.callTool({ name: "render_chart", arguments: { kind: "bar", values: [1] } });
    expect(refused.isError).toBe(true);
    const error = JSON.parse((refused.content as { type: string; text: string }[])[0]!.text)["x402/error"];
    expect(error).toMatchObject({ code: 402, data: { code: "insufficient_credit", customer_id: id, topup_url: expect.stringContaining("/portal") } });
    expect(error.message).toContain("Your API credit is used up");
    expect(refused.structuredContent).toEqual(error.data);
    expect((await client.listTools()).tools).toHaveLength(2);
    expect(toolCallsAtOrigin(id)).toBe(1);
    expect(await balance(id)).toBe("0.5");
    await client.close();
  });
});

describe("batches over raw HTTP (the SDK client sends none)", () => {
  const post = (key: string, body: unknown, headers: Record<string, string> = {}) =>
    gateway.fetch("/mcp?response=json", {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
      body: JSON.stringify(body),
    });
  const calls = [
    { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "search_docs", arguments: { query: "meter" } } },
    { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "render_chart", arguments: { kind: "line", values: [3] } } },
  ];

  it("in a 2025-03-26 session, a batch is charged the sum of its calls, each answer with its charge", async () => {
    const id = "cus_e2e_mcp_batch";
    const { key } = await customerWithKey(gateway, id, 10);
    const init = await post(key, {
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: { protocolVersion: "2025-03-26", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
    });
    expect(((await init.json()) as { result: { protocolVersion: string } }).result.protocolVersion).toBe("2025-03-26");
    const session = { "mcp-session-id": init.headers.get("mcp-session-id")!, "mcp-protocol-version": "2025-03-26" };
    expect((await post(key, { jsonrpc: "2.0", method: "notifications/initialized" }, session)).status).toBe(202);
    const response = await post(key, calls, session);
    expect(response.headers.get("x-payg-charge-cents")).toBe("3.5");
    const answers = (await response.json()) as { id: number; result: { _meta: Record<string, { charged_cents: string }> } }[];
    expect(answers.map((a) => [a.id, a.result._meta["payg/charge"]!.charged_cents]).sort()).toEqual([
      [1, "0.5"],
      [2, "3"],
    ]);
    expect(await balance(id)).toBe("6.5");
  });

  it("in a session the SDK initialized (a version without batches), a batch is refused with -32600 before the server", async () => {
    const id = "cus_e2e_mcp_nobatch";
    const { key } = await customerWithKey(gateway, id, 10);
    const { client, transport } = await connect(key, true);
    const refused = await post(key, calls, { "mcp-session-id": transport.sessionId! });
    expect(refused.status).toBe(400);
    expect(await refused.json()).toMatchObject({ jsonrpc: "2.0", id: null, error: { code: -32600 } });
    expect(toolCallsAtOrigin(id)).toBe(0);
    expect(await balance(id)).toBe("10");
    await client.close();
  });
});
