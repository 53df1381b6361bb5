import type { z } from "zod";
import { COHORTS, type Cohort, EMAIL_NOTICES, type EmailNotice, type Pricing, Vars } from "./config-schema";
import { emailConfigProblems, isLoopback } from "./email/config-checks";
import { log, setLogLevel } from "./log";
import { type CompiledMeter, compileMeter, fallbackMeter, meterProblems } from "./meters";
import { MICROS_PER_CENT } from "./money";
import { paymentsProblems } from "./payments-config";
import { NOTICE_MERGE_TAGS, unknownMergeTags } from "./template";

export { type CompiledMeter, MAX_HOLD_MULTIPLIER, type UnitSource } from "./meters";
export { COHORTS, type Cohort, EMAIL_NOTICES, type EmailNotice };

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
  problems.push(...meterProblems(vars.PRICING));
  problems.push(...emailConfigProblems(vars));
  problems.push(...paymentsProblems(vars));
  if ((vars.STRIPE_SECRET_KEY === undefined) !== (vars.STRIPE_WEBHOOK_SECRET === undefined)) {
    problems.push("STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET: set both secrets or neither");
  }
  if (!vars.ACCEPT_UNSIGNED_KEYS && vars.KEY_SIGNING_SECRET === undefined) {
    problems.push("ACCEPT_UNSIGNED_KEYS: false needs KEY_SIGNING_SECRET, or no key would be accepted");
  }
  if (problems.length) throw new ConfigError(problems);

  const compiled = vars.PRICING.meters.map((m) => compileMeter(m, vars.PRICING));
  const fallback = fallbackMeter(vars.PRICING);
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
