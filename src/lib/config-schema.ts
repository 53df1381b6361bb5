import { z } from "zod";
import { LOG_LEVELS } from "./log";
import { isLoopbackUrl } from "./loopback";
import { MAX_AMOUNT_CENTS, MAX_STRIPE_AMOUNT_CENTS, parseCentsDecimal } from "./money";
import { Payments } from "./payments-config";

/** The [vars] and secrets the gateway reads, as zod schemas: each key, its bounds and its default (config.ts compiles them). */
export const COHORTS = ["out_of_credits", "low_balance", "payment_failed", "credit_expiring", "topup_failed", "auto_topup_capped"] as const;
export type Cohort = (typeof COHORTS)[number];
/** Transactional emails (notices.ts): to every customer with an email address, unsubscribed too, with no unsubscribe footer. */
export const EMAIL_NOTICES = ["auto_topup_changed"] as const;
export type EmailNotice = (typeof EMAIL_NOTICES)[number];

const cents = z.int().min(-MAX_AMOUNT_CENTS).max(MAX_AMOUNT_CENTS);
const decimalCents = z
  .string()
  .refine((s) => parseCentsDecimal(s) !== null && parseCentsDecimal(s)! >= 0, {
    message: 'must be a non-negative decimal string of cents with at most 6 decimals, e.g. "1" or "0.05"',
  })
  .transform((s) => parseCentsDecimal(s)!);
const meterName = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, "must match [A-Za-z0-9_.:-]{1,64}");
const httpUrl = z.url({ protocol: /^https?$/ });
/** Where API keys and account data go: https, or plain http to a stand-in on this machine. */
const apiBase = httpUrl.refine((url) => url.startsWith("https:") || isLoopbackUrl(url), {
  message: "must be https (plain http only on loopback: localhost, 127.0.0.0/8, [::1])",
});
const signingSecret = z.string().min(32, "must be at least 32 characters (e.g. openssl rand -hex 32)");

const dottedPath = "[A-Za-z0-9_]{1,64}(?:\\.[A-Za-z0-9_]{1,64}){0,15}";
/** A number in the request's JSON body, by dotted path. */
const jsonField = z.string().regex(new RegExp(`^json:${dottedPath}$`), 'must be "json:<dotted.path>"');
/** Where a meter's billed quantity comes from (see src/metering/units.ts). */
const UnitsSpec = z
  .string()
  .regex(
    new RegExp(`^(?:request|header:[A-Za-z0-9-]{1,64}|json:${dottedPath}|sse:events|sse:json:${dottedPath}|mcp|tokens)$`),
    'must be "request", "header:<name>", "json:<dotted.path>", "sse:events", "sse:json:<dotted.path>", "mcp" or "tokens"',
  );

/** An MCP meter's price of one tool: `name` is a glob on `params.name` (`*` matches any characters, `/` too). */
const ToolPrice = z.strictObject({
  name: z.string().min(1).max(200),
  price_cents: decimalCents,
});

/**
 * A tokens meter's prices for the models `model` matches (a glob on the request's `model`, `*`
 * matching any characters): cents per million tokens of each kind, as providers publish them
 * ($2.50/M is "250"). A kind a row does not name is priced as `output` (reasoning) or `input`.
 */
const ModelPrice = z.strictObject({
  model: z.string().min(1).max(200),
  input_cents_per_mtok: decimalCents,
  cached_input_cents_per_mtok: decimalCents.optional(),
  cache_write_cents_per_mtok: decimalCents.optional(),
  output_cents_per_mtok: decimalCents,
  reasoning_cents_per_mtok: decimalCents.optional(),
  markup_percent: z.int().min(0).max(10_000).optional(),
});

/** Where a tokens meter finds the usage of the API it meters, and the request's output limit. */
export const TOKEN_PRESETS = ["openai-chat", "openai-responses", "anthropic-messages"] as const;

