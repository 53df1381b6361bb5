import { emailConfigProblems, isLoopback } from "./email/config-checks";
import { NOTICE_MERGE_TAGS, unknownMergeTags } from "./template";
import { log, setLogLevel } from "./log";
import { MAX_AMOUNT_CENTS, MICROS_PER_CENT } from "./money";
import type { z } from "zod";
import { COHORTS, EMAIL_NOTICES, type Pricing, Vars, type Cohort, type EmailNotice } from "./config-schema";

export { COHORTS, EMAIL_NOTICES, type Cohort, type EmailNotice };

export type UnitSource =
  | { kind: "request" }
  | { kind: "header"; name: string }
  | { kind: "json"; path: string[] }
  | { kind: "sse_events" }
  | { kind: "sse_json"; path: string[] };

export interface CompiledMeter {
  name: string;
  /** Per request, or per unit for a meter whose units come from the response. */
  priceMicros: number;
  stripeEventName: string;
  methods: Set<string> | null;
  pattern: RegExp;
  units: UnitSource;
  holdUnits: number | null;
  /** Request fields bounding the units (their largest is taken), as dotted paths. */
  holdFrom: string[][] | null;
  /** A request field multiplying the hold (completions per request). */
  holdMultiplierFrom: string[] | null;
  /** An sse:json meter that asks the origin for the usage chunk of a streamed request. */
  includeStreamUsage: boolean;
  onMissingUnits: "hold" | "zero";
}

/** The largest hold multiplier read from a request (OpenAI's `n` is at most 128). */
export const MAX_HOLD_MULTIPLIER = 128;

const fieldPath = (field: string) => field.slice("json:".length).split(".");

function unitSource(spec: string): UnitSource {
  if (spec === "request") return { kind: "request" };
  if (spec === "sse:events") return { kind: "sse_events" };
  if (spec.startsWith("header:")) return { kind: "header", name: spec.slice("header:".length).toLowerCase() };
  if (spec.startsWith("sse:json:")) return { kind: "sse_json", path: spec.slice("sse:json:".length).split(".") };
  return { kind: "json", path: spec.slice("json:".length).split(".") };
}

/** STRIPE_BUDGET with its defaults for the key's mode filled in (calls a second, across all shards). */
export interface StripeBudgetConfig {
  mode: "live" | "sandbox";
  callsPerSecond: number;
  perEndpointPerSecond: number;
  meterEventsPerSecond: number;
  checkoutReservedPercent: number;
  minReportMicros: number;
  maxReportDelayMs: number;
}

/** Sandbox keys (sk_test_, rk_test_) share a 25/s account limit; live keys 100/s (Stripe's rate-limit page). */
export function stripeBudget(budget: z.infer<typeof Vars>["STRIPE_BUDGET"], secretKey: string | undefined): StripeBudgetConfig {
  const mode = secretKey && /^(sk|rk)_test_/.test(secretKey) ? "sandbox" : "live";
  return {
    mode,
    callsPerSecond: budget.max_calls_per_second ?? (mode === "live" ? 50 : 10),
    perEndpointPerSecond: budget.max_calls_per_endpoint_per_second ?? (mode === "live" ? 12 : 10),
    meterEventsPerSecond: budget.max_meter_events_per_second,
    checkoutReservedPercent: budget.checkout_reserved_percent,
    minReportMicros: budget.min_report_cents * MICROS_PER_CENT,
    maxReportDelayMs: budget.max_report_delay_seconds * 1000,
  };
}

export type Config = Omit<z.infer<typeof Vars>, "PRICING"> & {
  PRICING: z.infer<typeof Pricing> & { compiled: CompiledMeter[]; fallback: CompiledMeter };
  stripeEnabled: boolean;
  stripeBudget: StripeBudgetConfig;
  emailDelivery: "mailchannels" | "outbox";
  /** ORIGIN_URL parsed once: its origin, and the prefix every forwarded path is appended to. */
  origin: { origin: string; base: string };
};

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
  }
}

function isNotice(name: string): name is EmailNotice {
  return (EMAIL_NOTICES as readonly string[]).includes(name);
}

/** "/v1/items/*" matches one path segment per "*", "**" matches the rest of the path. */
function globToRegExp(glob: string, caseSensitive: boolean): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp("^" + escaped.replace(/\*\*/g, "\u0000").replace(/\*/g, "[^/]*").replace(/\u0000/g, ".*") + "$", caseSensitive ? "" : "i");
}

