/**
 * In-memory Stripe API test double, at the HTTP boundary.
 *
 * Framework-agnostic: `handle(request)` takes a web-standard `Request` and returns a `Response`
 * (only Request/Response/URL/URLSearchParams/crypto are used), so the same object serves
 *   (a) workerd tests through MSW:  http.all("https://stripe.test/*", ({ request }) => double.handle(request))
 *   (b) end-to-end tests behind a small Node http server.
 * Resource families live in ./stripe/ (customers, checkout, payments, billing); this file is the
 * HTTP boundary (auth, faults, idempotency, routing) and the API tests use.
 *
 * Shapes follow Stripe's OpenAPI specification (https://github.com/stripe/openapi: openapi/spec3.json,
 * and a real example of every object in openapi/fixtures3.json) and the API reference
 * (https://docs.stripe.com/api), and are typed with the `stripe` package's own types (v23) so that
 * they stay honest. Allowed parameters are the SDK's *Params types.
 *
 * Behaviour modelled on Stripe's API reference (https://docs.stripe.com/api) and the pages cited below:
 * - Auth: `Authorization: Bearer sk_…` or a restricted key `rk_…`, else 401 with Stripe's error JSON.
 * - Bodies are `application/x-www-form-urlencoded` with bracket notation, as the SDK sends them
 *   (`metadata[k]=v`, `line_items[0][price_data][unit_amount]=500`); /v2 is JSON. Unknown
 *   top-level parameters are refused with 400 `parameter_unknown`, like Stripe does;
 *   known-but-unmodelled ones are accepted and ignored. `expand[]` is checked per endpoint.
 * - Clock: `now` (default Date.now) plus whatever `advance(ms)` added. Everything time-based in
 *   the double uses it: `created`, meter-event timestamp windows, idempotency-key and
 *   meter-identifier expiry. (Webhook signatures default to the real time: the receiver checks
 *   them against its own clock.)
 * - Idempotency (POST only; keys on GET/DELETE are ignored, like Stripe): the first result of a
 *   request that began executing (2xx, a card decline 402, a saved 500) is stored under the key
 *   and replayed byte-for-byte, with `Idempotent-Replayed: true`, for a repeat with the same
 *   method, path and parameters; the same key with other parameters/endpoint gives 400
 *   `idempotency_error`. Validation errors (4xx) and 429s are not saved ("rate limiters run before
 *   the API's idempotency layer", docs.stripe.com/error-handling). Keys expire 24 hours after
 *   first use by the double's clock; after that the same key executes again as new.
 *
 * Faults (`inject`) are matched on method and path (string or RegExp, so every endpoint, v2
 * included), after authentication, in order of injection; each fires `times` times (default 1).
 * `Stripe-Should-Retry` (SOURCE: stripe-node 23 RequestSender._shouldRetry, node_modules/stripe/
 * cjs/RequestSender.js, and its comments; Stripe introduced the header in stripe-node PR #692,
 * mirrored by stripe-go #954 / stripe-ruby #853 "sent by the API when it explicitly would like us
 * to either retry or not retry"): the SDK obeys `false` / `true` first; without the header it
 * retries 409 and >= 500 only, so a 429 without the header reaches the caller at once. The SDK's
 * comment: "we expect the stripe-should-retry header to be false in most cases when a 500 is
 * returned, since our idempotency framework would typically replay it anyway", and "advise us
 * to retry (e.g., in cases of lock timeouts)". Hence:
 * - `500`: 500 `api_error`, nothing executed. On a POST it carries `Stripe-Should-Retry: false`
 *   and is saved under the Idempotency-Key (a retry under that key replays the 500): the SDK
 *   does not retry it, the gateway sees it. On GET/DELETE (no idempotency layer) no header: the
 *   SDK retries it itself.
 * - `500_retryable`: 500 without the header and not saved: the SDK retries it (up to
 *   maxNetworkRetries), as this double's `500` did before.
 * - `500_after_commit`: the operation executes and commits, then a 500 (should-retry false) is
 *   saved under the key and replayed for it.
 * - `429`: rate limit (`rate_limit`), no Stripe-Should-Retry: the SDK does not retry it; not saved.
 * - `429_lock_timeout`: 429 `lock_timeout` with `Stripe-Should-Retry: true`: the SDK retries it.
 * - `timeout`: a promise that only settles when `request.signal` aborts (the SDK retries timeouts).
 * - `drop_after_commit`: executes, commits, then `Response.error()` (MSW turns it into a rejected
 *   fetch; a Node wrapper should destroy the socket when `response.type === "error"`).
 * `FaultSpec.shouldRetry` overrides the header of a 500/429 (true, false, or null for none).
 *
 * Rate limits (`rateLimit`), as Stripe's rate-limit page describes them (docs.stripe.com/rate-limits):
 * a limit on all requests a second (100 live, 25 in a sandbox) and one per endpoint (25 a second
 * by default; an endpoint is the method and the path with object ids left out, so every
 * customer's `POST /v1/customers/{id}/balance_transactions` is one), with meter events counted
 * apart under their own limit. A request past a limit gets 429 `rate_limit` with no
 * Stripe-Should-Retry (the SDK does not retry it) and is not executed or saved; it does not count
 * toward the window. Windows slide over the last 1,000 ms of real time (not the double's clock).
 */