const Meter = z.strictObject({
  name: meterName,
  methods: z.array(z.string().regex(/^[A-Z]+$/, "must be an upper-case HTTP method")).optional(),
  path: z
    .string()
    .startsWith("/", "must start with /")
    .refine((path) => !path.includes(";"), "must not contain ';': paths are priced without their path parameters"),
  /** Per request, or per unit when `units` reads them from the response; an MCP meter's price of a tool its table does not name. A tokens meter has none. */
  price_cents: decimalCents.optional(),
  stripe_event_name: z.string().min(1).max(100).optional(),
  units: UnitsSpec.default("request"),
  /** The most one request may be charged, in units: reserved before the request is forwarded. */
  hold_units: z.int().min(1).max(100_000_000).optional(),
  /**
   * Take the hold from the request: the largest of these fields (e.g. ["json:max_completion_tokens",
   * "json:max_tokens"]), capped by hold_units; one field may be given as a string.
   */
  hold_units_from: z
    .union([jsonField, z.array(jsonField).min(1).max(8)])
    .transform((v) => (typeof v === "string" ? [v] : v))
    .optional(),
  /** A field of the request that multiplies the hold (e.g. "json:n", completions per request), 1 when absent. */
  hold_multiplier_from: jsonField.optional(),
  /**
   * `sse:json` meters: on a streamed request (`"stream": true`), ask for the usage chunk
   * (`stream_options.include_usage`) whatever the client sent, and take it out of the stream of a
   * client that did not ask for it.
   */
  include_stream_usage: z.boolean().default(true),
  /** When a response ends without readable units (missing header, bad JSON): charge the hold, or nothing. */
  on_missing_units: z.enum(["hold", "zero"]).default("hold"),
  /** `mcp` meters: the price of each tool (first match wins; else price_cents). */
  tools: z.array(ToolPrice).max(500).optional(),
  /** `mcp` meters: a tool result with `isError: true` is charged (the work was done), or given back. */
  charge_tool_errors: z.boolean().default(true),
  /** `tokens` meters: which API's usage fields and output limits. */
  preset: z.enum(TOKEN_PRESETS).optional(),
  /** `tokens` meters: prices per model (first match wins). */
  models: z.array(ModelPrice).min(1).max(500).optional(),
});

/** Client Idempotency-Key on billed requests: stored responses per customer, bounded. */
const Idempotency = z.strictObject({
  max_body_bytes: z.int().min(1_024).max(1_500_000).default(1_048_576),
  max_entries: z.int().min(10).max(100_000).default(1_000),
  max_total_bytes: z
    .int()
    .min(1_048_576)
    .max(1_000_000_000)
    .default(64 * 1_048_576),
});

export const Pricing = z.strictObject({
  currency: z.string().regex(/^[a-z]{3}$/, "must be a lower-case ISO currency code such as usd"),
  default_price_cents: decimalCents,
  default_meter: meterName.default("api_requests"),
  default_stripe_event_name: z.string().min(1).max(100).default("api_requests"),
  usage_bucket_seconds: z.int().min(60).max(86_400).default(3600),
  /** Usage buckets older than this fold into one carried-forward row per meter (the overview keeps 8 days). */
  usage_retention_days: z.int().min(8).max(3650).default(90),
  meters: z.array(Meter).default([]),
  /** A `;` in a path segment: refused with 400, or kept (priced without its parameters, forwarded as sent). */
  path_parameters: z.enum(["reject", "keep"]).default("reject"),
  /** Meter paths match in any letter case unless true (reserved prefixes always do). */
  case_sensitive_paths: z.boolean().default(false),
});

/** The 402 body of a request refused for credit: a stable code, the numbers, and what to do next. */
export const DEFAULT_BLOCKED_BODY = {
  code: "insufficient_credit",
  message: "Your API credit is used up: {{balance.available}} left, {{request.price}} needed. Top up at {{topup_url}}",
  customer_id: "{{customer.id}}",
  available_balance_cents: "{{balance.available_cents}}",
  minimum_balance_cents: "{{balance.minimum_cents}}",
  request_price_cents: "{{request.price_cents}}",
  next_steps: { topup_url: "{{topup_url}}", portal_url: "{{portal_url}}" },
};

const Governance = z.strictObject({
  minimum_balance_cents: cents.default(0),
  refund_on_origin_error: z.boolean().default(true),
  origin_timeout_ms: z.int().min(100).max(300_000).default(30_000),
  block_postpaid_when_unpaid: z.boolean().default(true),
  topup_url: httpUrl.default("https://example.com/billing/top-up"),
  /** Refunds of failed requests per customer in a rolling hour; past it failed requests stay charged. */
  refund_limit_per_hour: z.int().min(0).max(100_000).default(20),
  /** Which origin failures refund: a connection failure, a timeout, and these statuses. */
  refund_on: z.array(z.union([z.enum(["connection_error", "timeout"]), z.int().min(500).max(599)])).default(["connection_error", "timeout", 502, 503, 504]),
  // Sent to Stripe as a Checkout amount: within its 8 digits of minor units.
  checkout_min_cents: z.int().min(50).max(MAX_STRIPE_AMOUNT_CENTS).default(500),
  checkout_max_cents: z.int().min(50).max(MAX_STRIPE_AMOUNT_CENTS).default(100_000),
  /** Checkout sessions one customer may open in a rolling hour (each is a Stripe API call). */
  checkout_limit_per_hour: z.int().min(1).max(1000).default(10),
  checkout_success_url: httpUrl.default("https://example.com/billing/success"),
  checkout_cancel_url: httpUrl.default("https://example.com/billing/cancel"),
  /** Checkout's invoice_creation: every paid Checkout top-up gets a Stripe invoice (and its PDF). */
  checkout_invoice: z.boolean().default(true),
  /** Stripe Tax on Checkout top-ups (automatic_tax and tax_id_collection); the tax is never credited. */
  checkout_automatic_tax: z.boolean().default(false),
  /**
   * The payment methods Checkout may offer (Stripe's allowed_payment_method_types, e.g. ["card",
   * "crypto"]); unset: Stripe's dynamic choice from the Dashboard's settings.
   */
  checkout_payment_method_types: z
    .array(z.string().regex(/^[a-z][a-z0-9_]{1,40}$/, "must be a Stripe payment method type such as card or crypto"))
    .min(1)
    .refine((types) => new Set(types).size === types.length, "must not repeat a type")
    .optional(),
  blocked_body: z.record(z.string(), z.unknown()).default(DEFAULT_BLOCKED_BODY),
  /** Money refusals (402s) as RFC 9457 problem details, application/problem+json. */
  problem_details: z.boolean().default(false),
});

