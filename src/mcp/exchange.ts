import type { Context } from "hono";
import { type AppEnv, customerStub } from "../env";
import type { CompiledMeter } from "../lib/config";
import { ApiError, errorBody } from "../lib/errors";
import { log } from "../lib/log";
import { formatCents } from "../lib/money";
import { eventData, SseSplitter, withEventData } from "../metering/sse";
import { UNKNOWN_KEY } from "../middleware/api-key";
import { jsonError } from "../on-error";
import { offerBody, offerFor, packCents, x402Offer } from "../payments/offer";
import { acceptX402, type Paid } from "../payments/x402/accept";
import { forward, refundable } from "../proxy/forward";
import { originHeaders } from "../proxy/headers";
import { type IdempotentOutcome, idempotencyKeyOf, keepForReplay, readBodyWithin, readUpTo, replayedResponse, requestFingerprint } from "../proxy/idempotency";
import { holdKeeper, isEventStream, JSON_UNITS_MAX_BYTES, kept, type MeterContext, streamSettlement } from "../proxy/metered";
import { once } from "../proxy/once";
import { addKeyCapFields } from "../proxy/ratelimit";
import { isMoneyRefusal, moneyRefusalBody, refuse } from "../proxy/refusals";
import { callCharge, PAYMENT_RESPONSE_META, type PricedCall, paymentOf, priceCalls, refusedPost, withCharge } from "./answers";
import { allowsBatches, INVALID_REQUEST, type McpPost, parsePost, type RpcId, type RpcMessage, rpcError, toolCalls } from "./jsonrpc";

type Stub = ReturnType<typeof customerStub>;
type AuthorizeInput = Parameters<Stub["authorize"]>[0];

/** Where an MCP request goes, and whose it is (from the proxy route). */
export interface McpRequest {
  meter: CompiledMeter;
  target: URL;
  customerId: string;
  keyHash: string;
}

/**
 * One request to an MCP endpoint (a meter with `units = "mcp"`, Streamable HTTP). A POST's
 * `tools/call` messages are priced by tool name and held before the server sees them; everything
 * else (protocol methods, notifications, GET streams, DELETE) passes free with the key checked.
 * Out of credit, tool calls are answered here as tool errors (x402's MCP transport shape), never
 * forwarded. Each answered call is charged (a tool error per `charge_tool_errors`, a JSON-RPC error
 * not at all) and carries its charge in `result._meta["payg/charge"]`, in JSON and SSE answers.
 */
