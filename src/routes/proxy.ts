import { Hono } from "hono";
import { resolveMeter } from "../config";
import { customerStub, type AppEnv } from "../env";
import { ApiError } from "../errors";
import { authenticateApiKey, UNKNOWN_KEY } from "../key-auth";
import { mergeValues } from "../merge";
import { formatCents } from "../money";
import { renderJson } from "../template";

const STRIPPED_HEADERS = ["authorization", "x-api-key", "host", "connection", "keep-alive", "transfer-encoding", "upgrade", "cf-connecting-ip"];

export const proxy = new Hono<AppEnv>();

/** Everything that is not an admin, webhook or billing route is metered and forwarded to the origin. */
proxy.all("*", async (c) => {
  const config = c.var.config;
  const { customerId, keyHash } = await authenticateApiKey(c.req.raw.headers, config);

  const url = new URL(c.req.url);
  const meter = resolveMeter(config, c.req.method, url.pathname);
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

  const origin = new URL(config.ORIGIN_URL);
  // Concatenate strings rather than resolve a URL: a path like "//evil.example/x" must stay a
  // path on the origin, never become another host.
  const target = new URL(origin.origin + origin.pathname.replace(/\/$/, "") + url.pathname + url.search);
  if (target.origin !== origin.origin) throw new ApiError("invalid_request", "Invalid request path.");
  const headers = new Headers(c.req.raw.headers);
  for (const name of STRIPPED_HEADERS) headers.delete(name);
  headers.set("x-payg-customer-id", decision.customerId);
  headers.set("x-request-id", c.var.requestId);

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
