/**
 * In-memory Stripe API test double, at the HTTP boundary.
 *
 * Framework-agnostic: `handle(request)` takes a web-standard `Request` and returns a `Response`
 * (only Request/Response/URL/URLSearchParams/crypto are used), so the same object serves
 *   (a) workerd tests through MSW:  http.all("http://stripe.test/*", ({ request }) => double.handle(request))
 *   (b) end-to-end tests behind a small Node http server.
 *
 * Shapes follow the real Stripe objects in ../../../shared/stripe/fixtures3.json and are typed
 * with the `stripe` package's own types so that they stay honest.
 *
 * Behaviour modelled on Stripe (see /work/shared/FACTS.md):
 * - Auth: `Authorization: Bearer sk_...`, else 401 with Stripe's error JSON.
 * - Bodies are `application/x-www-form-urlencoded` with bracket notation, as the SDK sends them
 *   (`metadata[k]=v`, `line_items[0][price_data][unit_amount]=500`). Unknown top-level parameters
 *   are refused with 400 `parameter_unknown`, like Stripe does; known-but-unmodelled ones are
 *   accepted and ignored.
 * - Idempotency (POST only; keys on GET/DELETE are ignored, like Stripe): the first result of a
 *   request that started executing (2xx, or a 500 saved by the `500_after_commit` fault) is stored
 *   under the key and replayed byte-for-byte, with `Idempotent-Replayed: true`, for a repeat with
 *   the same method, path and parameters; the same key with other parameters/endpoint gives 400
 *   `idempotency_error`. Validation errors (4xx) are not saved ("no endpoint began execution").
 *   Keys are kept for the life of the double (Stripe keeps them at least 24 h).
 * - Customer balance: every change is a `customer_balance_transaction`; every change emits
 *   `customer.updated` with `previous_attributes.balance` (there is no
 *   `customer.balance_transaction.created` event). Setting `balance` directly on customer
 *   create/update also writes a transaction (`initial` / `adjustment`) so the ledger always sums
 *   to the balance.
 * - Meter events: `value` must be a string of a positive whole number; `timestamp` within the past
 *   35 days and at most 5 minutes ahead. DEDUPE CHOICE: a repeated `identifier` returns the
 *   originally stored meter event with 200 and is NOT counted twice (real Stripe reports duplicate
 *   identifiers asynchronously; this double keeps it simple and synchronous). Identifiers are kept
 *   for the life of the double (Stripe: at least 24 h). Unlike real Stripe (which reports a missing
 *   customer mapping asynchronously), a missing `payload[stripe_customer_id]` is refused with 400.
 * - Invoices: `invoiceEvent` only emits an event; the double never applies the customer balance
 *   to invoices (starting_balance/ending_balance are 0).
 * - Completing a checkout does NOT change any balance: the gateway is expected to create the
 *   balance transaction itself.
 *
 * Faults (`inject`) are matched after authentication, in order of injection; each fires `times`
 * times (default 1). `timeout` returns a promise that only settles when `request.signal` aborts.
 * `drop_after_commit` returns `Response.error()` (MSW turns it into a rejected fetch; a Node
 * wrapper should destroy the socket when `response.type === "error"`).
 */
import Stripe from "stripe";

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

export type FaultKind = "500" | "500_after_commit" | "429" | "timeout" | "drop_after_commit";

export interface FaultSpec {
  match: { method?: string; path: RegExp | string };
  kind: FaultKind;
  /** How many matching requests this fault fires for. Default 1. */
  times?: number;
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
  /** `api_version` written on events. Default: the SDK's pinned version (Stripe.API_VERSION). */
  apiVersion?: string;
  /** Clock in milliseconds, for `created` fields and meter-event timestamp checks. Default Date.now. */
  now?: () => number;
  /** Currency used when a balance is set without one (customer create with `balance`). Default "usd". */
  defaultCurrency?: string;
}

export interface CreateCustomerInput {
  id?: string;
  email?: string | null;
  name?: string | null;
  metadata?: Record<string, string>;
  balance?: number;
}

export interface InvoiceEventOptions {
  /** amount_due in minor units. Default 1000. */
  amount?: number;
  currency?: string;
  metadata?: Record<string, string>;
}

export type InvoiceEventType = "invoice.paid" | "invoice.payment_failed";

type Params = Record<string, unknown>;
type EventType = Stripe.Event["type"];
type EventOf<T extends EventType> = Extract<Stripe.Event, { type: T }>;
type EventObject<T extends EventType> = EventOf<T>["data"]["object"];

interface StripeErrorBody {
  type: "invalid_request_error" | "api_error" | "idempotency_error" | "rate_limit_error";
  message: string;
  code?: string;
  param?: string;
}

interface Result {
  status: number;
  body: unknown;
  /** True when the operation started executing and its outcome is stored under an idempotency key. */
  committed: boolean;
}

interface StoredIdempotentResult {
  method: string;
  path: string;
  fingerprint: string;
  status: number;
  body: string;
  requestId: string;
}

interface ActiveFault {
  method: string | undefined;
  path: RegExp | string;
  kind: FaultKind;
  remaining: number;
}

interface RequestContext {
  requestId: string;
  idempotencyKey: string | null;
}

// ---------------------------------------------------------------------------------------------
// Form parser (Stripe / qs bracket notation)
// ---------------------------------------------------------------------------------------------

const UNSAFE_KEYS = new Set(["__proto__", "constructor", "prototype"]);
/** Children of these keys are always plain objects even when their keys look numeric. */
const HASH_KEYS = new Set(["metadata", "payload"]);

function splitKey(key: string): string[] {
  const open = key.indexOf("[");
  if (open <= 0) return [key];
  const parts = [key.slice(0, open)];
  const re = /\[([^\]]*)\]/g;
  re.lastIndex = open;
  let m: RegExpExecArray | null;
  let end = open;
  while ((m = re.exec(key)) !== null && m.index === end) {
    parts.push(m[1] ?? "");
    end = re.lastIndex;
  }
  // Trailing garbage (e.g. "a[b]c"): keep it as part of the last segment, like qs does loosely.
  if (end < key.length) parts[parts.length - 1] += key.slice(end);
  return parts;
}

function isIndex(s: string): boolean {
  return s === "" || /^(0|[1-9]\d*)$/.test(s);
}

/**
 * Parse an `application/x-www-form-urlencoded` body in Stripe's bracket notation into nested
 * objects and arrays: `a[b][0][c]=1` → `{ a: { b: [ { c: "1" } ] } }`. All leaf values stay strings.
 */