import Stripe from "stripe";
import {
  apiCreateMeterEvent,
  apiRetrieveMeter,
  apiRetrieveV2Event,
  buildInvoice,
  createMeter as createMeterIn,
  type InvoiceEventOptions,
  type InvoiceEventType,
  takeThinEvents as takeThinEventsIn,
} from "./stripe/billing";
import { apiRetrieveCharge } from "./stripe/charges";
import {
  apiCreateSession,
  apiRetrieveSession,
  type CompleteCheckoutOptions,
  completeCheckout as completeCheckoutIn,
  expireCheckout as expireCheckoutIn,
  failAsyncPayment as failAsyncPaymentIn,
  succeedAsyncPayment as succeedAsyncPaymentIn,
} from "./stripe/checkout";
import { ApiError, canonical, clone, decodeId, invalid, newId, type Params, parseStripeForm, type StripeErrorBody } from "./stripe/common";
import { type RequestContext, StripeState, type ThinEventPayload, type V2Event } from "./stripe/core";
import { apiCreateCryptoPaymentIntent, isCryptoVerification } from "./stripe/crypto-payment";
import {
  adjustBalance as adjustCustomerBalance,
  apiCreateBalanceTransaction,
  apiCreateCustomer,
  apiDeleteCustomer,
  apiListBalanceTransactions,
  apiRetrieveBalanceTransaction,
  apiRetrieveCustomer,
  apiUpdateCustomer,
  type CreateCustomerInput,
  createCustomer as createCustomerIn,
} from "./stripe/customers";
import {
  apiCreatePaymentIntent,
  apiListCustomerPaymentMethods,
  apiListPaymentIntents,
  apiRetrievePaymentIntent,
  apiRetrievePaymentMethod,
  paymentMethodsOf,
  settleCheckoutPayment,
} from "./stripe/payments";
import {
  apiListRefunds,
  apiRetrieveDispute,
  apiRetrieveRefund,
  closeDispute as closeDisputeIn,
  createDispute as createDisputeIn,
  failRefund as failRefundIn,
  moveDispute as moveDisputeIn,
  refundCharge as refundChargeIn,
} from "./stripe/refunds";
import { apiGrantToken, apiRetrieveToken, apiRevokeToken, type GrantedToken, grantToken as grantTokenIn } from "./stripe/shared-payment";

export type { InvoiceEventOptions, InvoiceEventType } from "./stripe/billing";
export type { CompleteCheckoutOptions } from "./stripe/checkout";
export { parseStripeForm } from "./stripe/common";
export type { ThinEventPayload, ThinEventType, V2Event } from "./stripe/core";
export type { CreateCustomerInput } from "./stripe/customers";
export { TEST_PAYMENT_METHODS } from "./stripe/payments";

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

export type FaultKind = "500" | "500_retryable" | "500_after_commit" | "429" | "429_lock_timeout" | "timeout" | "drop_after_commit";

export interface FaultSpec {
  match: { method?: string; path: RegExp | string };
  kind: FaultKind;
  /** How many matching requests this fault fires for. Default 1. */
  times?: number;
  /** Override the `Stripe-Should-Retry` header of a 500/429 fault: true, false, or null (no header). */
  shouldRetry?: boolean | null;
}

export interface RequestLogEntry {
  method: string;
  path: string;
  idempotencyKey: string | null;
  params: Record<string, unknown>;
  replayed: boolean;
  fault?: string;
}

export interface StripeDoubleOptions {
  /** Webhook signing secret used by `sign()`. Default "whsec_test_secret". */
  webhookSecret?: string;
  /** Signing secret of the event destination that receives thin events (`signThin`). Default: webhookSecret. */
  thinEventSecret?: string;
  /** `api_version` written on events. Default: the SDK's pinned version (Stripe.API_VERSION). */
  apiVersion?: string;
  /** Base clock in milliseconds; `advance(ms)` moves the double's clock past it. Default Date.now. */
  now?: () => number;
  /** Currency used when a balance is set without one (customer create with `balance`). Default "usd". */
  defaultCurrency?: string;
  /** The meters that exist from the start, by event_name. Default ["api_requests", "search_requests"]. */
  meters?: string[];
}

export const DEFAULT_METERS = ["api_requests", "search_requests"];

export interface RateLimitSpec {
  /** All requests but meter events, a second. Stripe: 100 live, 25 in a sandbox. */
  perSecond: number;
  /** Each endpoint, a second. Stripe: 25 by default. */
  perEndpointPerSecond?: number;
  /** Meter events (their own limit; 1,000 a second live). */
  meterEventsPerSecond?: number;
}

interface Result {
  status: number;
  body: unknown;
  /** True when the operation began executing and its outcome is stored under an idempotency key. */
  committed: boolean;
}

interface StoredIdempotentResult {
  method: string;
  path: string;
  fingerprint: string;
  status: number;
  body: string;
  requestId: string;
  shouldRetry: string | null;
  firstUsedMs: number;
}

