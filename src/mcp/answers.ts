import type { CompiledMeter } from "../lib/config";
import { formatCents } from "../lib/money";
import { type McpPost, type RpcId, type RpcMessage, rpcError, rpcResult, type ToolCall } from "./jsonrpc";

/*
 * What the gateway adds to an MCP exchange: each tool's price, the refusal a client gets when its
 * calls cannot be paid for (in the one shape x402's MCP transport defines, whether or not agent
 * payments are configured), and the charge each tool result carries in `_meta`.
 */

/** A tool call with its price: the first `tools` row whose glob matches its name, else the meter's own price. */
export interface PricedCall extends ToolCall {
  priceMicros: number;
}

export function priceCalls(meter: CompiledMeter, calls: ToolCall[]): PricedCall[] {
  return calls.map((call) => ({ ...call, priceMicros: meter.tools.find((t) => t.pattern.test(call.name))?.priceMicros ?? meter.priceMicros }));
}

/** The `_meta` key of the charge in a tool result. */
export const CHARGE_META = "payg/charge";

/**
 * A refused tool call's answer (the x402 MCP transport, specs/transports-v2/mcp.md of the x402
 * repository): a tool result with `isError: true`, its text the JSON `{"x402/error": {code: 402,
 * message, data}}`, and `structuredContent` the x402 PaymentRequired object when agent payments
 * are configured, otherwise the refusal body itself.
 */
export function refusedCall(id: RpcId, refusal: { message: string; body: unknown; paymentRequired?: unknown }) {
  const error = { "x402/error": { code: 402, message: refusal.message, data: refusal.body } };
  return rpcResult(id, {
    content: [{ type: "text", text: JSON.stringify(error) }],
    isError: true,
    structuredContent: refusal.paymentRequired ?? refusal.body,
  });
}

/**
 * The gateway's answer to a POST whose tool calls cannot be paid for: nothing reaches the server.
 * Each tool call gets its refusal; in a batch (refused whole), every other request gets a JSON-RPC
 * error saying it did not run; notifications get nothing.
 */
export function refusedPost(post: McpPost, refusal: { message: string; body: unknown; paymentRequired?: unknown }) {
  const answers = post.messages
    .filter((m): m is RpcMessage & { id: RpcId } => m.method !== undefined && m.id !== undefined && m.id !== null)
    .map((m) =>
      m.method === "tools/call"
        ? refusedCall(m.id, refusal)
        : rpcError(m.id, -32000, "Not run: the tool calls of this batch could not be paid for, so none of it reached the server.", refusal.body),
    );
  return post.batch ? answers : answers[0];
}

/** A response message to one of the calls: whether the tool reported an error. */
export function isToolError(message: RpcMessage): boolean {
  return message.result !== null && typeof message.result === "object" && (message.result as { isError?: unknown }).isError === true;
}

/**
 * What one answered call costs: its price; nothing when the server answered with a JSON-RPC error
 * (MCP's protocol errors: the tool did not run); a tool error (`isError: true`, the tool ran and
 * failed) per the meter's `charge_tool_errors`.
 */
export function callCharge(meter: CompiledMeter, call: PricedCall, answer: RpcMessage): number {
  if (answer.error !== undefined) return 0;
  return isToolError(answer) && !meter.chargeToolErrors ? 0 : call.priceMicros;
}

/** The `_meta` key of an x402 payment in a tool call's params, and of its settlement in the result (x402's MCP transport). */
export const PAYMENT_META = "x402/payment";
export const PAYMENT_RESPONSE_META = "x402/payment-response";

/** The x402 payment a POST's tool calls carry in `params._meta["x402/payment"]` (the first one), or null. */
export function paymentOf(post: McpPost): object | null {
  for (const m of post.messages) {
    const meta = m.method === "tools/call" ? (m.params as { _meta?: Record<string, unknown> } | undefined)?._meta : undefined;
    const payment = meta?.[PAYMENT_META];
    if (payment !== null && typeof payment === "object") return payment;
  }
  return null;
}

/**
 * The answer with the call's charge, the balance after it and the request id in
 * `result._meta["payg/charge"]`, plus any other `_meta` entries (a payment's settlement).
 */
export function withCharge(answer: RpcMessage, charge: { micros: number; balanceMicros: number; requestId: string }, more: Record<string, unknown> = {}): RpcMessage {
  if (answer.result === null || typeof answer.result !== "object") return answer;
  const result = answer.result as { _meta?: Record<string, unknown> };
  const meta = { charged_cents: formatCents(charge.micros), balance_cents: formatCents(charge.balanceMicros), request_id: charge.requestId };
  return { ...answer, result: { ...result, _meta: { ...result._meta, [CHARGE_META]: meta, ...more } } };
}