export function parseStripeForm(body: string): Record<string, unknown> {
  const root: Params = {};
  for (const [rawKey, value] of new URLSearchParams(body)) {
    const parts = splitKey(rawKey);
    if (parts.some((p) => UNSAFE_KEYS.has(p))) continue;
    let container: Params | unknown[] = root;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] ?? "";
      const last = i === parts.length - 1;
      const nextPart = parts[i + 1] ?? "";
      const parentName = i > 0 ? (parts[i - 1] ?? "") : "";
      // Arrays take an index ("" appends), objects a key; both are filled the same way.
      const slot = Array.isArray(container)
        ? part === ""
          ? container.length
          : Number(part)
        : part === "" && HASH_KEYS.has(parentName)
          ? ""
          : part;
      const target = container as Record<string | number, unknown>;
      if (last) {
        target[slot] = value;
      } else {
        let child = target[slot];
        if (typeof child !== "object" || child === null) {
          child = isIndex(nextPart) && !HASH_KEYS.has(part) ? [] : {};
          target[slot] = child;
        }
        container = child as Params | unknown[];
      }
    }
  }
  return root;
}

/** Deterministic JSON (sorted keys) used to compare parameters of idempotent requests. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => canonical(v ?? null)).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const obj = value as Params;
    return `{${Object.keys(obj)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(obj[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value ?? null);
}

// ---------------------------------------------------------------------------------------------
// Helpers: ids, errors, parameter readers
// ---------------------------------------------------------------------------------------------

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

function randomChars(n: number, alphabet = BASE62): string {
  const bytes = new Uint8Array(n);
  crypto.getRandomValues(bytes);
  let out = "";
  for (const b of bytes) out += alphabet[b % alphabet.length];
  return out;
}

function newId(prefix: string, n = 24): string {
  return prefix + randomChars(n);
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly error: StripeErrorBody,
  ) {
    super(error.message);
  }
}

function invalid(message: string, extra: { code?: string; param?: string } = {}, status = 400): ApiError {
  return new ApiError(status, { type: "invalid_request_error", message, ...extra });
}

function missing(param: string): ApiError {
  return invalid(`Missing required param: ${param}.`, { code: "parameter_missing", param });
}

function noSuch(kind: string, id: string, param: string, status: number): ApiError {
  return invalid(`No such ${kind}: '${id}'`, { code: "resource_missing", param }, status);
}

function checkKnown(params: Params, allowed: ReadonlySet<string>): void {
  for (const key of Object.keys(params)) {
    if (!allowed.has(key)) {
      throw invalid(`Received unknown parameter: ${key}`, { code: "parameter_unknown", param: key });
    }
  }
}

function readString(params: Params, name: string, opts: { required?: boolean; max?: number } = {}): string | undefined {
  const v = params[name];
  if (v === undefined) {
    if (opts.required) throw missing(name);
    return undefined;
  }
  if (typeof v !== "string") throw invalid(`Invalid string: ${JSON.stringify(v)}`, { param: name });
  if (opts.required && v === "") throw missing(name);
  if (opts.max !== undefined && v.length > opts.max) {
    throw invalid(`Invalid ${name}: must be at most ${opts.max} characters`, { param: name });
  }
  return v;
}

function parseIntParam(v: unknown, param: string): number {
  const s = typeof v === "number" ? String(v) : v;
  if (typeof s !== "string" || !/^-?\d+$/.test(s.trim())) {
    throw invalid(`Invalid integer: ${typeof v === "string" ? v : JSON.stringify(v)}`, {
      code: "parameter_invalid_integer",
      param,
    });
  }
  const n = Number(s.trim());
  if (!Number.isSafeInteger(n)) throw invalid(`Invalid integer: ${s}`, { code: "parameter_invalid_integer", param });
  return n;
}

function readInt(params: Params, name: string, opts: { required?: boolean } = {}): number | undefined {
  const v = params[name];
  if (v === undefined || v === "") {
    if (opts.required) throw missing(name);
    return undefined;
  }
  return parseIntParam(v, name);
}

/** Emptyable string: "" means "unset" (null). */
function readNullableString(params: Params, name: string): string | null | undefined {
  const v = readString(params, name);
  if (v === undefined) return undefined;
  return v === "" ? null : v;
}

/**
 * Metadata param: `""` clears all keys; a key with value `""` removes that key.
 * Returns the raw instruction map (empty-string values mean "delete").
 */
function readMetadata(params: Params, name = "metadata"): { clear: boolean; set: Record<string, string> } | undefined {
  const v = params[name];
  if (v === undefined) return undefined;
  if (v === "") return { clear: true, set: {} };
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw invalid(`Invalid object`, { param: name });
  }
  const set: Record<string, string> = {};
  const entries = Object.entries(v as Params);
  if (entries.length > 50) throw invalid(`Invalid ${name}: cannot have more than 50 keys`, { param: name });
  for (const [k, val] of entries) {
    if (typeof val !== "string") throw invalid(`Invalid ${name}[${k}]: must be a string`, { param: `${name}[${k}]` });
    if (k.length > 40) throw invalid(`Invalid ${name}: keys must be at most 40 characters`, { param: `${name}[${k}]` });
    if (val.length > 500) throw invalid(`Invalid ${name}: values must be at most 500 characters`, { param: `${name}[${k}]` });
    set[k] = val;
  }
  return { clear: false, set };
}

function applyMetadata(current: Stripe.Metadata, instr: { clear: boolean; set: Record<string, string> }): Stripe.Metadata {
  const next: Stripe.Metadata = instr.clear ? {} : { ...current };
  for (const [k, v] of Object.entries(instr.set)) {
    if (v === "") delete next[k];
    else next[k] = v;
  }
  return next;
}

function metadataDiff(before: Stripe.Metadata, after: Stripe.Metadata): Record<string, string | null> | undefined {
  const diff: Record<string, string | null> = {};
  let changed = false;
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
    if (before[k] !== after[k]) {
      diff[k] = before[k] ?? null;
      changed = true;
    }
  }
  return changed ? diff : undefined;
}

const clone = <T>(v: T): T => structuredClone(v);

// ---------------------------------------------------------------------------------------------
// Allowed parameters per endpoint (top level; from the SDK's *Params types)
// ---------------------------------------------------------------------------------------------