interface ActiveFault {
  method: string | undefined;
  path: RegExp | string;
  kind: FaultKind;
  remaining: number;
  shouldRetry: boolean | null | undefined;
}

const API_ERROR: StripeErrorBody = { type: "api_error", message: "Something went wrong on Stripe's end." };
const RATE_LIMIT: StripeErrorBody = {
  type: "invalid_request_error",
  code: "rate_limit",
  doc_url: "https://stripe.com/docs/error-codes/rate-limit",
  message: "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
};
const LOCK_TIMEOUT: StripeErrorBody = {
  type: "invalid_request_error",
  code: "lock_timeout",
  doc_url: "https://stripe.com/docs/error-codes/lock-timeout",
  message:
    "This object cannot be accessed right now because another API request or Stripe process is currently accessing it. " +
    "If you see this error intermittently, retry the request. If you see this error frequently and are making multiple " +
    "concurrent requests to a single object, make your requests serially or at a lower rate.",
};

// ---------------------------------------------------------------------------------------------
// The double
// ---------------------------------------------------------------------------------------------

export class StripeDouble {
  readonly webhookSecret: string;
  readonly thinEventSecret: string;
  readonly apiVersion: string;
  readonly defaultCurrency: string;

  /** Every call to `handle`, in arrival order (for counting API calls). */
  readonly requests: RequestLogEntry[] = [];

  private readonly state: StripeState;
  private readonly defaultMeters: string[];
  private readonly idempotency = new Map<string, StoredIdempotentResult>();
  private faults: ActiveFault[] = [];
  private limits: Required<RateLimitSpec> | null = null;
  /** Arrival times (ms) of the requests let through in the last second, per window name. */
  private readonly windows = new Map<string, number[]>();
  /** Requests answered 429 by the rate limits (not by injected faults). */
  rateLimitedCount = 0;

  constructor(options: StripeDoubleOptions = {}) {
    this.webhookSecret = options.webhookSecret ?? "whsec_test_secret";
    this.thinEventSecret = options.thinEventSecret ?? this.webhookSecret;
    this.apiVersion = options.apiVersion ?? Stripe.API_VERSION;
    this.defaultCurrency = options.defaultCurrency ?? "usd";
    this.state = new StripeState({
      now: options.now ?? (() => Date.now()),
      apiVersion: this.apiVersion,
      defaultCurrency: this.defaultCurrency,
    });
    this.defaultMeters = [...(options.meters ?? DEFAULT_METERS)];
    for (const name of this.defaultMeters) createMeterIn(this.state, name);
  }

  /** Every webhook event Stripe would send, in creation order. */
  get events(): Stripe.Event[] {
    return this.state.events;
  }

  /** Accepted (deduplicated) meter events that count towards a meter, in arrival order. */
  get meterEvents(): Stripe.Billing.MeterEvent[] {
    return this.state.meterEvents;
  }

  /** Meter events answered 200 but not counted (no meter for the event_name, unknown customer). */
  get rejectedMeterEvents(): Stripe.Billing.MeterEvent[] {
    return this.state.rejectedMeterEvents;
  }

  /** Checkout sessions by id. */
  get sessions(): Map<string, Stripe.Checkout.Session> {
    return this.state.sessions;
  }

  // ----------------------------------------------------------------------------- clock

  /** The double's clock, in milliseconds. */
  now(): number {
    return this.state.nowMs();
  }

  /** Moves the double's clock forward by `ms` (idempotency keys, meter identifiers, `created`). */
  advance(ms: number): void {
    this.state.advance(ms);
  }

  // ----------------------------------------------------------------------------- HTTP boundary

  async handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const method = request.method.toUpperCase();
    const path = url.pathname.replace(/\/+$/, "") || "/";
    const idempotencyKey = request.headers.get("Idempotency-Key");
    const isV2 = path.startsWith("/v2/");

    let params: Params;
    let bodyError: ApiError | undefined;
    if (method === "GET" || method === "DELETE" || method === "HEAD") {
      params = parseStripeForm(url.search.slice(1));
    } else {
      // Decoded by hand: workerd warns when a form body is read with .text().
      const text = new TextDecoder().decode(await request.arrayBuffer());
      const contentType = request.headers.get("Content-Type") ?? "";
      if ((isV2 || contentType.includes("application/json")) && text.trim() !== "") {
        try {
          const parsed: unknown = JSON.parse(text);
          params = typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? (parsed as Params) : {};
        } catch {
          params = {};
          bodyError = invalid("Invalid request body: could not parse JSON");
        }
      } else {
        params = parseStripeForm(text);
      }
      // Stripe also reads query parameters on POST; body wins.
      if (url.search.length > 1) params = { ...parseStripeForm(url.search.slice(1)), ...params };
    }

    const entry: RequestLogEntry = { method, path, idempotencyKey, params, replayed: false };
    this.requests.push(entry);
    const requestId = newId("req_", 14);
    const headers = this.baseHeaders(request, requestId, method === "POST" ? idempotencyKey : null);