/** The customer portal. A key's sign-in gives a key's authority only; full authority comes from a provider's link. */
const Portal = z.strictObject({
  /** Lets a customer sign in at /portal with an API key (balance, usage, that key, Checkout top-ups). */
  api_key_sign_in: z.boolean().default(false),
});

const EmailTemplate = z.strictObject({
  subject: z.string().min(1).max(998),
  text: z.string().min(1),
  html: z.string().min(1).optional(),
  reenroll_seconds: z
    .int()
    .min(0)
    .max(90 * 86_400)
    .optional(),
  max_per_enrollment: z.int().min(1).max(100).optional(),
});

const Emails = z.strictObject({
  from_email: z.email(),
  from_name: z.string().max(200).default(""),
  reenroll_seconds: z
    .int()
    .min(0)
    .max(90 * 86_400)
    .default(3600),
  low_balance_threshold_cents: z.int().min(0).max(MAX_AMOUNT_CENTS).default(0),
  low_balance_threshold_percent: z.int().min(0).max(100).default(0),
  /** credit_expiring: credit that expires within this many days. */
  expiry_warning_days: z.int().min(1).max(365).default(7),
  /** Emails per cohort enrollment, counting the first; more only after leaving and re-entering. */
  max_per_enrollment: z.int().min(1).max(100).default(3),
  /** Email rows older than this are deleted; their counts are kept per cohort and status. */
  retention_days: z.int().min(1).max(3650).default(90),
  templates: z.partialRecord(z.enum([...COHORTS, ...EMAIL_NOTICES]), EmailTemplate).default({}),
});

/**
 * How many Stripe API calls a second the gateway may make across every customer (docs/operating/
 * scaling.md). Unset rates default by the key's mode: live half the account's limit (100/s) and
 * under the per-endpoint 25/s, a sandbox (sk_test_/rk_test_) under its 25/s.
 */
const StripeBudget = z.strictObject({
  max_calls_per_second: z.int().min(1).max(10_000).optional(),
  max_calls_per_endpoint_per_second: z.int().min(1).max(10_000).optional(),
  /** Meter events have their own limit at Stripe and do not count against the others. */
  max_meter_events_per_second: z.int().min(1).max(100_000).default(500),
  /** Of max_calls_per_second, kept for Checkout: background work (reports, reconcile) never takes it. */
  checkout_reserved_percent: z.int().min(0).max(90).default(20),
  /** While customers due outnumber the budget, a customer's usage waits until it is worth this much ... */
  min_report_cents: z.int().min(1).max(MAX_STRIPE_AMOUNT_CENTS).default(100),
  /** ... or has waited this long, whichever comes first. */
  max_report_delay_seconds: z
    .int()
    .min(60)
    .max(7 * 86_400)
    .default(86_400),
});

/** Structured vars may also arrive as JSON strings (`wrangler dev --var NAME:{...}`, dashboard). */
const json = <T extends z.ZodType>(schema: T) =>
  z.preprocess((value) => {
    if (typeof value !== "string") return value;
    try {
      return JSON.parse(value);
    } catch {
      return value;
    }
  }, schema);

/** Credit leases: how long one lives after a sync, how often an isolate with traffic syncs, how big one may be, how many one customer may hold. */
export const Leases = z
  .object({
    ttl_ms: z.number().int().min(1_000).max(600_000).default(10_000),
    heartbeat_ms: z.number().int().min(100).max(60_000).default(1_000),
    max_lease_cents: z.number().int().min(1).max(1_000_000).default(200),
    max_leases: z.number().int().min(1).max(1_000).default(64),
  })
  .strict()
  .refine((l) => l.heartbeat_ms * 4 <= l.ttl_ms, { message: "heartbeat_ms must be at most a quarter of ttl_ms (a live isolate must never lose a lease to one slow sync)" });