const CUSTOMER_CREATE_PARAMS = new Set([
  "address", "balance", "business_name", "cash_balance", "description", "email", "expand",
  "individual_name", "invoice_prefix", "invoice_settings", "metadata", "name", "next_invoice_sequence",
  "payment_method", "phone", "preferred_locales", "shipping", "source", "tax", "tax_exempt",
  "tax_id_data", "test_clock", "validate",
]);
const CUSTOMER_UPDATE_PARAMS = new Set([
  "address", "balance", "business_name", "cash_balance", "default_source", "description", "email",
  "expand", "individual_name", "invoice_prefix", "invoice_settings", "metadata", "name",
  "next_invoice_sequence", "phone", "preferred_locales", "shipping", "source", "tax", "tax_exempt",
  "validate",
]);
const RETRIEVE_PARAMS = new Set(["expand"]);
const BALANCE_TXN_CREATE_PARAMS = new Set(["amount", "currency", "description", "expand", "metadata"]);
const BALANCE_TXN_LIST_PARAMS = new Set(["created", "ending_before", "expand", "invoice", "limit", "starting_after"]);
const SESSION_CREATE_PARAMS = new Set([
  "adaptive_pricing", "after_expiration", "allow_promotion_codes", "allowed_payment_method_types",
  "automatic_tax", "billing_address_collection", "branding_settings", "cancel_url", "client_reference_id",
  "consent_collection", "currency", "custom_fields", "custom_text", "customer", "customer_account",
  "customer_creation", "customer_email", "customer_update", "discounts", "excluded_payment_method_types",
  "expand", "expires_at", "integration_identifier", "invoice_creation", "line_items", "locale",
  "managed_payments", "metadata", "mode", "name_collection", "optional_items", "origin_context",
  "payment_intent_data", "payment_method_collection", "payment_method_configuration",
  "payment_method_data", "payment_method_options", "payment_method_types", "permissions",
  "phone_number_collection", "redirect_on_completion", "return_url", "saved_payment_method_options",
  "setup_intent_data", "shipping_address_collection", "shipping_options", "submit_type",
  "subscription_data", "success_url", "tax_id_collection", "ui_mode", "wallet_options",
]);
const METER_EVENT_CREATE_PARAMS = new Set(["event_name", "expand", "identifier", "payload", "timestamp"]);

const METER_PAST_WINDOW_S = 35 * 24 * 60 * 60;
const METER_FUTURE_WINDOW_S = 5 * 60;

// ---------------------------------------------------------------------------------------------
// The double
// ---------------------------------------------------------------------------------------------

/** The customer fields create and update share, validated before anything changes. */
function readCustomerParams(params: Params) {
  return {
    email: readNullableString(params, "email"),
    name: readNullableString(params, "name"),
    description: readNullableString(params, "description"),
    phone: readNullableString(params, "phone"),
    metadata: readMetadata(params),
    balance: readInt(params, "balance"),
  };
}

export class StripeDouble {
  readonly webhookSecret: string;
  readonly apiVersion: string;
  readonly defaultCurrency: string;

  /** Every call to `handle`, in arrival order (for counting API calls). */
  readonly requests: RequestLogEntry[] = [];
  /** Every webhook event Stripe would send, in creation order. */
  readonly events: Stripe.Event[] = [];
  /** Accepted (deduplicated) meter events, in arrival order. */
  readonly meterEvents: Stripe.Billing.MeterEvent[] = [];
  /** Checkout sessions by id. */
  readonly sessions = new Map<string, Stripe.Checkout.Session>();

  private readonly now: () => number;
  private readonly customers = new Map<string, Stripe.Customer>();
  private readonly deletedCustomers = new Set<string>();
  private readonly transactions = new Map<string, Stripe.CustomerBalanceTransaction[]>();
  private readonly meterByIdentifier = new Map<string, Stripe.Billing.MeterEvent>();
  private readonly idempotency = new Map<string, StoredIdempotentResult>();
  private faults: ActiveFault[] = [];
  private delivered = 0;

  constructor(options: StripeDoubleOptions = {}) {
    this.webhookSecret = options.webhookSecret ?? "whsec_test_secret";
    this.apiVersion = options.apiVersion ?? Stripe.API_VERSION;
    this.now = options.now ?? (() => Date.now());
    this.defaultCurrency = options.defaultCurrency ?? "usd";
  }

  // ----------------------------------------------------------------------------- HTTP boundary

  async handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const method = request.method.toUpperCase();
    const path = url.pathname.replace(/\/+$/, "") || "/";
    const idempotencyKey = request.headers.get("Idempotency-Key");

    let params: Params;
    let bodyError: ApiError | undefined;
    if (method === "GET" || method === "DELETE" || method === "HEAD") {
      params = parseStripeForm(url.search.slice(1));
    } else {
      // Decoded by hand: workerd warns when a form body is read with .text().
      const text = new TextDecoder().decode(await request.arrayBuffer());
      const contentType = request.headers.get("Content-Type") ?? "";
      if (contentType.includes("application/json") && text.trim() !== "") {
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

    // Authentication.
    const auth = request.headers.get("Authorization");
    const bearer = auth && /^Bearer\s+(\S+)$/i.exec(auth.trim());
    if (!auth) {
      return this.errorResponse(
        401,
        {
          type: "invalid_request_error",
          message:
            "You did not provide an API key. You need to provide your API key in the Authorization header, " +
            "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        },
        headers,
      );
    }
    const key = bearer?.[1];
    if (!key || !key.startsWith("sk_")) {
      const shown = key ? `${key.slice(0, 8)}${"*".repeat(Math.max(0, key.length - 12))}${key.slice(-4)}` : auth;
      return this.errorResponse(401, { type: "invalid_request_error", message: `Invalid API Key provided: ${shown}` }, headers);
    }

    // Faults that act before anything is committed.
    const fault = this.takeFault(method, path);
    if (fault) entry.fault = fault;
    if (fault === "500") {
      return this.errorResponse(500, { type: "api_error", message: "Something went wrong on Stripe's end." }, headers);
    }
    if (fault === "429") {
      headers.set("Stripe-Should-Retry", "true");
      // Real Stripe: HTTP 429, error code `rate_limit` (the SDK keys StripeRateLimitError on the 429).
      return this.errorResponse(
        429,
        {
          type: "invalid_request_error",
          code: "rate_limit",
          message: "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
        },
        headers,
      );
    }
    if (fault === "timeout") return this.hang(request);

    if (bodyError) return this.errorResponse(bodyError.status, bodyError.error, headers);

    // Idempotency (POST only).
    const useIdempotency = method === "POST" && idempotencyKey !== null;
    let result: Result;
    let stored: StoredIdempotentResult | undefined;
    if (useIdempotency) {
      if (idempotencyKey.length > 255) {
        return this.errorResponse(
          400,
          { type: "invalid_request_error", message: "Idempotency-Key must be at most 255 characters long." },
          headers,
        );
      }
      stored = this.idempotency.get(idempotencyKey);
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
      if (fault === "drop_after_commit") return Response.error();
      if (fault === "500_after_commit") {
        return this.errorResponse(500, { type: "api_error", message: "Something went wrong on Stripe's end." }, headers);
      }
      return new Response(stored.body, { status: stored.status, headers });
    }

    result = this.route(method, path, params, { requestId, idempotencyKey: useIdempotency ? idempotencyKey : null });

    if (result.committed && fault === "500_after_commit") {
      result = {
        status: 500,
        body: { error: { type: "api_error", message: "Something went wrong on Stripe's end." } },
        committed: true,
      };
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
      });
    }
    if (result.committed && fault === "drop_after_commit") return Response.error();
    return new Response(body, { status: result.status, headers });
  }