    // Authentication: secret keys and restricted keys.
    const auth = request.headers.get("Authorization");
    const bearer = auth && /^Bearer\s+(\S+)$/i.exec(auth.trim());
    if (!auth) {
      return this.errorResponse(
        401,
        {
          type: "invalid_request_error",
          message:
            "You did not provide an API key. You need to provide your API key in the Authorization header, " + "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        },
        headers,
      );
    }
    const key = bearer?.[1];
    if (!key || !/^(sk|rk)_/.test(key)) {
      const shown = key ? `${key.slice(0, 8)}${"*".repeat(Math.max(0, key.length - 12))}${key.slice(-4)}` : auth;
      return this.errorResponse(401, { type: "invalid_request_error", message: `Invalid API Key provided: ${shown}` }, headers);
    }

    // Rate limits run before the API's idempotency layer (docs.stripe.com/error-handling).
    if (this.overLimit(method, path)) {
      entry.fault = "rate_limit";
      this.rateLimitedCount++;
      return this.errorResponse(429, RATE_LIMIT, headers, null);
    }

    // Faults that act before the idempotency layer.
    const fault = this.takeFault(method, path);
    if (fault) entry.fault = fault.kind;
    const useIdempotency = method === "POST" && idempotencyKey !== null;
    const shouldRetryOf = (fallback: string | null): string | null => (fault?.shouldRetry === undefined ? fallback : fault.shouldRetry === null ? null : String(fault.shouldRetry));
    if (fault?.kind === "500_retryable") return this.errorResponse(500, API_ERROR, headers, shouldRetryOf(null));
    if (fault?.kind === "429") return this.errorResponse(429, RATE_LIMIT, headers, shouldRetryOf(null));
    if (fault?.kind === "429_lock_timeout") return this.errorResponse(429, LOCK_TIMEOUT, headers, shouldRetryOf("true"));
    if (fault?.kind === "timeout") return this.hang(request);

    if (bodyError) return this.errorResponse(bodyError.status, bodyError.error, headers);

    // Idempotency (POST only); a key is kept 24 hours from its first use.
    let stored: StoredIdempotentResult | undefined;
    if (useIdempotency) {
      if (idempotencyKey.length > 255) {
        return this.errorResponse(400, { type: "invalid_request_error", message: "Idempotency-Key must be at most 255 characters long." }, headers);
      }
      stored = this.idempotency.get(idempotencyKey);
      if (stored && this.state.expired24h(stored.firstUsedMs)) {
        this.idempotency.delete(idempotencyKey);
        stored = undefined;
      }
      if (stored) {
        if (stored.method !== method || stored.path !== path) {
          return this.errorResponse(
            400,
            {
              type: "idempotency_error",
              message:
                `Keys for idempotent requests can only be used for the same endpoint they were first used for ` +
                `('${stored.method} ${stored.path}' vs '${method} ${path}'). Try using a key other than ` +
                `'${idempotencyKey}' if you meant to execute a different request.`,
            },
            headers,
          );
        }
        if (stored.fingerprint !== canonical(params)) {
          return this.errorResponse(
            400,
            {
              type: "idempotency_error",
              message:
                `Keys for idempotent requests can only be used with the same parameters they were first used with. ` +
                `Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`,
            },
            headers,
          );
        }
      }
    }

    if (stored) {
      entry.replayed = true;
      headers.set("Idempotent-Replayed", "true");
      headers.set("Original-Request", stored.requestId);
      if (fault?.kind === "drop_after_commit") return Response.error();
      if (fault?.kind === "500" || fault?.kind === "500_after_commit") {
        return this.errorResponse(500, API_ERROR, headers, shouldRetryOf("false"));
      }
      if (stored.shouldRetry !== null) headers.set("Stripe-Should-Retry", stored.shouldRetry);
      return new Response(stored.body, { status: stored.status, headers });
    }

    let result: Result;
    let shouldRetry: string | null = null;
    if (fault?.kind === "500") {
      // Nothing executed. On a POST the idempotency layer saves the 500 and says not to retry.
      shouldRetry = shouldRetryOf(method === "POST" ? "false" : null);
      result = { status: 500, body: { error: API_ERROR }, committed: method === "POST" };
    } else {
      result = this.route(method, path, params, { requestId, idempotencyKey: useIdempotency ? idempotencyKey : null });
      if (result.committed && fault?.kind === "500_after_commit") {
        shouldRetry = shouldRetryOf("false");
        result = { status: 500, body: { error: API_ERROR }, committed: true };
      }
    }
    const body = JSON.stringify(result.body, null, 2);
    if (useIdempotency && result.committed) {
      this.idempotency.set(idempotencyKey, {
        method,
        path,
        fingerprint: canonical(params),
        status: result.status,
        body,
        requestId,
        shouldRetry,
        firstUsedMs: this.state.nowMs(),
      });
    }
    if (result.committed && fault?.kind === "drop_after_commit") return Response.error();
    if (shouldRetry !== null) headers.set("Stripe-Should-Retry", shouldRetry);
    return new Response(body, { status: result.status, headers });
  }

  // ----------------------------------------------------------------------------- faults