export function parseConfig(env: Record<string, unknown>): Config {
  // An empty secret or var counts as unset (so `KEY=` in .dev.vars switches a service off).
  const parsed = Vars.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== "")));
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`));
  }
  const vars = parsed.data;
  const problems: string[] = [
    ...unknownMergeTags(vars.GOVERNANCE.blocked_body, "GOVERNANCE.blocked_body").map((p) => `unknown merge tag in ${p}`),
    ...Object.entries(vars.EMAILS?.templates ?? {}).flatMap(([name, template]) =>
      unknownMergeTags(template, `EMAILS.templates.${name}`, isNotice(name) ? NOTICE_MERGE_TAGS : []).map((p) => `unknown merge tag in ${p}`),
    ),
  ];
  for (const notice of EMAIL_NOTICES) {
    const template = vars.EMAILS?.templates[notice];
    if (template && (template.reenroll_seconds !== undefined || template.max_per_enrollment !== undefined)) {
      problems.push(`EMAILS.templates.${notice}: reenroll_seconds and max_per_enrollment are for cohort emails; a notice is sent once per change`);
    }
  }
  if (vars.GOVERNANCE.checkout_min_cents > vars.GOVERNANCE.checkout_max_cents) {
    problems.push("GOVERNANCE.checkout_min_cents: must not exceed checkout_max_cents");
  }
  const names = new Set<string>();
  for (const meter of vars.PRICING.meters) {
    if (names.has(meter.name) || meter.name === vars.PRICING.default_meter) {
      problems.push(`PRICING.meters: duplicate meter name ${meter.name}`);
    }
    names.add(meter.name);
  }
  // Post-paid usage goes to Stripe meters by event name: one name must mean one price.
  const priceByEvent = new Map<string, number>([[vars.PRICING.default_stripe_event_name, vars.PRICING.default_price_cents]]);
  for (const meter of vars.PRICING.meters.filter((m) => m.price_cents > 0)) {
    const event = meter.stripe_event_name ?? vars.PRICING.default_stripe_event_name;
    const price = priceByEvent.get(event);
    if (price !== undefined && price !== meter.price_cents) {
      problems.push(`PRICING.meters: meter ${meter.name} has another price than other meters reporting to Stripe event ${event}; give it its own stripe_event_name`);
    }
    priceByEvent.set(event, meter.price_cents);
  }
  problems.push(...emailConfigProblems(vars));
  if ((vars.STRIPE_SECRET_KEY === undefined) !== (vars.STRIPE_WEBHOOK_SECRET === undefined)) {
    problems.push("STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET: set both secrets or neither");
  }
  if (!vars.ACCEPT_UNSIGNED_KEYS && vars.KEY_SIGNING_SECRET === undefined) {
    problems.push("ACCEPT_UNSIGNED_KEYS: false needs KEY_SIGNING_SECRET, or no key would be accepted");
  }
  for (const meter of vars.PRICING.meters) {
    if (meter.units !== "request" && meter.hold_units === undefined) {
      problems.push(`PRICING.meters: meter ${meter.name} reads its units from the response (${meter.units}): it needs hold_units, the most one request may be charged`);
    }
    if (meter.units === "request" && (meter.hold_units !== undefined || meter.hold_units_from !== undefined)) {
      problems.push(`PRICING.meters: meter ${meter.name} charges per request: hold_units and hold_units_from apply only to units read from the response`);
    }
    if (meter.hold_units !== undefined && meter.hold_units * MAX_HOLD_MULTIPLIER * meter.price_cents > MAX_AMOUNT_CENTS * 1_000_000) {
      problems.push(`PRICING.meters: meter ${meter.name}: hold_units × ${MAX_HOLD_MULTIPLIER} (the largest hold multiplier) × price_cents is more than the largest amount`);
    }
    if (meter.units === "request" && meter.hold_multiplier_from !== undefined) {
      problems.push(`PRICING.meters: meter ${meter.name} charges per request: hold_multiplier_from applies only to units read from the response`);
    }
    if (!meter.units.startsWith("sse:json:") && meter.include_stream_usage === false) {
      problems.push(`PRICING.meters: meter ${meter.name}: include_stream_usage applies only to sse:json meters`);
    }
    // A client can always keep a stream's usage event from arriving (it hangs up first, or, with
    // include_stream_usage off, does not ask for it): with "zero" that would make the stream free.
    if (meter.units.startsWith("sse:json:") && meter.on_missing_units === "zero") {
      problems.push(`PRICING.meters: meter ${meter.name}: on_missing_units = "zero" is refused for sse:json meters, whose units the client can suppress (use "hold")`);
    }
  }
  if (problems.length) throw new ConfigError(problems);

  const compiled: CompiledMeter[] = vars.PRICING.meters.map((m) => ({
    name: m.name,
    priceMicros: m.price_cents,
    stripeEventName: m.stripe_event_name ?? vars.PRICING.default_stripe_event_name,
    methods: m.methods ? new Set(m.methods) : null,
    pattern: globToRegExp(m.path, vars.PRICING.case_sensitive_paths),
    units: unitSource(m.units),
    holdUnits: m.hold_units ?? null,
    holdFrom: m.hold_units_from ? m.hold_units_from.map(fieldPath) : null,
    holdMultiplierFrom: m.hold_multiplier_from ? fieldPath(m.hold_multiplier_from) : null,
    includeStreamUsage: m.units.startsWith("sse:json:") && m.include_stream_usage,
    onMissingUnits: m.on_missing_units,
  }));
  const fallback: CompiledMeter = {
    name: vars.PRICING.default_meter,
    priceMicros: vars.PRICING.default_price_cents,
    stripeEventName: vars.PRICING.default_stripe_event_name,
    methods: null,
    pattern: /^/,
    units: { kind: "request" },
    holdUnits: null,
    holdFrom: null,
    holdMultiplierFrom: null,
    includeStreamUsage: false,
    onMissingUnits: "hold",
  };
  const originUrl = new URL(vars.ORIGIN_URL);
  return {
    ...vars,
    PRICING: { ...vars.PRICING, compiled, fallback },
    origin: { origin: originUrl.origin, base: originUrl.origin + originUrl.pathname.replace(/\/$/, "") },
    stripeEnabled: vars.STRIPE_SECRET_KEY !== undefined,
    stripeBudget: stripeBudget(vars.STRIPE_BUDGET, vars.STRIPE_SECRET_KEY),
    emailDelivery: vars.MAILCHANNELS_API_KEY ? "mailchannels" : "outbox",
  };
}

const cache = new WeakMap<object, Config>();

/** Validated once per isolate and environment; a bad field throws a ConfigError naming it. */
export function getConfig(env: object): Config {
  let config = cache.get(env);
  if (!config) {
    config = parseConfig(env as Record<string, unknown>);
    cache.set(env, config);
    setLogLevel(config.LOG_LEVEL);
    log.info(
      `payg-edge-gateway: Stripe ${config.stripeEnabled ? "on" : "off (local mode: credits via the admin API)"}; ` +
        `emails ${config.emailDelivery === "mailchannels" ? "via MailChannels" : "kept in the local outbox (no MAILCHANNELS_API_KEY)"}`,
    );
    if (config.emailDelivery === "mailchannels" && config.EMAILS && config.PUBLIC_URL && isLoopback(config.PUBLIC_URL)) {
      log.warn(`PUBLIC_URL is ${config.PUBLIC_URL}: the unsubscribe links in emails lead nowhere for their recipients`);
    }
    if (!config.ORIGIN_SIGNING_SECRET) {
      log.warn("ORIGIN_SIGNING_SECRET is not set: requests to the origin are not signed, so it cannot tell gateway traffic from direct requests.");
    }
    if (!config.KEY_SIGNING_SECRET) {
      log.warn("KEY_SIGNING_SECRET is not set: API keys are issued unsigned, and a key with a made-up customer id is refused only in that customer's object.");
    }
  }
  return config;
}

export function resolveMeter(config: Config, method: string, path: string): CompiledMeter {
  for (const meter of config.PRICING.compiled) {
    if ((meter.methods === null || meter.methods.has(method)) && meter.pattern.test(path)) return meter;
  }
  return config.PRICING.fallback;
}

export function meterByName(config: Config, name: string): CompiledMeter | undefined {
  return name === config.PRICING.fallback.name ? config.PRICING.fallback : config.PRICING.compiled.find((m) => m.name === name);
}