  // ----------------------------------------------------------------------------- faults

  inject(spec: FaultSpec): void {
    const times = spec.times ?? 1;
    if (!Number.isInteger(times) || times < 1) throw new Error(`inject: times must be a positive integer, got ${times}`);
    this.faults.push({ method: spec.match.method?.toUpperCase(), path: spec.match.path, kind: spec.kind, remaining: times });
  }

  clearFaults(): void {
    this.faults = [];
  }

  /** Number of fault firings still pending. */
  pendingFaults(): number {
    return this.faults.reduce((n, f) => n + f.remaining, 0);
  }

  private takeFault(method: string, path: string): FaultKind | undefined {
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
      return f.kind;
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

  private errorResponse(status: number, error: StripeErrorBody, headers: Headers): Response {
    return new Response(JSON.stringify({ error }, null, 2), { status, headers });
  }

  // ----------------------------------------------------------------------------- routing

  private route(method: string, path: string, params: Params, ctx: RequestContext): Result {
    try {
      const body = this.dispatch(method, path, params, ctx);
      return { status: 200, body, committed: true };
    } catch (e) {
      if (e instanceof ApiError) return { status: e.status, body: { error: e.error }, committed: false };
      throw e;
    }
  }

  private dispatch(method: string, path: string, params: Params, ctx: RequestContext): unknown {
    let m: RegExpExecArray | null;
    if (path === "/v1/customers" && method === "POST") return this.apiCreateCustomer(params, ctx);
    if ((m = /^\/v1\/customers\/([^/]+)$/.exec(path))) {
      const id = decodeURIComponent(m[1] ?? "");
      if (method === "GET") return this.apiRetrieveCustomer(id, params);
      if (method === "POST") return this.apiUpdateCustomer(id, params, ctx);
      if (method === "DELETE") return this.apiDeleteCustomer(id, ctx);
    }
    if ((m = /^\/v1\/customers\/([^/]+)\/balance_transactions$/.exec(path))) {
      const id = decodeURIComponent(m[1] ?? "");
      if (method === "POST") return this.apiCreateBalanceTransaction(id, params, ctx);
      if (method === "GET") return this.apiListBalanceTransactions(id, params, path);
    }
    if ((m = /^\/v1\/customers\/([^/]+)\/balance_transactions\/([^/]+)$/.exec(path)) && method === "GET") {
      return this.apiRetrieveBalanceTransaction(decodeURIComponent(m[1] ?? ""), decodeURIComponent(m[2] ?? ""), params);
    }
    if (path === "/v1/checkout/sessions" && method === "POST") return this.apiCreateSession(params);
    if ((m = /^\/v1\/checkout\/sessions\/([^/]+)$/.exec(path)) && method === "GET") {
      checkKnown(params, RETRIEVE_PARAMS);
      const id = decodeURIComponent(m[1] ?? "");
      const s = this.sessions.get(id);
      if (!s) throw noSuch("checkout.session", id, "session", 404);
      return s;
    }
    if (path === "/v1/billing/meter_events" && method === "POST") return this.apiCreateMeterEvent(params);
    throw invalid(
      `Unrecognized request URL (${method}: ${path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`,
      {},
      404,
    );
  }

  // ----------------------------------------------------------------------------- customers (HTTP)

  private liveCustomer(id: string, status = 404, param = "id"): Stripe.Customer {
    const c = this.customers.get(id);
    if (!c || this.deletedCustomers.has(id)) throw noSuch("customer", id, param, status);
    return c;
  }

  private apiCreateCustomer(params: Params, ctx: RequestContext): Stripe.Customer {
    checkKnown(params, CUSTOMER_CREATE_PARAMS);
    const { email, name, description, phone, metadata, balance } = readCustomerParams(params);
    const invoicePrefix = readString(params, "invoice_prefix");
    const customer = this.insertCustomer(
      {
        email: email ?? null,
        name: name ?? null,
        metadata: metadata ? applyMetadata({}, metadata) : {},
        balance: balance ?? 0,
      },
      { description: description ?? null, phone: phone ?? null, invoicePrefix },
      { id: ctx.requestId, idempotency_key: ctx.idempotencyKey },
    );
    return customer;
  }

  private apiRetrieveCustomer(id: string, params: Params): Stripe.Customer | Stripe.DeletedCustomer {
    checkKnown(params, RETRIEVE_PARAMS);
    if (this.deletedCustomers.has(id)) return { id, object: "customer", deleted: true };
    const c = this.customers.get(id);
    if (!c) throw noSuch("customer", id, "id", 404);
    return c;
  }

  private apiUpdateCustomer(id: string, params: Params, ctx: RequestContext): Stripe.Customer {
    checkKnown(params, CUSTOMER_UPDATE_PARAMS);
    const c = this.liveCustomer(id);
    // Validate everything before changing anything.
    const { email, name, description, phone, metadata, balance } = readCustomerParams(params);

    const previous: Partial<Stripe.Customer> = {};
    const fields = { email, name, description, phone } as const;
    for (const field of Object.keys(fields) as (keyof typeof fields)[]) {
      const value = fields[field];
      if (value !== undefined && value !== (c[field] ?? null)) {
        previous[field] = c[field] ?? null;
        c[field] = value;
      }
    }
    if (metadata) {
      const next = applyMetadata(c.metadata, metadata);
      const diff = metadataDiff(c.metadata, next);
      if (diff) {
        previous.metadata = diff as Stripe.Metadata;
        c.metadata = next;
      }
    }
    if (balance !== undefined && balance !== c.balance) {
      const currencyBefore = c.currency ?? null;
      const balanceBefore = c.balance;
      this.writeTransaction(c, balance - c.balance, c.currency ?? this.defaultCurrency, null, null, "adjustment");
      previous.balance = balanceBefore;
      if (currencyBefore !== (c.currency ?? null)) previous.currency = currencyBefore;
    }
    if (Object.keys(previous).length > 0) {
      this.emit("customer.updated", c, previous, { id: ctx.requestId, idempotency_key: ctx.idempotencyKey });
    }
    return c;
  }

  private apiDeleteCustomer(id: string, ctx: RequestContext): Stripe.DeletedCustomer {
    const c = this.liveCustomer(id);
    this.deletedCustomers.add(id);
    this.emit("customer.deleted", c, undefined, { id: ctx.requestId, idempotency_key: ctx.idempotencyKey });
    return { id, object: "customer", deleted: true };
  }

  // ----------------------------------------------------------------------------- balance transactions (HTTP)

  private apiCreateBalanceTransaction(customerId: string, params: Params, ctx: RequestContext): Stripe.CustomerBalanceTransaction {
    checkKnown(params, BALANCE_TXN_CREATE_PARAMS);
    const c = this.liveCustomer(customerId);
    const amount = readInt(params, "amount", { required: true }) as number;
    const currencyRaw = readString(params, "currency", { required: true }) as string;
    const currency = currencyRaw.toLowerCase();
    if (!/^[a-z]{3}$/.test(currency)) throw invalid(`Invalid currency: ${currencyRaw}`, { param: "currency" });
    if (c.currency && c.currency !== currency) {
      throw invalid(
        `The currency of this balance transaction (${currency}) does not match the customer's currency (${c.currency}).`,
        { param: "currency" },
      );
    }
    const description = readNullableString(params, "description") ?? null;
    const metadata = readMetadata(params);
    const previous: Partial<Stripe.Customer> = { balance: c.balance };
    if (!c.currency) previous.currency = c.currency ?? null;
    const txn = this.writeTransaction(
      c,
      amount,
      currency,
      description,
      metadata ? applyMetadata({}, metadata) : null,
      "adjustment",
    );
    this.emit("customer.updated", c, previous, { id: ctx.requestId, idempotency_key: ctx.idempotencyKey });
    return txn;
  }

  private apiListBalanceTransactions(
    customerId: string,
    params: Params,
    url: string,
  ): Stripe.ApiList<Stripe.CustomerBalanceTransaction> {
    checkKnown(params, BALANCE_TXN_LIST_PARAMS);
    this.liveCustomer(customerId);
    const limit = readInt(params, "limit") ?? 10;
    if (limit < 1 || limit > 100) {
      throw invalid(`Invalid limit: must be between 1 and 100`, { param: "limit" });
    }
    const startingAfter = readString(params, "starting_after");
    const endingBefore = readString(params, "ending_before");
    if (startingAfter && endingBefore) {
      throw invalid("You may only specify one of these parameters: ending_before, starting_after.");
    }
    const newestFirst = [...(this.transactions.get(customerId) ?? [])].reverse();
    let data: Stripe.CustomerBalanceTransaction[];
    let hasMore: boolean;
    if (startingAfter) {
      const idx = newestFirst.findIndex((t) => t.id === startingAfter);
      if (idx < 0) throw noSuch("customer_balance_transaction", startingAfter, "starting_after", 400);
      const rest = newestFirst.slice(idx + 1);
      data = rest.slice(0, limit);
      hasMore = rest.length > limit;
    } else if (endingBefore) {
      const idx = newestFirst.findIndex((t) => t.id === endingBefore);
      if (idx < 0) throw noSuch("customer_balance_transaction", endingBefore, "ending_before", 400);
      const before = newestFirst.slice(0, idx);
      data = before.slice(Math.max(0, before.length - limit));
      hasMore = before.length > limit;
    } else {
      data = newestFirst.slice(0, limit);
      hasMore = newestFirst.length > limit;
    }
    return { object: "list", data, has_more: hasMore, url };
  }

  private apiRetrieveBalanceTransaction(customerId: string, txnId: string, params: Params): Stripe.CustomerBalanceTransaction {
    checkKnown(params, RETRIEVE_PARAMS);
    this.liveCustomer(customerId);
    const txn = (this.transactions.get(customerId) ?? []).find((t) => t.id === txnId);
    if (!txn) throw noSuch("customer_balance_transaction", txnId, "transaction", 404);
    return txn;
  }

  // ----------------------------------------------------------------------------- checkout (HTTP)

  private apiCreateSession(params: Params): Stripe.Checkout.Session {
    checkKnown(params, SESSION_CREATE_PARAMS);
    const mode = readString(params, "mode", { required: true }) as string;
    if (!["payment", "setup", "subscription"].includes(mode)) {
      throw invalid(`Invalid mode: must be one of payment, setup, or subscription`, { param: "mode" });
    }
    const customerId = readString(params, "customer");
    const customerEmail = readString(params, "customer_email");
    if (customerId && customerEmail) {
      throw invalid("You may only specify one of these parameters: customer, customer_email.");
    }
    const customer = customerId ? this.liveCustomer(customerId, 400, "customer") : undefined;
    const successUrl = readString(params, "success_url") ?? null;
    const cancelUrl = readString(params, "cancel_url") ?? null;
    const clientReferenceId = readString(params, "client_reference_id") ?? null;
    const metadata = readMetadata(params);
    const customerCreation = readString(params, "customer_creation");

    let currency: string | null = readString(params, "currency")?.toLowerCase() ?? null;
    let amount: number | null = null;
    const rawItems = params.line_items;
    if (mode !== "setup") {
      if (rawItems === undefined) throw missing("line_items");
      if (!Array.isArray(rawItems) || rawItems.length === 0) throw invalid("Invalid array", { param: "line_items" });
      amount = 0;
      rawItems.forEach((raw, i) => {
        const p = `line_items[${i}]`;
        if (typeof raw !== "object" || raw === null) throw invalid("Invalid object", { param: p });
        const item = raw as Params;
        const price = item.price;
        if (typeof price === "string" && price !== "") throw noSuch("price", price, `${p}[price]`, 400);
        const pd = item.price_data;
        if (typeof pd !== "object" || pd === null) {
          throw invalid(`You must specify either \`price\` or \`price_data\` for each line item.`, { param: p });
        }
        const priceData = pd as Params;
        const cur = readString(priceData, "currency");
        if (!cur) throw missing(`${p}[price_data][currency]`);
        if (priceData.product === undefined && priceData.product_data === undefined) {
          throw invalid("You must specify either `product` or `product_data` when creating a price.", {
            param: `${p}[price_data]`,
          });
        }
        const product = priceData.product_data;
        if (product !== undefined && (typeof product !== "object" || product === null || !(product as Params).name)) {
          throw missing(`${p}[price_data][product_data][name]`);
        }
        let unit: number;
        if (priceData.unit_amount !== undefined) {
          unit = parseIntParam(priceData.unit_amount, `${p}[price_data][unit_amount]`);
        } else if (typeof priceData.unit_amount_decimal === "string" && /^\d+(\.\d+)?$/.test(priceData.unit_amount_decimal)) {
          unit = Number(priceData.unit_amount_decimal);
        } else {
          throw missing(`${p}[price_data][unit_amount]`);
        }
        if (unit < 0) throw invalid("This value must be greater than or equal to 0.", { param: `${p}[price_data][unit_amount]` });
        if (item.quantity === undefined) throw missing(`${p}[quantity]`);
        const qty = parseIntParam(item.quantity, `${p}[quantity]`);
        if (qty < 1) throw invalid("This value must be greater than or equal to 1.", { param: `${p}[quantity]` });
        const c = cur.toLowerCase();
        if (currency && currency !== c) {
          throw invalid("All line items must have the same currency.", { param: `${p}[price_data][currency]` });
        }
        currency = c;
        amount = (amount ?? 0) + Math.round(unit * qty);
      });
    }

    const created = this.nowSeconds();
    const id = `cs_test_a1${randomChars(58)}`;
    const session: Stripe.Checkout.Session = {
      id,
      object: "checkout.session",
      adaptive_pricing: { enabled: false },
      after_expiration: null,
      allow_promotion_codes: null,
      allowed_payment_method_types: null,
      amount_subtotal: amount,
      amount_total: amount,
      automatic_tax: { enabled: false, liability: null, provider: null, status: null },
      billing_address_collection: null,
      cancel_url: cancelUrl,
      client_reference_id: clientReferenceId,
      client_secret: null,
      collected_information: null,
      consent: null,
      consent_collection: null,
      created,
      currency,
      currency_conversion: null,
      custom_fields: [],
      custom_text: { after_submit: null, shipping_address: null, submit: null, terms_of_service_acceptance: null },
      customer: customer ? customer.id : null,
      customer_account: null,
      customer_creation: customer ? null : ((customerCreation as Stripe.Checkout.Session.CustomerCreation | undefined) ?? (mode === "payment" ? "if_required" : "always")),
      customer_details: customerEmail
        ? { address: null, business_name: null, email: customerEmail, individual_name: null, name: null, phone: null, tax_exempt: "none", tax_ids: null }
        : null,
      customer_email: customerEmail ?? null,
      discounts: [],
      expires_at: created + 24 * 60 * 60,
      integration_identifier: null,
      invoice: null,
      invoice_creation:
        mode === "payment"
          ? {
              enabled: false,
              invoice_data: {
                account_tax_ids: null,
                custom_fields: null,
                description: null,
                footer: null,
                issuer: null,
                metadata: {},
                rendering_options: null,
              },
            }
          : null,
      livemode: false,
      locale: null,
      managed_payments: null,
      metadata: metadata ? applyMetadata({}, metadata) : {},
      mode,
      origin_context: null,
      payment_intent: null,
      payment_link: null,
      payment_method_collection: "if_required",
      payment_method_configuration_details: null,
      payment_method_options: {},
      payment_method_types: ["card"],
      payment_status: mode === "setup" ? "no_payment_required" : "unpaid",
      permissions: null,
      phone_number_collection: { enabled: false },
      recovered_from: null,
      saved_payment_method_options: customer
        ? { allow_redisplay_filters: ["always"], payment_method_remove: null, payment_method_save: null }
        : null,
      setup_intent: null,
      shipping_address_collection: null,
      shipping_cost: null,
      shipping_options: [],
      status: "open",
      submit_type: null,
      subscription: null,
      success_url: successUrl,
      total_details: mode === "setup" ? null : { amount_discount: 0, amount_shipping: 0, amount_tax: 0 },
      ui_mode: "hosted",
      url: `https://checkout.stripe.test/c/pay/${id}`,
      wallet_options: null,
    };
    this.sessions.set(id, session);
    return session;
  }

  // ----------------------------------------------------------------------------- meter events (HTTP)

  private apiCreateMeterEvent(params: Params): Stripe.Billing.MeterEvent {
    checkKnown(params, METER_EVENT_CREATE_PARAMS);
    const eventName = readString(params, "event_name", { required: true, max: 100 }) as string;
    const payload = params.payload;
    if (payload === undefined) throw missing("payload");
    if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
      throw invalid("Invalid object", { param: "payload" });
    }
    const p = payload as Params;
    const customer = p.stripe_customer_id;
    if (typeof customer !== "string" || customer === "") throw missing("payload[stripe_customer_id]");
    const value = p.value;
    if (value === undefined) throw missing("payload[value]");
    if (typeof value !== "string" || !/^[1-9]\d*$/.test(value)) {
      throw invalid(`Invalid payload[value]: must be a positive whole number, got ${JSON.stringify(value)}`, {
        param: "payload[value]",
      });
    }
    const identifier = readString(params, "identifier", { max: 100 });
    const now = this.nowSeconds();
    const timestamp = readInt(params, "timestamp") ?? now;
    if (timestamp < now - METER_PAST_WINDOW_S) {
      throw invalid("Timestamp must be within the past 35 calendar days.", { param: "timestamp" });
    }
    if (timestamp > now + METER_FUTURE_WINDOW_S) {
      throw invalid("Timestamp must not be more than 5 minutes in the future.", { param: "timestamp" });
    }

    // Dedupe (see header comment): a repeated identifier returns the stored event, counted once.
    if (identifier !== undefined && identifier !== "") {
      const existing = this.meterByIdentifier.get(identifier);
      if (existing) return existing;
    }
    const stringPayload: Record<string, string> = {};
    for (const [k, v] of Object.entries(p)) stringPayload[k] = typeof v === "string" ? v : JSON.stringify(v);
    const event: Stripe.Billing.MeterEvent = {
      object: "billing.meter_event",
      created: now,
      event_name: eventName,
      identifier: identifier || crypto.randomUUID(),
      livemode: false,
      payload: stringPayload,
      timestamp,
    };
    this.meterEvents.push(event);
    this.meterByIdentifier.set(event.identifier, event);
    return event;
  }

