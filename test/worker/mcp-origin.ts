import { HttpResponse, http } from "msw";
import { gateway, ORIGIN, withKey } from "./helpers";
import { server } from "./setup";

/*
 * An MCP server double at <ORIGIN>/mcp, answering as MCP's Streamable HTTP transport specifies
 * (modelcontextprotocol.io/specification/2025-11-25/basic/transports): JSON or an SSE stream per
 * POST, 202 for notifications only, Mcp-Session-Id from initialize.
 */

export type Message = { jsonrpc: "2.0"; id?: string | number | null; method?: string; params?: any; result?: any; error?: any };

/** What the double received: each POST's messages, by mode. */
export interface Seen {
  posts: Message[][];
  methods: string[];
}

/**
 * An MCP server. `?mode=` picks its answer: `json` (default), `sse` (a progress notification,
 * then one event per answer, with event ids), `silent` (an SSE stream that ends without
 * answering), `500`, `503`, `404`. Tool `broken` answers with isError, `invalid` with a JSON-RPC error.
 */
export function mcpServer(options: { protocolVersion?: string; session?: string } = {}): Seen {
  const seen: Seen = { posts: [], methods: [] };
  server.use(
    http.all(`${ORIGIN}/mcp`, async ({ request }) => {
      seen.methods.push(request.method);
      if (request.method !== "POST")
        return request.method === "GET" ? new HttpResponse(": open\n\n", { headers: { "content-type": "text/event-stream" } }) : new HttpResponse(null, { status: 200 });
      const mode = new URL(request.url).searchParams.get("mode") ?? "json";
      const body = await request.json();
      const messages = (Array.isArray(body) ? body : [body]) as Message[];
      seen.posts.push(messages);
      if (mode === "500" || mode === "503") return HttpResponse.json({ error: "boom" }, { status: Number(mode) });
      if (mode === "404") return HttpResponse.json({ jsonrpc: "2.0", id: null, error: { code: -32001, message: "Session not found" } }, { status: 404 });
      const requests = messages.filter((m) => m.method !== undefined && m.id !== undefined);
      if (requests.length === 0) return new HttpResponse(null, { status: 202 });
      const answers = requests.map(answer);
      const headers: Record<string, string> = requests.some((m) => m.method === "initialize") ? { "mcp-session-id": options.session ?? "sess-1" } : {};
      if (mode === "json") return HttpResponse.json(Array.isArray(body) ? answers : answers[0], { headers });
      const events = mode === "silent" ? [] : answers.map((a, i) => `id: ev-${i}\nevent: message\ndata: ${JSON.stringify(a)}\n\n`);
      const progress = `event: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 1, progress: 1 } })}\n\n`;
      return new HttpResponse([progress, ...events].join(""), { headers: { ...headers, "content-type": "text/event-stream" } });
    }),
  );
  function answer(m: Message): Message {
    if (m.method === "initialize")
      return {
        jsonrpc: "2.0",
        id: m.id,
        result: { protocolVersion: options.protocolVersion ?? m.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: "double", version: "1" } },
      };
    if (m.method === "tools/list") return { jsonrpc: "2.0", id: m.id, result: { tools: [{ name: "search_docs", inputSchema: { type: "object" } }] } };
    if (m.method !== "tools/call") return { jsonrpc: "2.0", id: m.id, result: {} };
    const name = m.params.name as string;
    if (name === "invalid") return { jsonrpc: "2.0", id: m.id, error: { code: -32602, message: "Invalid params" } };
    return { jsonrpc: "2.0", id: m.id, result: { content: [{ type: "text", text: `ran ${name}` }], isError: name === "broken" } };
  }
  return seen;
}

export const call = (id: number | string, name: string): Message => ({ jsonrpc: "2.0", id, method: "tools/call", params: { name, arguments: {} } });

/** A POST to the gateway's MCP endpoint with the key (`mode` is the double's answer mode). */
export function mcp(key: string, body: unknown, options: { mode?: string; headers?: Record<string, string> } = {}) {
  return gateway(
    `/mcp${options.mode ? `?mode=${options.mode}` : ""}`,
    withKey(key, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...options.headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    }),
  );
}
