import { Hono } from "hono";
import type { AuthorizeResult } from "../../durable-objects/customer-account/contract";
import { type AppEnv, customerStub } from "../env";
import { directWithLease, leaseEligible, payFromLease, refundToLease } from "../leases/gateway";
import { MAX_HOLD_MULTIPLIER, resolveMeter } from "../lib/config";
import { ApiError } from "../lib/errors";
import { formatCents } from "../lib/money";
import { mcpExchange } from "../mcp/exchange";
import { holdUnitsFor, jsonObjectOf, withStreamUsage } from "../metering/units";
import { authenticateApiKey } from "../middleware/api-key";
import { jsonError } from "../on-error";
import { paidDecision, payableRefusal, withPaymentResponse } from "../payments/pay";
import { forward, refundable } from "../proxy/forward";
import { originHeaders } from "../proxy/headers";
import { type IdempotentOutcome, idempotencyKeyOf, keepForReplay, readBodyWithin, replayedResponse, requestFingerprint } from "../proxy/idempotency";
import { meterResponse } from "../proxy/metered";
import { normalizePath } from "../proxy/normalize";
import { once } from "../proxy/once";
import { addKeyCapFields } from "../proxy/ratelimit";
import { isMoneyRefusal, refusalResponse, refuse } from "../proxy/refusals";
import { isReserved } from "../proxy/reserved";
import { tokenHold } from "../tokens/prices";

type Stub = ReturnType<typeof customerStub>;
type AuthorizeInput = Parameters<Stub["authorize"]>[0];

export const proxy = new Hono<AppEnv>();