export const Vars = z.object({
  ORIGIN_URL: httpUrl,
  STRIPE_API_BASE: apiBase.default("https://api.stripe.com"),
  MAILCHANNELS_API_BASE: apiBase.default("https://api.mailchannels.net"),
  STRIPE_TIMEOUT_MS: z.coerce.number().int().min(100).max(80_000).default(10_000),
  MAILCHANNELS_TIMEOUT_MS: z.coerce.number().int().min(100).max(80_000).default(10_000),
  /** Customers visited per cron invocation or directory alarm (each visit is one subrequest). */
  CRON_BATCH_SIZE: z.coerce.number().int().min(1).max(900).default(200),
  /**
   * Directory objects: each customer is placed in one by a stable hash of its id; shard 0 is the
   * directory of a single-shard deployment ("global"). Raising it moves customers (docs/operating/scaling.md).
   */
  DIRECTORY_SHARDS: z.coerce.number().int().min(1).max(64).default(1),
  /** Dashboard overview: each customer pushes its rollup to the directory at most this often. */
  ROLLUP_INTERVAL_SECONDS: z.coerce.number().int().min(1).max(3600).default(60),
  LOG_LEVEL: z.enum(LOG_LEVELS).default("info"),
  /** Every customer holding a key is reconciled with Stripe at least this often (a lost webhook heals). */
  RECONCILE_INTERVAL_SECONDS: z.coerce
    .number()
    .int()
    .min(60)
    .max(30 * 86_400)
    .default(3600),
  /** Stripe reports sent (or resolved) longer ago than this are deleted; their sums per kind and status are kept. */
  REPORT_RETENTION_DAYS: z.coerce.number().int().min(7).max(3650).default(90),
  /** Per webhook delivery attempt, until the endpoint's response headers. */
  WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).max(30_000).default(10_000),
  /** Lets webhook endpoints be http://127.0.0.1 or http://localhost (local dev and tests only). */
  ALLOW_INSECURE_WEBHOOKS: z.preprocess((v) => (typeof v === "boolean" ? String(v) : v), z.stringbool()).default(false),
  /** Where this gateway is reachable from the internet; links in emails (unsubscribe) start with it. */
  PUBLIC_URL: httpUrl.optional(),
  /**
   * Requests to one customer that arrive while its last writes are being committed share the next
   * commit (each reply still waits for its own debit to be durable). Off only to measure it.
   */
  GROUP_COMMIT: json(z.boolean()).default(true),
  /** Keys without a MAC (issued before KEY_SIGNING_SECRET): accepted, checked in the object. */
  ACCEPT_UNSIGNED_KEYS: json(z.boolean()).default(true),
  KEY_SIGNING_SECRET: signingSecret.optional(),
  ORIGIN_SIGNING_SECRET: signingSecret.optional(),
  ADMIN_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
  /** Signs dashboard and portal session cookies; derived from ADMIN_TOKEN when unset. */
  SESSION_SECRET: z.string().min(32, "must be at least 32 characters").optional(),
  STRIPE_SECRET_KEY: z.string().min(1).optional(),
  STRIPE_WEBHOOK_SECRET: z.string().min(1).optional(),
  /** Signs Stripe's v2 event destination (meter error events) at /webhooks/stripe/events. */
  STRIPE_EVENT_DESTINATION_SECRET: z.string().min(1).optional(),
  MAILCHANNELS_API_KEY: z.string().min(1).optional(),
  MAILCHANNELS_DKIM_DOMAIN: z.string().min(1).optional(),
  MAILCHANNELS_DKIM_SELECTOR: z.string().min(1).optional(),
  // Base64 wrapped over lines (as `base64` prints it) is the same key: sent as one line.
  MAILCHANNELS_DKIM_PRIVATE_KEY: z
    .string()
    .min(1)
    .transform((s) => s.replace(/\s+/g, ""))
    .optional(),
  /** Signs unsubscribe links; without it they are signed with ADMIN_TOKEN. */
  UNSUBSCRIBE_SIGNING_SECRET: z.string().min(32, "must be at least 32 characters").optional(),
  PRICING: json(Pricing),
  GOVERNANCE: json(Governance.default(Governance.parse({}))),
  PORTAL: json(Portal.default(Portal.parse({}))),
  EMAILS: json(Emails.optional()),
  IDEMPOTENCY: json(Idempotency.default(Idempotency.parse({}))),
  STRIPE_BUDGET: json(StripeBudget.default(StripeBudget.parse({}))),
  /** Agent payments of a 402: x402 and the Payment HTTP authentication scheme (payments-config.ts). */
  PAYMENTS: json(Payments.optional()),
  /** Credit leases (docs/scaling.md): unset, no customer gets one; each customer opts in with `payg_leases`. */
  LEASES: json(Leases.optional()),
});