  // ----------------------------------------------------------------------------- test-side helpers

  /** Create a customer directly (no HTTP), emitting `customer.created`. */
  createCustomer(input: CreateCustomerInput = {}): Stripe.Customer {
    if (input.id !== undefined && this.customers.has(input.id)) throw new Error(`customer ${input.id} already exists`);
    if (input.balance !== undefined && !Number.isSafeInteger(input.balance)) throw new Error("balance must be an integer");
    const c = this.insertCustomer(
      {
        id: input.id,
        email: input.email ?? null,
        name: input.name ?? null,
        metadata: { ...(input.metadata ?? {}) },
        balance: input.balance ?? 0,
      },
      {},
      { id: newId("req_", 14), idempotency_key: null },
    );
    return clone(c);
  }

  /**
   * Dashboard-style balance change: creates an `adjustment` balance transaction
   * (negative amount = credit) and emits `customer.updated` with previous_attributes.balance.
   */
  adjustBalance(customerId: string, amount: number, description?: string): Stripe.CustomerBalanceTransaction {
    if (!Number.isSafeInteger(amount)) throw new Error("amount must be an integer");
    const c = this.customers.get(customerId);
    if (!c || this.deletedCustomers.has(customerId)) throw new Error(`no such live customer ${customerId}`);
    const previous: Partial<Stripe.Customer> = { balance: c.balance };
    if (!c.currency) previous.currency = c.currency ?? null;
    const txn = this.writeTransaction(c, amount, c.currency ?? this.defaultCurrency, description ?? null, null, "adjustment");
    this.emit("customer.updated", c, previous, { id: newId("req_", 14), idempotency_key: null });
    return clone(txn);
  }

