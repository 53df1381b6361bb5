import { Hono } from "hono";
import { resolveMeter } from "../config";
import { customerStub, type AppEnv } from "../env";
import { ApiError } from "../errors";
import { authenticateApiKey, UNKNOWN_KEY } from "../key-auth";
import { mergeValues } from "../merge";
import { formatCents } from "../money";
import { originHeaders } from "../proxy/headers";
import { normalizePath } from "../proxy/normalize";
import { isReserved } from "../proxy/reserved";
import { renderJson } from "../template";

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
  // The only storage round trip on the request path: key check, rule and debit in one step.
  const decision = await stub.authorize({ keyHash, meter: meter.name, priceMicros: meter.priceMicros });

  switch (decision.outcome) {
    case "invalid_key":
      throw new ApiError("invalid_api_key", UNKNOWN_KEY);
    case "customer_deleted":
      throw new ApiError("customer_deleted", "This customer account has been deleted.");
    case "payment_overdue":
      throw new ApiError("payment_overdue", "An invoice is unpaid; access resumes once it is paid.", { customer_id: decision.customer.id });
    case "insufficient_credit": {
      const body = renderJson(config.GOVERNANCE.blocked_body, mergeValues(config, decision.customer, decision));
      return c.json(body as Record<string, unknown>, 402, { "x-request-id": c.var.requestId });
    }
  }

  const refund = async () => {
    if (!config.GOVERNANCE.refund_on_origin_error || decision.chargedMicros === 0) return false;
    const pending = stub.refund({ meter: meter.name, priceMicros: decision.chargedMicros, bucket: decision.bucket });
    c.executionCtx.waitUntil(pending);
    await pending;
    return true;
  };

  const headers = await originHeaders(
    c.req.raw.headers,
    { customerId: decision.customerId, requestId: c.var.requestId, clientIp: c.req.header("cf-connecting-ip") ?? null },
    { secret: config.ORIGIN_SIGNING_SECRET, method: c.req.method, pathAndQuery: target.pathname + target.search },
  );

  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error("origin timeout")), config.GOVERNANCE.origin_timeout_ms);
  let response: Response;
  try {
    response = await fetch(target, {
      method: c.req.method,
      headers,
      body: c.req.method === "GET" || c.req.method === "HEAD" ? null : c.req.raw.body,
      redirect: "manual",
      signal: controller.signal,
    });
  } catch (error) {
    const timedOut = controller.signal.aborted;
    await refund();
    throw new ApiError(
      timedOut ? "origin_timeout" : "origin_unavailable",
      timedOut ? "The origin did not answer in time." : "The origin could not be reached.",
      { charged_cents: config.GOVERNANCE.refund_on_origin_error ? "0" : formatCents(decision.chargedMicros) },
    );
  } finally {
    clearTimeout(timer);
  }

  let charged = decision.chargedMicros;
  let balance = decision.balanceMicros;
  if (response.status >= 500 && (await refund())) {
    charged = 0;
    balance += decision.chargedMicros;
  }
  const out = new Response(response.body, response);
  out.headers.set("x-payg-charge-cents", formatCents(charged));
  out.headers.set("x-payg-balance-cents", formatCents(balance));
  out.headers.set("x-request-id", c.var.requestId);
  return out;
});