  inject(spec: FaultSpec): void {
    const times = spec.times ?? 1;
    if (!Number.isInteger(times) || times < 1) throw new Error(`inject: times must be a positive integer, got ${times}`);
    this.faults.push({
      method: spec.match.method?.toUpperCase(),
      path: spec.match.path,
      kind: spec.kind,
      remaining: times,
      shouldRetry: spec.shouldRetry,
    });
  }

  /** Enforce Stripe's rate limits from now on (null: none, the default). */
  rateLimit(spec: RateLimitSpec | null): void {
    this.limits = spec && { perEndpointPerSecond: 25, meterEventsPerSecond: 1000, ...spec };
    this.windows.clear();
  }

  private overLimit(method: string, path: string): boolean {
    if (!this.limits) return false;
    const now = Date.now();
    const endpoint = `${method} ${path.replace(/\/[a-z]{2,8}_[A-Za-z0-9_]+/g, "/:id")}`;
    const names =
      path === "/v1/billing/meter_events"
        ? [["meter", this.limits.meterEventsPerSecond] as const]
        : [["all", this.limits.perSecond] as const, [endpoint, this.limits.perEndpointPerSecond] as const];
    const recent = names.map(([name, limit]) => {
      const times = (this.windows.get(name) ?? []).filter((t) => now - t < 1000);
      this.windows.set(name, times);
      return { times, limit };
    });
    if (recent.some(({ times, limit }) => times.length >= limit)) return true;
    for (const { times } of recent) times.push(now);
    return false;
  }

  clearFaults(): void {
    this.faults = [];
  }

  /** Number of fault firings still pending. */
  pendingFaults(): number {
    return this.faults.reduce((n, f) => n + f.remaining, 0);
  }

  private takeFault(method: string, path: string): ActiveFault | undefined {
    for (const f of this.faults) {
      if (f.remaining <= 0) continue;
      if (f.method !== undefined && f.method !== method) continue;
      let hit: boolean;
      if (typeof f.path === "string") {
        hit = f.path === path;
      } else {
        f.path.lastIndex = 0;
        hit = f.path.test(path);
      }
      if (!hit) continue;
      f.remaining--;
      this.faults = this.faults.filter((x) => x.remaining > 0);
      return f;
    }
    return undefined;
  }

  private hang(request: Request): Promise<Response> {
    return new Promise<Response>((_resolve, reject) => {
      const signal = request.signal;
      const abort = (): void => {
        const reason: unknown = signal.reason;
        reject(reason instanceof Error ? reason : new DOMException("The operation was aborted.", "AbortError"));
      };
      if (signal.aborted) abort();
      else signal.addEventListener("abort", abort, { once: true });
    });
  }

  // ----------------------------------------------------------------------------- responses

  private baseHeaders(request: Request, requestId: string, idempotencyKey: string | null): Headers {
    const headers = new Headers({
      "Content-Type": "application/json",
      "Request-Id": requestId,
      "Stripe-Version": request.headers.get("Stripe-Version") ?? this.apiVersion,
    });
    if (idempotencyKey !== null) headers.set("Idempotency-Key", idempotencyKey);
    return headers;
  }

  private errorResponse(status: number, error: StripeErrorBody, headers: Headers, shouldRetry: string | null = null): Response {
    if (shouldRetry !== null) headers.set("Stripe-Should-Retry", shouldRetry);
    return new Response(JSON.stringify({ error }, null, 2), { status, headers });
  }

  // ----------------------------------------------------------------------------- routing

  private route(method: string, path: string, params: Params, ctx: RequestContext): Result {
    try {
      const body = this.dispatch(method, path, params, ctx);
      return { status: 200, body, committed: true };
    } catch (e) {
      if (e instanceof ApiError) return { status: e.status, body: { error: e.error }, committed: e.committed };
      throw e;
    }
  }