  /**
   * Mark a checkout session complete and emit `checkout.session.completed`.
   * `async: true` models a delayed payment method: the session completes with
   * payment_status "unpaid"; call `succeedAsyncPayment` (or `failAsyncPayment`) afterwards.
   * Never changes any customer balance.
   */
  completeCheckout(sessionId: string, opts: { async?: boolean } = {}): Stripe.Checkout.Session {
    const s = this.sessions.get(sessionId);
    if (!s) throw new Error(`no such checkout session ${sessionId}`);
    if (s.status !== "open") throw new Error(`checkout session ${sessionId} is ${s.status}, not open`);
    s.status = "complete";
    if (s.mode !== "setup") s.payment_status = opts.async ? "unpaid" : "paid";
    if (s.mode === "payment") s.payment_intent = newId("pi_");
    if (s.mode === "setup") s.setup_intent = newId("seti_");
    const cust = typeof s.customer === "string" ? this.customers.get(s.customer) : undefined;
    s.customer_details = {
      address: { city: null, country: "US", line1: null, line2: null, postal_code: "94103", state: null },
      business_name: null,
      email: cust?.email ?? s.customer_email ?? s.customer_details?.email ?? "customer@example.com",
      individual_name: null,
      name: cust?.name ?? null,
      phone: null,
      tax_exempt: "none",
      tax_ids: [],
    };
    this.emit("checkout.session.completed", s, undefined, { id: null, idempotency_key: null });
    return clone(s);
  }