export async function mcpExchange(c: Context<AppEnv>, request: McpRequest): Promise<Response> {
  const { config, requestId } = c.var;
  const stub = customerStub(c.env, request.customerId);
  const sessionId = c.req.header("mcp-session-id") ?? null;
  const send = async (body: BodyInit | null) => {
    const headers = await originHeaders(
      c.req.raw.headers,
      { customerId: request.customerId, requestId, clientIp: c.req.header("cf-connecting-ip") ?? null },
      { secret: config.ORIGIN_SIGNING_SECRET, method: c.req.method, pathAndQuery: request.target.pathname + request.target.search },
    );
    return forward(config, request.target, c.req.method, headers, body);
  };

  if (c.req.method !== "POST") {
    await knownKey(stub, request.keyHash);
    const result = await send(c.req.method === "GET" || c.req.method === "HEAD" ? null : c.req.raw.body);
    if ("failure" in result) throw originFailure(result.failure, 0);
    if (c.req.method === "DELETE" && sessionId && result.response.ok) await stub.mcpSession({ sessionId, protocolVersion: null });
    return tagged(new Response(result.response.body, result.response), requestId);
  }

  const bytes = await readBodyWithin(c.req.raw, config.IDEMPOTENCY.max_body_bytes);
  const post = parsePost(new TextDecoder().decode(bytes ?? new ArrayBuffer(0)));
  if ("code" in post) return rpcFailure(post.code, post.message, requestId);
  if (post.batch) {
    const version = c.req.header("mcp-protocol-version") ?? (sessionId ? await stub.mcpSessionVersion(sessionId) : null);
    if (!allowsBatches(version)) {
      return rpcFailure(INVALID_REQUEST, `Invalid Request: MCP ${version} has no JSON-RPC batches (removed in 2025-06-18); send each message in its own POST.`, requestId);
    }
  }
  const calls = priceCalls(request.meter, toolCalls(post));
  const total = calls.reduce((sum, call) => sum + call.priceMicros, 0);

  if (total === 0) {
    // Protocol traffic (and free tools): the key is checked, nothing is held, and the client can
    // list tools and read an error even when its credit or its key's cap is spent.
    await knownKey(stub, request.keyHash);
    const result = await send(bytes);
    if ("failure" in result) throw originFailure(result.failure, 0);
    const response = await observeInitialize(post, result.response, sessionId, stub);
    return tagged(response, requestId);
  }

  // The calls' prices are held as one amount (units of one micro-cent): a batch is paid whole or refused whole.
  // An Idempotency-Key makes a retried POST its first answer again, never a second charge (as on the proxy).
  const idempotencyKey = idempotencyKeyOf(c.req.raw.headers);
  const input: AuthorizeInput = {
    keyHash: request.keyHash,
    meter: request.meter.name,
    priceMicros: 1,
    requestId,
    hold: { units: total, onMissing: "hold" },
    ...(idempotencyKey !== null
      ? { idempotency: { key: idempotencyKey, fingerprint: await requestFingerprint("POST", request.target.pathname + request.target.search, bytes) } }
      : {}),
  };
  // A tool call paying the refusal (x402's MCP transport: params._meta["x402/payment"]): credited, then the calls held from it, in one step.
  const payment = config.PAYMENTS?.x402 ? paymentOf(post) : null;
  let paid: Paid | null = null;
  if (payment) {
    try {
      paid = await acceptX402({ config, stub, customerId: request.customerId, input }, payment);
    } catch (error) {
      // A payment refused (invalid, or not settled) is the calls' refusal, with a fresh PaymentRequired naming the reason.
      if (!(error instanceof ApiError) || (error.status !== 402 && error.status !== 400)) throw error;
      const cents = packCents(config, total);
      const reason = typeof error.details?.reason === "string" ? error.details.reason : undefined;
      const required = cents === null ? undefined : await x402Offer(config, cents, request.customerId, c.req.url, reason);
      const refusal = { message: error.message, body: errorBody(error.code, error.message, requestId, error.details), ...(required ? { paymentRequired: required } : {}) };
      return tagged(Response.json(refusedPost(post, refusal)), requestId);
    }
  }
  const decision = paid?.decision ?? (await once(async (retry) => await stub.authorize(retry ? { ...input, retry } : input)));
  if (decision.outcome === "replay") return replayedResponse(decision.response);
  // A capped key's RateLimit fields go on every answer to a paid call, refused or not, as on the proxy's.
  const keyCap = decision.outcome === "key_cap_reached" ? decision : "keyCap" in decision ? decision.keyCap : undefined;
  const answer = (response: Response) => {
    addKeyCapFields(response.headers, keyCap);
    return tagged(response, requestId);
  };
  const finish = (outcome: IdempotentOutcome) => {
    if (idempotencyKey !== null) c.executionCtx.waitUntil(stub.finishIdempotent({ key: idempotencyKey, keyHash: request.keyHash, requestId, outcome }));
  };
  /**
   * A forwarded POST's answer under its Idempotency-Key: one whose hold settled at nothing forgets
   * the key (a retry is a new request); any other is kept for replay (a stream, whose hold settles
   * later, as not replayable).
   */
  const answered = (response: Response, streamed = false) => {
    if (idempotencyKey === null) return answer(response);
    if (settledMicros === 0) {
      finish("forget");
      return answer(response);
    }
    return keepForReplay(answer(response), streamed, config.IDEMPOTENCY.max_body_bytes, finish, (p) => c.executionCtx.waitUntil(p));
  };
  if (isMoneyRefusal(decision)) {
    const refusal = moneyRefusalBody(config, decision, requestId);
    const offer = decision.outcome === "insufficient_credit" ? await offerFor(config, decision, c.req.url) : null;
    const body = offer ? { ...refusal.body, ...offerBody(offer) } : refusal.body;
    return answer(Response.json(refusedPost(post, { ...refusal, body, ...(offer?.x402 ? { paymentRequired: offer.x402 } : {}) })));
  }
  refuse(decision);
  const paymentMeta = paid ? { [PAYMENT_RESPONSE_META]: paid.settlement } : {};

  const ctx: MeterContext = { config, meter: request.meter, stub, requestId, heldUnits: total, waitUntil: (p) => c.executionCtx.waitUntil(p) };
  // What the hold settled at, for the Idempotency-Key: a POST that charged nothing forgets it.
  let settledMicros: number | undefined;
  const settle = async (units: number | null, reason: "completed" | "origin_failed" | "units_missing") => {
    const settled = await once(async () => await stub.settleHold({ requestId, units, reason }));
    settledMicros = settled.chargedMicros;
    return settled;
  };
  // Forwarding and settling a failure run under waitUntil: a client that hangs up cannot skip the release.
  const forwarded = (async () => {
    const result = await send(bytes);
    if (!("failure" in result) && !refundable(config, result)) return { result, settled: null };
    return { result, settled: await settle(null, "origin_failed") };
  })();
  ctx.waitUntil(forwarded);
  const { result, settled } = await forwarded;
  if ("failure" in result) {
    const failure = originFailure(result.failure, settled?.chargedMicros ?? 0);
    if (idempotencyKey === null || !settled?.chargedMicros) {
      finish("forget");
      throw failure;
    }
    return answered(await jsonError(failure, c));
  }
  const origin = result.response;
  if (settled) return answered(charged(new Response(origin.body, origin), settled));
  // The server refused the request itself (a bad session, a malformed call): no tool ran.
  if (origin.status >= 400 && origin.status < 500) return answered(charged(new Response(origin.body, origin), await settle(0, "completed")));
  if (origin.ok && isEventStream(origin) && origin.body) {
    const response = new Response(chargedEvents(ctx, calls, origin.body, paymentMeta), origin);
    response.headers.delete("content-length");
    return answered(response, true);
  }
  return answered(await chargedJson(ctx, calls, origin, settle, paymentMeta));
}

