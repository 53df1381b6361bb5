import { Hono } from "hono";
import { resolveMeter, type Config } from "../config";
import { customerStub, type AppEnv } from "../env";
import { ApiError } from "../errors";
import { authenticateApiKey, UNKNOWN_KEY } from "../key-auth";
import { mergeValues } from "../merge";
import { formatCents, formatMoney } from "../money";
import { originHeaders } from "../proxy/headers";
import { normalizePath } from "../proxy/normalize";
import { isReserved } from "../proxy/reserved";
import { renderJson } from "../template";
import type { AuthorizeResult } from "../types";

type Stub = ReturnType<typeof customerStub>;
type AuthorizeInput = Parameters<Stub["authorize"]>[0];

/**
 * One retry of an RPC whose reply may have been lost: the object keys the charge by the
 * gateway's request id, so a retry replays the first result instead of charging twice.
 */
async function once<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if ((error as { retryable?: boolean }).retryable) return call();
    throw error;
  }
}

type OriginResult = { response: Response } | { failure: "connection_error" | "timeout" };

/** Whether a failed origin call gives the charge back (GOVERNANCE.refund_on). */
function refundable(config: Config, result: OriginResult): boolean {
  if (!config.GOVERNANCE.refund_on_origin_error) return false;
  const on = config.GOVERNANCE.refund_on as (string | number)[];
  return "failure" in result ? on.includes(result.failure) : on.includes(result.response.status);
}

export const proxy = new Hono<AppEnv>();

/** Everything that is not an admin, webhook or billing route is metered and forwarded to the origin. */
proxy.all("*", async (c) => {
  const config = c.var.config;
  const url = new URL(c.req.url);
  // One spelling of the path, both priced and forwarded.
  const path = normalizePath(url.pathname);
  if (isReserved(path)) throw new ApiError("not_found", `${c.req.method} ${path} is reserved by the gateway; nothing was forwarded or charged.`);
  const { customerId, keyHash } = await authenticateApiKey(c.req.raw.headers, config);
  const origin = new URL(config.ORIGIN_URL);
  // Concatenate strings rather than resolve a URL: the normalized path starts with exactly one
  // "/", so it stays a path on the origin, never another host.
  const target = new URL(origin.origin + origin.pathname.replace(/\/$/, "") + path + url.search);
  if (target.origin !== origin.origin) throw new ApiError("invalid_request", "Invalid request path.");

  const meter = resolveMeter(config, c.req.method, path);
  const stub = customerStub(c.env, customerId);
  const requestId = c.var.requestId;
  // The only storage round trip on the request path: key check, rule, cap and debit in one step.
  const input: AuthorizeInput = { keyHash, meter: meter.name, priceMicros: meter.priceMicros, requestId };
  const decision: AuthorizeResult = await once(async () => await stub.authorize(input));
  if (decision.outcome === "insufficient_credit") {
    const body = renderJson(config.GOVERNANCE.blocked_body, mergeValues(config, decision.customer, decision));
    return c.json(body as Record<string, unknown>, 402, { "x-request-id": requestId });
  }
  refuse(config, decision);

  const headers = await originHeaders(
    c.req.raw.headers,
    { customerId: decision.customerId, requestId, clientIp: c.req.header("cf-connecting-ip") ?? null },
    { secret: config.ORIGIN_SIGNING_SECRET, method: c.req.method, pathAndQuery: target.pathname + target.search },
  );

  // Forwarding and settling run under waitUntil: a client that hangs up cannot skip the refund.
  const settled = (async () => {
    const result = await forward(config, target, c.req.raw, headers);
    let charged = decision.chargedMicros;
    let balance = decision.balanceMicros;
    if (charged > 0 && refundable(config, result)) {
      const refund = await once(async () => await stub.refund({ requestId }));
      if (refund.refunded) charged = 0;
      balance = refund.balanceMicros;
    }
    return { result, charged, balance };
  })();
  c.executionCtx.waitUntil(settled);
  const { result, charged, balance } = await settled;

  if ("failure" in result) {
    const timedOut = result.failure === "timeout";
    throw new ApiError(
      timedOut ? "origin_timeout" : "origin_unavailable",
      timedOut ? "The origin did not answer in time." : "The origin could not be reached.",
      { charged_cents: formatCents(charged) },
    );
  }
  const out = new Response(result.response.body, result.response);
  out.headers.set("x-payg-charge-cents", formatCents(charged));
  out.headers.set("x-payg-balance-cents", formatCents(balance));
  if (decision.grantId && charged > 0) out.headers.set("x-payg-grant", decision.grantId);
  out.headers.set("x-request-id", requestId);
  return out;
});

/** Throws the refusal's JSON error unless the request may pass (the templated 402 is answered before). */
function refuse(
  config: Config,
  decision: Exclude<AuthorizeResult, { outcome: "insufficient_credit" }>,
): asserts decision is Extract<AuthorizeResult, { outcome: "ok" }> {
  switch (decision.outcome) {
    case "ok":
      return;
    case "invalid_key":
      throw new ApiError("invalid_api_key", UNKNOWN_KEY);
    case "customer_deleted":
      throw new ApiError("customer_deleted", "This customer account has been deleted.");
    case "payment_overdue":
      throw new ApiError("payment_overdue", "An invoice is unpaid; access resumes once it is paid.", { customer_id: decision.customer.id });
    case "currency_mismatch":
      throw new ApiError(
        "currency_mismatch",
        `This account's Stripe balance is in ${decision.stripeCurrency.toUpperCase()}, not ${decision.currency.toUpperCase()}: it cannot pay for these requests.`,
        { customer_id: decision.customer.id },
      );
    case "key_cap_reached":
      throw new ApiError(
        "key_cap_reached",
        `This API key has reached its spend cap of ${formatMoney(decision.capCents * 1_000_000, config.PRICING.currency)} per ${decision.period}; other keys of the account keep working.`,
        { customer_id: decision.customer.id, key_id: decision.keyId, cap_cents: decision.capCents, period: decision.period, resets_at: decision.resetsAt },
      );
  }
}

async function forward(config: Config, target: URL, request: Request, headers: Headers): Promise<OriginResult> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error("origin timeout")), config.GOVERNANCE.origin_timeout_ms);
  try {
    const response = await fetch(target, {
      method: request.method,
      headers,
      body: request.method === "GET" || request.method === "HEAD" ? null : request.body,
      redirect: "manual",
      signal: controller.signal,
    });
    return { response };
  } catch {
    return { failure: controller.signal.aborted ? "timeout" : "connection_error" };
  } finally {
    clearTimeout(timer);
  }
}
