// The demo origin's MCP server at /mcp (Streamable HTTP, built with the official
// @modelcontextprotocol/sdk): two tools at two prices in the shipped wrangler.toml, search_docs
// (0.5 cents, through the "search*" row) and render_chart (3 cents). Sessions are stateful
// (Mcp-Session-Id); answers are SSE streams, or JSON when the client's URL has ?response=json.
import { randomUUID } from "node:crypto";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

const DOCS = [
  { title: "Quick start", text: "npm start runs the gateway with a demo origin and a demo customer." },
  { title: "Meters", text: "A meter prices requests by method and path, per request or per unit read from the response." },
  { title: "MCP", text: "An MCP meter prices tools/call by tool name; protocol methods are free." },
  { title: "Tokens", text: "A tokens meter prices input, cached input and output tokens per model." },
];
const CHART_KINDS = ["bar", "line"];

function demoServer() {
  const server = new McpServer({ name: "payg-demo", version: "1.0.0" });
  server.registerTool("search_docs", { description: "Searches the gateway's documentation.", inputSchema: { query: z.string() } }, async ({ query }) => {
    const hits = DOCS.filter((d) => `${d.title} ${d.text}`.toLowerCase().includes(query.toLowerCase()));
    return { content: [{ type: "text", text: hits.length ? hits.map((d) => `${d.title}: ${d.text}`).join("\n") : "No match." }] };
  });
  server.registerTool(
    "render_chart",
    { description: `Renders a chart of the values (kind: ${CHART_KINDS.join(" or ")}) as text.`, inputSchema: { kind: z.string(), values: z.array(z.number()) } },
    async ({ kind, values }) => {
      // A tool error, as MCP defines one: the tool ran and reports its failure in the result.
      if (!CHART_KINDS.includes(kind)) return { content: [{ type: "text", text: `Unsupported chart kind ${kind}.` }], isError: true };
      const max = Math.max(1, ...values);
      return { content: [{ type: "text", text: values.map((v) => "#".repeat(Math.round((v / max) * 20))).join("\n") }] };
    },
  );
  return server;
}

/** A handler for /mcp on a Node HTTP server; `body` is the request body already read. */
export function demoMcp() {
  const sessions = new Map();
  return async function handleMcp(req, res, url, body) {
    const sessionId = req.headers["mcp-session-id"];
    let parsed;
    if (req.method === "POST") {
      try {
        parsed = JSON.parse(body);
      } catch {
        parsed = undefined;
      }
    }
    let transport = typeof sessionId === "string" ? sessions.get(sessionId) : undefined;
    if (!transport) {
      const initializing = req.method === "POST" && [parsed].flat().some((m) => m?.method === "initialize");
      if (typeof sessionId === "string" || !initializing) {
        res.writeHead(typeof sessionId === "string" ? 404 : 400, { "content-type": "application/json" });
        return res.end(
          JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32000, message: typeof sessionId === "string" ? "Session not found." : "No session: initialize first." } }),
        );
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: url.searchParams.get("response") === "json",
        onsessioninitialized: (id) => sessions.set(id, transport),
      });
      transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
      await demoServer().connect(transport);
    }
    await transport.handleRequest(req, res, parsed);
  };
}