/** The key must be one of a live customer's (what authorize checks first), without touching credit. */
async function knownKey(stub: Stub, keyHash: string): Promise<void> {
  if (!(await stub.identify(keyHash))) throw new ApiError("invalid_api_key", UNKNOWN_KEY);
}

function originFailure(failure: "connection_error" | "timeout", chargedMicros: number): ApiError {
  const timedOut = failure === "timeout";
  return new ApiError(timedOut ? "origin_timeout" : "origin_unavailable", timedOut ? "The origin did not answer in time." : "The origin could not be reached.", {
    charged_cents: formatCents(chargedMicros),
  });
}

/**
 * A body that is not JSON-RPC, answered before the server as MCP's transport says (HTTP 400, a
 * JSON-RPC error with no id); the gateway's own error code and message ride in `error.data`.
 */
function rpcFailure(code: number, message: string, requestId: string): Response {
  const house = errorBody("invalid_request", message, requestId).error;
  return tagged(Response.json(rpcError(null, code, message, house), { status: 400 }), requestId);
}

function tagged(response: Response, requestId: string): Response {
  response.headers.set("x-request-id", requestId);
  return response;
}

function charged(response: Response, settled: { chargedMicros: number; balanceMicros: number }): Response {
  response.headers.set("x-payg-charge-cents", formatCents(settled.chargedMicros));
  response.headers.set("x-payg-balance-cents", formatCents(settled.balanceMicros));
  return response;
}

/** The answers among a response's messages, by request id. */
function answersOf(messages: RpcMessage[]): Map<RpcId, RpcMessage> {
  const answers = new Map<RpcId, RpcMessage>();
  for (const m of messages) if (m.method === undefined && m.id !== undefined && m.id !== null) answers.set(m.id, m);
  return answers;
}

/** A call without an answer is charged: the gateway cannot tell whether its tool ran (the answer may come on a resumed stream). */
const chargeOf = (ctx: MeterContext, call: PricedCall, answer: RpcMessage | undefined) => (answer === undefined ? call.priceMicros : callCharge(ctx.meter, call, answer));

/** A JSON answer (one message or a batch's array): settled by its answers, each tool result given its charge. */
async function chargedJson(
  ctx: MeterContext,
  calls: PricedCall[],
  origin: Response,
  settle: (units: number | null, reason: "completed" | "units_missing") => Promise<{ chargedMicros: number; balanceMicros: number }>,
  paymentMeta: Record<string, unknown>,
): Promise<Response> {
  const bytes = await readUpTo(kept(ctx, origin.body), JSON_UNITS_MAX_BYTES);
  const parsed = bytes === null ? undefined : jsonOf(new TextDecoder().decode(bytes));
  const messages = Array.isArray(parsed) ? parsed : parsed !== null && typeof parsed === "object" ? [parsed] : null;
  if (!origin.ok || messages === null || bytes === null) {
    // Not an answer the gateway can read: the calls are charged as held.
    return charged(new Response(bytes ?? null, origin), await settle(null, "units_missing"));
  }
  const answers = answersOf(messages as RpcMessage[]);
  const charges = new Map(calls.map((call) => [call.id, chargeOf(ctx, call, answers.get(call.id))]));
  const settled = await settle(
    [...charges.values()].reduce((a, b) => a + b, 0),
    "completed",
  );
  const meta = (m: RpcMessage) => {
    const micros = m.id === undefined || m.id === null ? undefined : charges.get(m.id);
    return micros === undefined || m.method !== undefined ? m : withCharge(m, { micros, balanceMicros: settled.balanceMicros, requestId: ctx.requestId }, paymentMeta);
  };
  const body = JSON.stringify(Array.isArray(parsed) ? (messages as RpcMessage[]).map(meta) : meta(messages[0] as RpcMessage));
  const response = charged(new Response(body, origin), settled);
  response.headers.delete("content-length");
  return response;
}