  private dispatch(method: string, path: string, params: Params, ctx: RequestContext): unknown {
    const s = this.state;
    let m: RegExpExecArray | null;
    if (path === "/v1/customers" && method === "POST") return apiCreateCustomer(s, params, ctx);
    if ((m = /^\/v1\/customers\/([^/]+)$/.exec(path))) {
      const id = decodeId(m[1]);
      if (method === "GET") return apiRetrieveCustomer(s, id, params);
      if (method === "POST") return apiUpdateCustomer(s, id, params, ctx);
      if (method === "DELETE") return apiDeleteCustomer(s, id, ctx);
    }
    if ((m = /^\/v1\/customers\/([^/]+)\/balance_transactions$/.exec(path))) {
      const id = decodeId(m[1]);
      if (method === "POST") return apiCreateBalanceTransaction(s, id, params, ctx);
      if (method === "GET") return apiListBalanceTransactions(s, id, params, path);
    }
    if ((m = /^\/v1\/customers\/([^/]+)\/balance_transactions\/([^/]+)$/.exec(path)) && method === "GET") {
      return apiRetrieveBalanceTransaction(s, decodeId(m[1]), decodeId(m[2]), params);
    }
    if ((m = /^\/v1\/customers\/([^/]+)\/payment_methods$/.exec(path)) && method === "GET") {
      return apiListCustomerPaymentMethods(s, decodeId(m[1]), params, path);
    }
    if (path === "/v1/checkout/sessions" && method === "POST") return apiCreateSession(s, params);
    if ((m = /^\/v1\/checkout\/sessions\/([^/]+)$/.exec(path)) && method === "GET") return apiRetrieveSession(s, decodeId(m[1]), params);
    if (path === "/v1/test_helpers/shared_payment/granted_tokens" && method === "POST") return apiGrantToken(s, params);
    if ((m = /^\/v1\/test_helpers\/shared_payment\/granted_tokens\/([^/]+)\/revoke$/.exec(path)) && method === "POST") return apiRevokeToken(s, decodeId(m[1]));
    if ((m = /^\/v1\/shared_payment\/granted_tokens\/([^/]+)$/.exec(path)) && method === "GET") return apiRetrieveToken(s, decodeId(m[1]));
    if (path === "/v1/payment_intents" && method === "POST")
      return isCryptoVerification(params) ? apiCreateCryptoPaymentIntent(s, params, ctx) : apiCreatePaymentIntent(s, params, ctx);
    if (path === "/v1/payment_intents" && method === "GET") return apiListPaymentIntents(s, params, path);
    if ((m = /^\/v1\/payment_intents\/([^/]+)$/.exec(path)) && method === "GET") return apiRetrievePaymentIntent(s, decodeId(m[1]), params);
    if ((m = /^\/v1\/payment_methods\/([^/]+)$/.exec(path)) && method === "GET") return apiRetrievePaymentMethod(s, decodeId(m[1]), params);
    if ((m = /^\/v1\/charges\/([^/]+)$/.exec(path)) && method === "GET") return apiRetrieveCharge(s, decodeId(m[1]), params);
    if (path === "/v1/refunds" && method === "GET") return apiListRefunds(s, params, path);
    if ((m = /^\/v1\/refunds\/([^/]+)$/.exec(path)) && method === "GET") return apiRetrieveRefund(s, decodeId(m[1]), params);
    if ((m = /^\/v1\/disputes\/([^/]+)$/.exec(path)) && method === "GET") return apiRetrieveDispute(s, decodeId(m[1]), params);
    if (path === "/v1/billing/meter_events" && method === "POST") return apiCreateMeterEvent(s, params);
    if ((m = /^\/v1\/billing\/meters\/([^/]+)$/.exec(path)) && method === "GET") return apiRetrieveMeter(s, decodeId(m[1]), params);
    if ((m = /^\/v2\/core\/events\/([^/]+)$/.exec(path)) && method === "GET") return apiRetrieveV2Event(s, decodeId(m[1]));
    throw invalid(`Unrecognized request URL (${method}: ${path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`, {}, 404);
  }

  // ----------------------------------------------------------------------------- test-side helpers

  /** A Shared Payment Token granted to this account for a test payment method (shared-payment.ts), as an agent's wallet would make one. */
  grantSharedPaymentToken(input: { paymentMethod?: string; currency?: string; maxAmount: number; expiresAt?: number | null; settlesLater?: boolean }): GrantedToken {
    return grantTokenIn(this.state, {
      paymentMethod: input.paymentMethod ?? "pm_card_visa",
      currency: input.currency ?? this.defaultCurrency,
      maxAmount: input.maxAmount,
      expiresAt: input.expiresAt ?? null,
      settlesLater: input.settlesLater ?? false,
    });
  }

  /** A `processing` PaymentIntent (a `settlesLater` token's) succeeds or fails, with its events. */
  settlePaymentIntent(id: string, succeeded = true): void {
    settleCheckoutPayment(this.state, id, succeeded);
  }

  sharedPaymentToken(id: string): GrantedToken | undefined {
    return this.state.grantedTokens.get(id);
  }

  /** Create a customer directly (no HTTP), emitting `customer.created` (and `payment_method.attached`). */
  createCustomer(input: CreateCustomerInput = {}): Stripe.Customer {
    return createCustomerIn(this.state, input);
  }

  /**
   * Dashboard-style balance change: creates an `adjustment` balance transaction
   * (negative amount = credit) and emits `customer.updated` with previous_attributes.balance.
   */
  adjustBalance(customerId: string, amount: number, description?: string): Stripe.CustomerBalanceTransaction {
    return adjustCustomerBalance(this.state, customerId, amount, description);
  }

  /**
   * Mark a checkout session complete and emit `checkout.session.completed` (first), then the
   * payment's events. A payment-mode session gets a PaymentIntent and Charge (`payment_intent`
   * set); with `payment_intent_data[setup_future_usage]` and a customer, the card
   * (`opts.paymentMethod`, default "pm_card_visa") is attached to the customer.
   * `async: true`: payment_status "unpaid" until `succeedAsyncPayment` / `failAsyncPayment`.
   * Never changes any customer balance.
   */
  completeCheckout(sessionId: string, opts: CompleteCheckoutOptions = {}): Stripe.Checkout.Session {
    return completeCheckoutIn(this.state, sessionId, opts);
  }

  /** For an async-completed session: payment_status → "paid", emits `checkout.session.async_payment_succeeded`. */
  succeedAsyncPayment(sessionId: string): Stripe.Checkout.Session {
    return succeedAsyncPaymentIn(this.state, sessionId);
  }

