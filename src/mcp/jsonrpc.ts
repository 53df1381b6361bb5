/*
 * The JSON-RPC 2.0 messages of MCP's Streamable HTTP transport, as the gateway reads them: what a
 * POST to the endpoint carries, which of its messages are tool calls, and the error answers the
 * gateway gives for a body that is not JSON-RPC.
 */

export type RpcId = string | number;

export interface RpcMessage {
  jsonrpc: "2.0";
  id?: RpcId | null;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: unknown;
}

/** A POST's messages: one, or a batch (JSON-RPC batching, which MCP removed in 2025-06-18). */
export interface McpPost {
  batch: boolean;
  messages: RpcMessage[];
}

/** A tool call in a POST: its request id and tool name. */
export interface ToolCall {
  id: RpcId;
  name: string;
}

/** JSON-RPC 2.0's error codes the gateway answers with (jsonrpc.org/specification §5.1). */
export const PARSE_ERROR = -32700;
export const INVALID_REQUEST = -32600;

/** The first protocol version without JSON-RPC batching (modelcontextprotocol.io, changelog of 2025-06-18). */
export const BATCHLESS_SINCE = "2025-06-18";

/** Whether a protocol version (MCP versions are dates, YYYY-MM-DD) still allows batches. */
export function allowsBatches(version: string | null): boolean {
  return version === null || version < BATCHLESS_SINCE;
}

/** Parses a POST body; a body that is not JSON-RPC is answered with the error JSON-RPC defines for it. */
export function parsePost(text: string): McpPost | { code: number; message: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { code: PARSE_ERROR, message: "Parse error: the body is not JSON." };
  }
  const batch = Array.isArray(value);
  const messages = batch ? (value as unknown[]) : [value];
  if (messages.length === 0) return { code: INVALID_REQUEST, message: "Invalid Request: an empty batch." };
  const ids = new Set<unknown>();
  for (const message of messages) {
    const problem = invalid(message);
    if (problem) return { code: INVALID_REQUEST, message: `Invalid Request: ${problem}.` };
    // Each answer is matched to its call (and its price) by id: a batch must not repeat one.
    const { id, method } = message as RpcMessage;
    if (method !== undefined && id !== undefined && id !== null) {
      if (ids.has(id)) return { code: INVALID_REQUEST, message: `Invalid Request: the id ${JSON.stringify(id)} is used twice in this batch.` };
      ids.add(id);
    }
  }
  return { batch, messages: messages as RpcMessage[] };
}

function invalid(message: unknown): string | null {
  if (message === null || typeof message !== "object" || Array.isArray(message)) return "a message must be a JSON object";
  const m = message as Record<string, unknown>;
  if (m.jsonrpc !== "2.0") return 'jsonrpc must be "2.0"';
  if ("id" in m && m.id !== null && typeof m.id !== "string" && typeof m.id !== "number") return "id must be a string or a number";
  // A response to a request the server sent (sampling, elicitation): it carries work of no tool.
  if (!("method" in m)) return "result" in m || "error" in m ? null : "a message needs a method (or a result or error)";
  if (typeof m.method !== "string") return "method must be a string";
  if (m.method !== "tools/call") return null;
  if (m.id === undefined || m.id === null) return "tools/call is a request: it needs an id";
  const params = m.params as Record<string, unknown> | undefined;
  return params !== null && typeof params === "object" && typeof params.name === "string" ? null : "tools/call needs params.name, a string";
}

/** The tool calls of a POST, in order. */
export function toolCalls(post: McpPost): ToolCall[] {
  return post.messages.filter((m) => m.method === "tools/call").map((m) => ({ id: m.id as RpcId, name: (m.params as { name: string }).name }));
}

/** A JSON-RPC error answer. */
export function rpcError(id: RpcId | null, code: number, message: string, data?: unknown) {
  return { jsonrpc: "2.0" as const, id, error: { code, message, ...(data === undefined ? {} : { data }) } };
}

/** A JSON-RPC result answer. */
export function rpcResult(id: RpcId, result: unknown) {
  return { jsonrpc: "2.0" as const, id, result };
}