function jsonOf(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const encoder = new TextEncoder();

/**
 * An SSE answer: events pass as they arrive (progress, log and server requests included), except
 * the answers to tool calls, which wait until the last call is answered; then the hold settles and
 * each goes out with its charge and the balance. A stream that ends (or a client that hangs up)
 * with calls unanswered settles with those charged.
 */
function chargedEvents(ctx: MeterContext, calls: PricedCall[], body: ReadableStream<Uint8Array>, paymentMeta: Record<string, unknown>): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const splitter = new SseSplitter();
  const keep = holdKeeper(ctx);
  const finish = streamSettlement(ctx);
  const unanswered = new Map(calls.map((call) => [call.id, call]));
  const charges = new Map<RpcId, number>();
  const held: { event: string; message: RpcMessage }[] = [];
  const total = () => calls.reduce((sum, call) => sum + (charges.get(call.id) ?? call.priceMicros), 0);
  /** Settles and hands over the held answers with their charges. */
  const release = async (reason: "completed" | "client_gone" | "cut_off") => {
    const settled = await finish(total(), reason);
    let out = "";
    for (const { event, message } of held.splice(0)) {
      const micros = charges.get(message.id as RpcId) ?? 0;
      out += settled ? withEventData(event, JSON.stringify(withCharge(message, { micros, balanceMicros: settled.balanceMicros, requestId: ctx.requestId }, paymentMeta))) : event;
    }
    return out;
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) {
            const out = (unanswered.size > 0 || held.length > 0 ? await release("completed") : "") + splitter.rest();
            if (out) controller.enqueue(encoder.encode(out));
            controller.close();
            return;
          }
          if ((await keep()) === false) {
            // The alarm settled the hold (charged as held): the calls were paid, their answers go out as they are.
            controller.enqueue(
              encoder.encode(
                held
                  .splice(0)
                  .map((h) => h.event)
                  .join(""),
              ),
            );
            controller.close();
            await reader.cancel("hold expired").catch(() => undefined);
            return;
          }
          let passed = "";
          for (const event of splitter.push(value)) {
            const message = messageOf(event);
            const call = message && message.method === undefined && message.id !== undefined && message.id !== null ? unanswered.get(message.id) : undefined;
            if (!message || !call) {
              passed += event;
              continue;
            }
            unanswered.delete(call.id);
            charges.set(call.id, chargeOf(ctx, call, message));
            held.push({ event, message });
            if (unanswered.size === 0) passed += await release("completed");
          }
          if (passed) return controller.enqueue(encoder.encode(passed));
        }
      },
      async cancel(reason) {
        await reader.cancel(reason).catch(() => undefined);
        if (unanswered.size > 0 || held.length > 0) await release("client_gone");
      },
    },
    { highWaterMark: 0 },
  );
}

function messageOf(event: string): RpcMessage | null {
  const data = eventData(event);
  const value = data === null ? undefined : jsonOf(data);
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as RpcMessage) : null;
}

/**
 * A POST with `initialize`: the answer's negotiated protocolVersion is remembered for the session
 * when it has no batches, so a batch later sent without an MCP-Protocol-Version header is still
 * refused. The client gets the answer once it is remembered; the bytes pass as they came.
 */
async function observeInitialize(post: McpPost, origin: Response, requestSession: string | null, stub: Stub): Promise<Response> {
  const init = post.messages.find((m) => m.method === "initialize" && m.id !== undefined && m.id !== null);
  const sessionId = origin.headers.get("mcp-session-id") ?? requestSession;
  if (!init || !sessionId || !origin.ok || !origin.body) return new Response(origin.body, origin);
  const remember = async (message: RpcMessage | null) => {
    const version = (message?.result as { protocolVersion?: unknown } | undefined)?.protocolVersion;
    if (message?.id !== init.id || typeof version !== "string" || allowsBatches(version)) return;
    await stub.mcpSession({ sessionId, protocolVersion: version }).catch((error) => log.warn(`MCP session ${sessionId}: remembering its version failed`, error));
  };
  if (!isEventStream(origin)) {
    const bytes = await readUpTo(origin.body, JSON_UNITS_MAX_BYTES);
    const value = bytes === null ? null : jsonOf(new TextDecoder().decode(bytes));
    for (const m of Array.isArray(value) ? value : [value]) await remember(m !== null && typeof m === "object" ? (m as RpcMessage) : null);
    return new Response(bytes, origin);
  }
  const splitter = new SseSplitter();
  const passed = origin.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      async transform(chunk, controller) {
        for (const event of splitter.push(chunk)) await remember(messageOf(event));
        controller.enqueue(chunk);
      },
    }),
  );
  const response = new Response(passed, origin);
  response.headers.delete("content-length");
  return response;
}