  /** For an async-completed session: emits `checkout.session.async_payment_failed` (payment_status stays "unpaid"). */
  failAsyncPayment(sessionId: string): Stripe.Checkout.Session {
    return failAsyncPaymentIn(this.state, sessionId);
  }

  /** Expire an open session, emitting `checkout.session.expired`. */
  expireCheckout(sessionId: string): Stripe.Checkout.Session {
    return expireCheckoutIn(this.state, sessionId);
  }

  /**
   * Refund a charge (or a PaymentIntent's latest charge), all that is left by default. Emits
   * `charge.refunded` and `refund.created`; partial refunds accumulate in `amount_refunded` (the
   * Charge lists `refunds` only with `expand[]=refunds`, as since API 2022-11-15).
   */
  refundCharge(chargeOrPaymentIntentId: string, amount?: number): { refund: Stripe.Refund; charge: Stripe.Charge } {
    return refundChargeIn(this.state, chargeOrPaymentIntentId, amount);
  }

  /**
   * The issuer declines this card from now on (cancelled, or over its limit), as a card saved
   * months ago may: its later charges fail with `card_declined` (402), like `pm_card_chargeCustomerFail`.
   */
  declineFromNowOn(paymentMethodId: string): void {
    if (!this.state.paymentMethods.has(paymentMethodId)) throw new Error(`no such payment method ${paymentMethodId}`);
    this.state.cardBehavior.set(paymentMethodId, "declines");
  }

  /**
   * The later failure of a refund of a `pm_card_refundFail` charge: `charge.refund.updated`,
   * `refund.updated`, `refund.failed` (status `failed`).
   */
  failRefund(refundId: string): Stripe.Refund {
    return failRefundIn(this.state, refundId);
  }

  /**
   * Open a dispute on a charge: a chargeback (`needs_response`: `charge.dispute.created` +
   * `charge.dispute.funds_withdrawn`), or with `inquiry` an inquiry (`warning_needs_response`,
   * no funds withdrawn).
   */
  createDispute(chargeOrPaymentIntentId: string, amount?: number, opts: { inquiry?: boolean } = {}): Stripe.Dispute {
    return createDisputeIn(this.state, chargeOrPaymentIntentId, amount, opts);
  }

  /** Move a dispute to another of Stripe's statuses (refunds.ts moveDispute says which events follow). */
  moveDispute(disputeId: string, status: Stripe.Dispute.Status): Stripe.Dispute {
    return moveDisputeIn(this.state, disputeId, status);
  }

  /** Close a dispute: `charge.dispute.closed`, and on "won" `charge.dispute.funds_reinstated`. */
  closeDispute(disputeId: string, outcome: "won" | "lost"): Stripe.Dispute {
    return closeDisputeIn(this.state, disputeId, outcome);
  }

  /** Register a meter for `eventName` (the default ones come from the `meters` option). */
  createMeter(eventName: string, displayName?: string): Stripe.Billing.Meter {
    return clone(createMeterIn(this.state, eventName, displayName));
  }

  /** Emit an `invoice.paid` / `invoice.payment_failed` event with an invoice shaped like the fixture. */
  invoiceEvent(customerId: string, type: InvoiceEventType, invoiceId?: string, opts: InvoiceEventOptions = {}): Stripe.Event {
    const c = this.state.customers.get(customerId);
    if (!c) throw new Error(`no such customer ${customerId}`);
    const invoice = buildInvoice(this.state, c, type, invoiceId ?? newId("in_"), opts);
    return this.state.emit(type, invoice, undefined, null);
  }

  /** Returns and clears the events not yet taken (the `events` array keeps all of them). */
  takeEvents(): Stripe.Event[] {
    const out = this.state.events.slice(this.state.delivered);
    this.state.delivered = this.state.events.length;
    return out;
  }

  /**
   * Sign an event (or raw body) as Stripe does. The body is the event pretty-printed like Stripe
   * sends it; verify on these exact bytes. `timestamp` defaults to the real current time (the
   * receiver checks it against its own clock, tolerance 300 s).
   */
  async sign(event: Stripe.Event | string, opts: { secret?: string; timestamp?: number } = {}): Promise<{ body: string; signature: string }> {
    const body = typeof event === "string" ? event : JSON.stringify(event, null, 2);
    return { body, signature: await this.signature(body, opts.secret ?? this.webhookSecret, opts.timestamp) };
  }

  /** Convenience: a signed webhook POST to `url` (`Stripe-Signature` header, JSON body). */
  async webhookRequest(url: string, event: Stripe.Event | string, opts: { secret?: string; timestamp?: number } = {}): Promise<Request> {
    const { body, signature } = await this.sign(event, opts);
    return signedPost(url, body, signature);
  }

  /**
   * Thin (v2) events about meter-event problems found since the last call, grouped like Stripe's
   * validation windows; the full events are then served by `GET /v2/core/events/{id}`.
   */
  takeThinEvents(): ThinEventPayload[] {
    return takeThinEventsIn(this.state);
  }