  /** For an async-completed session: payment_status → "paid", emits `checkout.session.async_payment_succeeded`. */
  succeedAsyncPayment(sessionId: string): Stripe.Checkout.Session {
    const s = this.asyncPending(sessionId);
    s.payment_status = "paid";
    this.emit("checkout.session.async_payment_succeeded", s, undefined, { id: null, idempotency_key: null });
    return clone(s);
  }

  /** For an async-completed session: emits `checkout.session.async_payment_failed` (payment_status stays "unpaid"). */
  failAsyncPayment(sessionId: string): Stripe.Checkout.Session {
    const s = this.asyncPending(sessionId);
    this.emit("checkout.session.async_payment_failed", s, undefined, { id: null, idempotency_key: null });
    return clone(s);
  }

  /** Expire an open session, emitting `checkout.session.expired`. */
  expireCheckout(sessionId: string): Stripe.Checkout.Session {
    const s = this.sessions.get(sessionId);
    if (!s) throw new Error(`no such checkout session ${sessionId}`);
    if (s.status !== "open") throw new Error(`checkout session ${sessionId} is ${s.status}, not open`);
    s.status = "expired";
    s.url = null;
    this.emit("checkout.session.expired", s, undefined, { id: null, idempotency_key: null });
    return clone(s);
  }

  /** Emit an `invoice.paid` / `invoice.payment_failed` event with an invoice shaped like the fixture. */
  invoiceEvent(
    customerId: string,
    type: InvoiceEventType,
    invoiceId?: string,
    opts: InvoiceEventOptions = {},
  ): Stripe.Event {
    const c = this.customers.get(customerId);
    if (!c) throw new Error(`no such customer ${customerId}`);
    const invoice = this.buildInvoice(c, type, invoiceId ?? newId("in_"), opts);
    return this.emit(type, invoice, undefined, { id: null, idempotency_key: null });
  }

  /** Returns and clears the events not yet taken (the `events` array keeps all of them). */
  takeEvents(): Stripe.Event[] {
    const out = this.events.slice(this.delivered);
    this.delivered = this.events.length;
    return out;
  }

  /**
   * Sign an event (or raw body) as Stripe does. The body is the event pretty-printed like Stripe
   * sends it; verify on these exact bytes. `timestamp` defaults to the real current time (the
   * receiver checks it against its own clock, tolerance 300 s).
   */
  async sign(
    event: Stripe.Event | string,
    opts: { secret?: string; timestamp?: number } = {},
  ): Promise<{ body: string; signature: string }> {
    const body = typeof event === "string" ? event : JSON.stringify(event, null, 2);
    const signature = await Stripe.webhooks.generateTestHeaderStringAsync({
      payload: body,
      secret: opts.secret ?? this.webhookSecret,
      timestamp: opts.timestamp ?? Math.floor(Date.now() / 1000),
      cryptoProvider: Stripe.createSubtleCryptoProvider(),
    });
    return { body, signature };
  }