/** Everything that is not an admin, webhook or billing route is metered and forwarded to the origin. */
proxy.all("*", async (c) => {
  const config = c.var.config;
  const url = new URL(c.req.url);
  // One spelling of the path: the route is priced and checked, the same segments are forwarded.
  const { route, forwarded } = normalizePath(url.pathname, config.PRICING.path_parameters);
  if (isReserved(route)) throw new ApiError("not_found", `${c.req.method} ${route} is reserved by the gateway; nothing was forwarded or charged.`);
  const { customerId, keyHash } = await authenticateApiKey(c.req.raw.headers, config);
  // Concatenate strings rather than resolve a URL: the normalized path starts with exactly one
  // "/", so it stays a path on the origin, never another host.
  const target = new URL(config.origin.base + forwarded + url.search);
  if (target.origin !== config.origin.origin) throw new ApiError("invalid_request", "Invalid request path.");

  const method = c.req.method;
  const meter = resolveMeter(config, method, route);
  if (meter.units.kind === "mcp") return mcpExchange(c, { meter, target, customerId, keyHash });
  const billedFromResponse = meter.units.kind !== "request";
  const idempotencyKey = idempotencyKeyOf(c.req.raw.headers);
  // The body is read whole only for an Idempotency-Key's fingerprint, a hold taken from it (a
  // tokens meter's model and limits), or a streamed request whose usage chunk the gateway asks for.
  const body =
    idempotencyKey !== null || (billedFromResponse && (meter.units.kind === "tokens" || meter.holdFrom || meter.holdMultiplierFrom || meter.includeStreamUsage))
      ? await readBodyWithin(c.req.raw, config.IDEMPOTENCY.max_body_bytes)
      : undefined;
  const request = billedFromResponse ? jsonObjectOf(body ?? null) : null;
  // A tokens meter prices the request's model before anything is held: an unknown one is refused here.
  const tokens = meter.units.kind === "tokens" ? tokenHold(meter, meter.units.preset, request, body ?? null) : null;
  const streamUsage = meter.includeStreamUsage ? withStreamUsage(request) : null;
  const stub = customerStub(c.env, customerId);
  const requestId = c.var.requestId;
  // The only storage round trip on the request path: key check, rule, cap and debit (or hold) in one step.
  const input: AuthorizeInput = {
    keyHash,
    meter: meter.name,
    // A tokens meter holds its cost in micro-cents: units of one micro-cent each.
    priceMicros: tokens ? 1 : meter.priceMicros,
    requestId,
    ...(tokens
      ? { hold: { units: tokens.holdMicros, onMissing: meter.onMissingUnits, model: tokens.row.model } }
      : billedFromResponse
        ? { hold: { units: holdUnitsFor(request, meter, MAX_HOLD_MULTIPLIER), onMissing: meter.onMissingUnits } }
        : {}),
    ...(idempotencyKey !== null ? { idempotency: { key: idempotencyKey, fingerprint: await requestFingerprint(method, target.pathname + target.search, body ?? null) } } : {}),
  };
  // Only a retry can find its request id already charged: the first attempt skips the lookup.
  // A retry paying the 402 (x402 PAYMENT-SIGNATURE, or a Payment credential): the payment is credited and the request authorized from it, in one step.
  const payment = await paidDecision(c.req.raw.headers, { env: c.env, config, stub, customerId, input, requestId });
  if (payment instanceof Response) return payment;
  const paid = payment;
  // Otherwise a credit lease in this isolate pays with no round trip when it can (src/leases/), or the object decides.
  const leasable = !paid && leaseEligible(config, meter, idempotencyKey);
  const decision: AuthorizeResult =
    paid?.decision ??
    (leasable ? payFromLease(config, { customerId, keyHash, meter, stub, waitUntil: (p) => c.executionCtx.waitUntil(p) }) : null) ??
    (await once(async (retry) =>
      leasable
        ? await directWithLease(config, { customerId, keyHash, stub, direct: { meter: meter.name, priceMicros: meter.priceMicros, requestId }, retry })
        : await stub.authorize(retry ? { ...input, retry } : input),
    ));
  if (decision.outcome === "replay") {
    return withPaymentResponse(replayedResponse(decision.response), paid);
  }
  if (decision.outcome === "insufficient_credit") return payableRefusal(config, decision, c.req.url, requestId, paid);
  if (isMoneyRefusal(decision)) return refusalResponse(config, requestId, decision);
  refuse(decision);

  const headers = await originHeaders(
    c.req.raw.headers,
    { customerId: decision.customerId, requestId, clientIp: c.req.header("cf-connecting-ip") ?? null },
    { secret: config.ORIGIN_SIGNING_SECRET, method, pathAndQuery: target.pathname + target.search },
  );
  if (streamUsage) headers.delete("content-length");
  const requestBody = streamUsage ? streamUsage.body : body !== undefined ? body : method === "GET" || method === "HEAD" ? null : c.req.raw.body;
  const waitUntil = (promise: Promise<unknown>) => c.executionCtx.waitUntil(promise);
  const finishIdempotent = (outcome: IdempotentOutcome) => {
    if (idempotencyKey !== null) waitUntil(stub.finishIdempotent({ key: idempotencyKey, keyHash, requestId, outcome }));
  };

  // Forwarding and settling a failure run under waitUntil: a client that hangs up cannot skip the refund.
  const settled = (async () => {
    const result = await forward(config, target, method, headers, requestBody);
    if (billedFromResponse) {
      // A failure the meter would refund releases the whole hold; any other response is read for its units.
      if ("failure" in result || refundable(config, result)) {
        const release = await once(async () => await stub.settleHold({ requestId, units: null, reason: refundable(config, result) ? "origin_failed" : "units_missing" }));
        const givenBack = release.chargedMicros === 0;
        if (givenBack) finishIdempotent("forget");
        return { result, charged: release.chargedMicros, balance: release.balanceMicros, settled: true, givenBack };
      }
      return { result, charged: 0, balance: 0, settled: false, givenBack: false };
    }
    let charged = decision.chargedMicros;
    let balance = decision.balanceMicros;
    let givenBack = false;
    if (charged > 0 && refundable(config, result)) {
      const refund = refundToLease(decision) ?? (await once(async () => await stub.refund({ requestId })));
      if (refund.refunded) [charged, givenBack] = [0, true];
      balance = refund.balanceMicros;
    }
    // Under an Idempotency-Key a retry is a new request only when this one's charge was given back:
    // a charged failure is kept and replayed like any other response, never charged again.
    if (givenBack) finishIdempotent("forget");
    return { result, charged, balance, settled: true, givenBack };
  })();
  waitUntil(settled);
  const { result, charged, balance, settled: done, givenBack } = await settled;

  if ("failure" in result) {
    const timedOut = result.failure === "timeout";
    const failure = new ApiError(
      timedOut ? "origin_timeout" : "origin_unavailable",
      timedOut ? "The origin did not answer in time." : "The origin could not be reached.",
      {
        charged_cents: formatCents(charged),
      },
      paid?.headers,
    );
    if (idempotencyKey === null || givenBack) throw failure;
    return keepForReplay(await jsonError(failure, c), false, config.IDEMPOTENCY.max_body_bytes, finishIdempotent, waitUntil);
  }
  let response: Response;
  let streamed = false;
  if (done) {
    response = new Response(result.response.body, result.response);
    response.headers.set("x-payg-charge-cents", formatCents(charged));
    response.headers.set("x-payg-balance-cents", formatCents(balance));
  } else {
    ({ response, streamed } = await meterResponse(
      {
        config,
        meter,
        stub,
        requestId,
        heldUnits: decision.heldUnits ?? 0,
        waitUntil,
        stripUsageChunk: streamUsage !== null && !streamUsage.clientAsked,
        ...(tokens ? { tokens: { preset: tokens.preset, row: tokens.row } } : {}),
      },
      result.response,
    ));
  }
  if (decision.grantId && (charged > 0 || !done)) response.headers.set("x-payg-grant", decision.grantId);
  response.headers.set("x-request-id", requestId);
  addKeyCapFields(response.headers, decision.keyCap);
  withPaymentResponse(response, paid);
  if (idempotencyKey !== null && !givenBack) return keepForReplay(response, streamed, config.IDEMPOTENCY.max_body_bytes, finishIdempotent, waitUntil);
  return response;
});