  /**
   * Sign a thin event notification as Stripe signs deliveries to an event destination (the same
   * `Stripe-Signature` scheme as webhooks, with the destination's secret), so that
   * `stripe.parseEventNotificationAsync(body, signature, secret, undefined, Stripe.createSubtleCryptoProvider())`
   * verifies it.
   */
  async signThin(notification: ThinEventPayload | string, opts: { secret?: string; timestamp?: number } = {}): Promise<{ body: string; signature: string }> {
    const body = typeof notification === "string" ? notification : JSON.stringify(notification, null, 2);
    return { body, signature: await this.signature(body, opts.secret ?? this.thinEventSecret, opts.timestamp) };
  }

  /** Convenience: a signed thin-event POST to an event destination at `url`. */
  async thinEventRequest(url: string, notification: ThinEventPayload | string, opts: { secret?: string; timestamp?: number } = {}): Promise<Request> {
    const { body, signature } = await this.signThin(notification, opts);
    return signedPost(url, body, signature);
  }

  private async signature(body: string, secret: string, timestamp?: number): Promise<string> {
    return Stripe.webhooks.generateTestHeaderStringAsync({
      payload: body,
      secret,
      timestamp: timestamp ?? Math.floor(Date.now() / 1000),
      cryptoProvider: Stripe.createSubtleCryptoProvider(),
    });
  }

  // ----------------------------------------------------------------------------- readers

  balanceOf(customerId: string): number {
    const c = this.state.customers.get(customerId);
    if (!c) throw new Error(`no such customer ${customerId}`);
    return c.balance;
  }

  /** `invoice_credit_balance` as the API shows it (currencies other than the customer's; positive = credit). */
  invoiceCreditBalance(customerId: string): Record<string, number> {
    if (!this.state.customers.has(customerId)) throw new Error(`no such customer ${customerId}`);
    const out: Record<string, number> = {};
    for (const [currency, balance] of this.state.otherBalances.get(customerId) ?? []) out[currency] = balance === 0 ? 0 : -balance;
    return out;
  }

  /** Balance transactions of a customer, oldest first (the HTTP list is newest first). */
  balanceTransactions(customerId: string): Stripe.CustomerBalanceTransaction[] {
    return clone(this.state.transactions.get(customerId) ?? []);
  }

  /** A customer's current state (also for deleted customers: their last state), or undefined. */
  getCustomer(customerId: string): Stripe.Customer | undefined {
    const c = this.state.customers.get(customerId);
    return c ? clone(c) : undefined;
  }

  isDeleted(customerId: string): boolean {
    return this.state.deletedCustomers.has(customerId);
  }

  /** Payment methods attached to a customer, in attach order. */
  paymentMethodsOf(customerId: string): Stripe.PaymentMethod[] {
    return paymentMethodsOf(this.state, customerId);
  }

  paymentIntentsOf(customerId: string): Stripe.PaymentIntent[] {
    return [...this.state.paymentIntents.values()].filter((pi) => pi.customer === customerId).map(clone);
  }

  getPaymentIntent(id: string): Stripe.PaymentIntent | undefined {
    const pi = this.state.paymentIntents.get(id);
    return pi ? clone(pi) : undefined;
  }

  getSession(id: string): Stripe.Checkout.Session | undefined {
    const session = this.state.sessions.get(id);
    return session ? clone(session) : undefined;
  }

  /** The charge as stored (with its `refunds` list, which the API shows only when expanded). */
  /** A Checkout session's post-purchase invoice (invoice_creation). */
  getInvoice(id: string): Stripe.Invoice | undefined {
    const invoice = this.state.invoices.get(id);
    return invoice && clone(invoice);
  }

  getCharge(id: string): Stripe.Charge | undefined {
    const charge = this.state.charges.get(id);
    return charge ? clone(charge) : undefined;
  }

  getDispute(id: string): Stripe.Dispute | undefined {
    const dispute = this.state.disputes.get(id);
    return dispute ? clone(dispute) : undefined;
  }

  /** Meters by event_name. */
  meters(): Stripe.Billing.Meter[] {
    return [...this.state.meters.values()].map(clone);
  }

  /** A full v2 event as `GET /v2/core/events/{id}` would return it. */
  getV2Event(id: string): V2Event | undefined {
    const event = this.state.v2Events.get(id);
    return event ? clone(event) : undefined;
  }

  /** Sum of counted meter-event values for a customer (optionally one event_name). */
  meterUsage(customerId: string, eventName?: string): number {
    let total = 0;
    for (const e of this.state.meterEvents) {
      if (e.payload.stripe_customer_id !== customerId) continue;
      if (eventName !== undefined && e.event_name !== eventName) continue;
      total += Number(e.payload.value ?? 0);
    }
    return total;
  }

  /** Forget everything: state, events, idempotency keys, faults and the request log (the clock and default meters stay). */
  reset(): void {
    this.requests.length = 0;
    this.state.reset();
    this.state.meters.clear();
    for (const name of this.defaultMeters) createMeterIn(this.state, name);
    this.idempotency.clear();
    this.faults = [];
  }
}

function signedPost(url: string, body: string, signature: string): Request {
  return new Request(url, {
    method: "POST",
    headers: {
      "Content-Type": "application/json; charset=utf-8",
      "Stripe-Signature": signature,
      "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    },
    body,
  });
}