  /** Convenience: a signed webhook POST to `url` (`Stripe-Signature` header, JSON body). */
  async webhookRequest(
    url: string,
    event: Stripe.Event | string,
    opts: { secret?: string; timestamp?: number } = {},
  ): Promise<Request> {
    const { body, signature } = await this.sign(event, opts);
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

  // ----------------------------------------------------------------------------- readers

  balanceOf(customerId: string): number {
    const c = this.customers.get(customerId);
    if (!c) throw new Error(`no such customer ${customerId}`);
    return c.balance;
  }

  /** Balance transactions of a customer, oldest first (the HTTP list is newest first). */
  balanceTransactions(customerId: string): Stripe.CustomerBalanceTransaction[] {
    return clone(this.transactions.get(customerId) ?? []);
  }

  /** A customer's current state (also for deleted customers: their last state), or undefined. */
  getCustomer(customerId: string): Stripe.Customer | undefined {
    const c = this.customers.get(customerId);
    return c ? clone(c) : undefined;
  }

  isDeleted(customerId: string): boolean {
    return this.deletedCustomers.has(customerId);
  }

  /** Sum of accepted meter-event values for a customer (optionally one event_name). */
  meterUsage(customerId: string, eventName?: string): number {
    let total = 0;
    for (const e of this.meterEvents) {
      if (e.payload.stripe_customer_id !== customerId) continue;
      if (eventName !== undefined && e.event_name !== eventName) continue;
      total += Number(e.payload.value ?? 0);
    }
    return total;
  }

  /** Forget everything: state, events, idempotency keys, faults and the request log. */
  reset(): void {
    this.requests.length = 0;
    this.events.length = 0;
    this.meterEvents.length = 0;
    this.sessions.clear();
    this.customers.clear();
    this.deletedCustomers.clear();
    this.transactions.clear();
    this.meterByIdentifier.clear();
    this.idempotency.clear();
    this.faults = [];
    this.delivered = 0;
  }

  // ----------------------------------------------------------------------------- internals

  private nowSeconds(): number {
    return Math.floor(this.now() / 1000);
  }

  private asyncPending(sessionId: string): Stripe.Checkout.Session {
    const s = this.sessions.get(sessionId);
    if (!s) throw new Error(`no such checkout session ${sessionId}`);
    if (s.status !== "complete" || s.payment_status !== "unpaid") {
      throw new Error(`checkout session ${sessionId} has no pending async payment (status ${s.status}, payment_status ${s.payment_status})`);
    }
    return s;
  }

  private insertCustomer(
    fields: { id?: string; email: string | null; name: string | null; metadata: Stripe.Metadata; balance: number },
    extra: { description?: string | null; phone?: string | null; invoicePrefix?: string },
    request: Stripe.Event.Request,
  ): Stripe.Customer {
    const id = fields.id ?? newId("cus_", 14);
    const customer: Stripe.Customer = {
      id,
      object: "customer",
      address: null,
      balance: 0,
      created: this.nowSeconds(),
      currency: null,
      customer_account: null,
      default_source: null,
      delinquent: false,
      description: extra.description ?? null,
      discount: null,
      email: fields.email,
      invoice_prefix: extra.invoicePrefix ?? randomChars(8, "0123456789ABCDEF"),
      invoice_settings: { custom_fields: null, default_payment_method: null, footer: null, rendering_options: null },
      livemode: false,
      metadata: fields.metadata,
      name: fields.name,
      next_invoice_sequence: 1,
      phone: extra.phone ?? null,
      preferred_locales: [],
      shipping: null,
      tax_exempt: "none",
      test_clock: null,
    };
    this.customers.set(id, customer);
    this.transactions.set(id, []);
    if (fields.balance !== 0) {
      this.writeTransaction(customer, fields.balance, this.defaultCurrency, null, null, "initial");
    }
    this.emit("customer.created", customer, undefined, request);
    return customer;
  }

  /** Appends a balance transaction and moves the customer's balance. Emits nothing. */
  private writeTransaction(
    customer: Stripe.Customer,
    amount: number,
    currency: string,
    description: string | null,
    metadata: Stripe.Metadata | null,
    type: Stripe.CustomerBalanceTransaction.Type,
  ): Stripe.CustomerBalanceTransaction {
    const ending = customer.balance + amount;
    const txn: Stripe.CustomerBalanceTransaction = {
      id: newId("cbtxn_"),
      object: "customer_balance_transaction",
      amount,
      checkout_session: null,
      created: this.nowSeconds(),
      credit_note: null,
      currency,
      customer: customer.id,
      customer_account: null,
      description,
      ending_balance: ending,
      invoice: null,
      livemode: false,
      metadata,
      type,
    };
    customer.balance = ending;
    if (!customer.currency) customer.currency = currency;
    const list = this.transactions.get(customer.id);
    if (list) list.push(txn);
    else this.transactions.set(customer.id, [txn]);
    return txn;
  }

  private emit<T extends EventType>(
    type: T,
    object: EventObject<T>,
    previous: Partial<EventObject<T>> | undefined,
    request: Stripe.Event.Request | null,
  ): EventOf<T> {
    const data = previous === undefined ? { object: clone(object) } : { object: clone(object), previous_attributes: clone(previous) };
    // Typed through EventBase (the shared shape of every Stripe.Event); the generic signature
    // above ties `object`/`previous` to the event type at each call site.
    const event: Stripe.EventBase = {
      id: newId("evt_"),
      object: "event",
      api_version: this.apiVersion,
      created: this.nowSeconds(),
      data,
      livemode: false,
      pending_webhooks: 1,
      request,
      type,
    };
    this.events.push(event as Stripe.Event);
    return event as EventOf<T>;
  }

  private buildInvoice(c: Stripe.Customer, type: InvoiceEventType, id: string, opts: InvoiceEventOptions): Stripe.Invoice {
    const now = this.nowSeconds();
    const amount = opts.amount ?? 1000;
    const currency = opts.currency ?? c.currency ?? this.defaultCurrency;
    const paid = type === "invoice.paid";
    const line: Stripe.InvoiceLineItem = {
      id: newId("il_"),
      object: "line_item",
      amount,
      currency,
      description: "Usage",
      discount_amounts: [],
      discountable: true,
      discounts: [],
      invoice: id,
      livemode: false,
      metadata: {},
      parent: null,
      period: { end: now, start: now },
      pretax_credit_amounts: null,
      pricing: null,
      quantity: 1,
      quantity_decimal: null,
      subscription: null,
      subtotal: amount,
      taxes: [],
    };
    return {
      id,
      object: "invoice",
      account_country: "US",
      account_name: null,
      account_tax_ids: null,
      amount_due: amount,
      amount_overpaid: 0,
      amount_paid: paid ? amount : 0,
      amount_remaining: paid ? 0 : amount,
      amount_shipping: 0,
      application: null,
      attempt_count: 1,
      attempted: true,
      auto_advance: !paid,
      automatic_tax: { disabled_reason: null, enabled: false, liability: null, provider: null, status: null },
      automatically_finalizes_at: null,
      billing_reason: "manual",
      collection_method: "charge_automatically",
      created: now,
      currency,
      custom_fields: null,
      customer: c.id,
      customer_account: null,
      customer_address: null,
      customer_email: c.email,
      customer_name: c.name ?? null,
      customer_phone: c.phone ?? null,
      customer_shipping: null,
      customer_tax_exempt: "none",
      customer_tax_ids: [],
      default_payment_method: null,
      default_source: null,
      default_tax_rates: [],
      description: null,
      discounts: [],
      due_date: null,
      effective_at: now,
      ending_balance: 0,
      footer: null,
      from_invoice: null,
      hosted_invoice_url: `https://invoice.stripe.test/i/${id}`,
      invoice_pdf: `https://pay.stripe.test/invoice/${id}/pdf`,
      issuer: { type: "self" },
      last_finalization_error: null,
      latest_revision: null,
      lines: { object: "list", data: [line], has_more: false, url: `/v1/invoices/${id}/lines` },
      livemode: false,
      metadata: { ...(opts.metadata ?? {}) },
      next_payment_attempt: paid ? null : now + 3 * 24 * 60 * 60,
      number: `${c.invoice_prefix ?? "INV"}-0001`,
      on_behalf_of: null,
      parent: null,
      payment_settings: { default_mandate: null, payment_method_options: null, payment_method_types: null },
      period_end: now,
      period_start: now,
      post_payment_credit_notes_amount: 0,
      pre_payment_credit_notes_amount: 0,
      receipt_number: null,
      rendering: null,
      shipping_cost: null,
      shipping_details: null,
      starting_balance: 0,
      statement_descriptor: null,
      status: paid ? "paid" : "open",
      status_transitions: {
        finalized_at: now,
        marked_uncollectible_at: null,
        paid_at: paid ? now : null,
        voided_at: null,
      },
      subtotal: amount,
      subtotal_excluding_tax: amount,
      test_clock: null,
      total: amount,
      total_discount_amounts: [],
      total_excluding_tax: amount,
      total_pretax_credit_amounts: [],
      total_taxes: [],
      webhooks_delivered_at: now,
    };
  }
}
