import type { z } from "zod";
import type { Pricing, TOKEN_PRESETS } from "./config-schema";
import { MAX_AMOUNT_CENTS, MICROS_PER_CENT } from "./money";

/*
 * Meters, compiled from `[[vars.PRICING.meters]]`: which requests each prices, how (per request,
 * per unit read from the response, per MCP tool, per token by model and kind), and the checks
 * that refuse a configuration that could not bill correctly.
 */

type PricingVars = z.infer<typeof Pricing>;
type MeterVars = PricingVars["meters"][number];
export type TokenPreset = (typeof TOKEN_PRESETS)[number];

export type UnitSource =
  | { kind: "request" }
  | { kind: "header"; name: string }
  | { kind: "json"; path: string[] }
  | { kind: "sse_events" }
  | { kind: "sse_json"; path: string[] }
  | { kind: "mcp" }
  | { kind: "tokens"; preset: TokenPreset };

/** The token kinds a tokens meter prices (each token of a response is exactly one of them). */
export const TOKEN_KINDS = ["input", "cached_input", "cache_write", "output", "reasoning"] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

/** Tokens of one request, by kind; each token is counted in exactly one kind. */
export type TokenCounts = Record<TokenKind, number>;

export interface ModelPrices {
  /** The row's `model`, as configured: usage is recorded under it, so a glob row is one line. */
  model: string;
  pattern: RegExp;
  /** Micro-cents per million tokens of each kind (= cents per token × 10⁶; exact integers). */
  perMillion: Record<TokenKind, number>;
  markupPercent: number;
}

export interface CompiledMeter {
  name: string;
  /** Per request, per unit for a meter whose units come from the response, or an MCP meter's price of an unnamed tool. */
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
  /** An sse:json or tokens meter that asks the origin for the usage chunk of a streamed request. */
  includeStreamUsage: boolean;
  onMissingUnits: "hold" | "zero";
  /** `mcp` meters: each tool's price, first match wins. */
  tools: { pattern: RegExp; priceMicros: number }[];
  chargeToolErrors: boolean;
  /** `tokens` meters: prices per model, first match wins. */
  models: ModelPrices[];
  /**
   * Post-paid usage goes to Stripe as the meter's cost in whole cents (the fraction carried to the
   * next report), not as a count of units: its units have no one price (per tool, per model and kind).
   */
  reportsCost: boolean;
}

/** The largest hold multiplier read from a request (OpenAI's `n` is at most 128). */
export const MAX_HOLD_MULTIPLIER = 128;
/** A tokens meter's output bound when the request names none (its `hold_units` default). */
export const DEFAULT_TOKENS_HOLD = 4096;

const fieldPath = (field: string) => field.slice("json:".length).split(".");

/** "/v1/items/*" matches one path segment per "*", "**" matches the rest of the path. */
export function pathGlob(glob: string, caseSensitive: boolean): RegExp {
  const pattern = escapeRegExp(glob)
    .split("\\*\\*")
    .map((part) => part.replaceAll("\\*", "[^/]*"))
    .join(".*");
  return new RegExp(`^${pattern}$`, caseSensitive ? "" : "i");
}

/** A tool or model glob: `*` matches any characters, `/` included. */
export function nameGlob(glob: string): RegExp {
  return new RegExp(`^${escapeRegExp(glob).replaceAll("\\*", ".*")}$`);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function unitSource(m: MeterVars): UnitSource {
  const spec = m.units;
  if (spec === "request") return { kind: "request" };
  if (spec === "sse:events") return { kind: "sse_events" };
  if (spec === "mcp") return { kind: "mcp" };
  if (spec === "tokens") return { kind: "tokens", preset: m.preset! };
  if (spec.startsWith("header:")) return { kind: "header", name: spec.slice("header:".length).toLowerCase() };
  if (spec.startsWith("sse:json:")) return { kind: "sse_json", path: spec.slice("sse:json:".length).split(".") };
  return { kind: "json", path: spec.slice("json:".length).split(".") };
}

/**
 * Whether a meter's post-paid usage is reported as its cost (see CompiledMeter.reportsCost): MCP
 * meters (a tool's price is its own) and tokens meters (by model and kind).
 */
function reportsCost(m: MeterVars): boolean {
  return m.units === "tokens" || m.units === "mcp";
}

export function compileMeter(m: MeterVars, pricing: PricingVars): CompiledMeter {
  const tokens = m.units === "tokens";
  return {
    name: m.name,
    priceMicros: m.price_cents ?? 0,
    stripeEventName: m.stripe_event_name ?? pricing.default_stripe_event_name,
    methods: m.methods ? new Set(m.methods) : null,
    pattern: pathGlob(m.path, pricing.case_sensitive_paths),
    units: unitSource(m),
    holdUnits: m.hold_units ?? (tokens ? DEFAULT_TOKENS_HOLD : null),
    holdFrom: m.hold_units_from ? m.hold_units_from.map(fieldPath) : null,
    holdMultiplierFrom: m.hold_multiplier_from ? fieldPath(m.hold_multiplier_from) : null,
    includeStreamUsage: (m.units.startsWith("sse:json:") || (tokens && m.preset === "openai-chat")) && m.include_stream_usage,
    onMissingUnits: m.on_missing_units,
    tools: (m.tools ?? []).map((t) => ({ pattern: nameGlob(t.name), priceMicros: t.price_cents })),
    chargeToolErrors: m.charge_tool_errors,
    models: (m.models ?? []).map((row) => ({
      model: row.model,
      pattern: nameGlob(row.model),
      perMillion: {
        input: row.input_cents_per_mtok,
        cached_input: row.cached_input_cents_per_mtok ?? row.input_cents_per_mtok,
        cache_write: row.cache_write_cents_per_mtok ?? row.input_cents_per_mtok,
        output: row.output_cents_per_mtok,
        reasoning: row.reasoning_cents_per_mtok ?? row.output_cents_per_mtok,
      },
      markupPercent: row.markup_percent ?? 0,
    })),
    reportsCost: reportsCost(m),
  };
}

export function fallbackMeter(pricing: PricingVars): CompiledMeter {
  return {
    name: pricing.default_meter,
    priceMicros: pricing.default_price_cents,
    stripeEventName: pricing.default_stripe_event_name,
    methods: null,
    pattern: /^/,
    units: { kind: "request" },
    holdUnits: null,
    holdFrom: null,
    holdMultiplierFrom: null,
    includeStreamUsage: false,
    onMissingUnits: "hold",
    tools: [],
    chargeToolErrors: true,
    models: [],
    reportsCost: false,
  };
}

/** What a meter's configuration gets wrong, one message each. */
export function meterProblems(pricing: PricingVars): string[] {
  const problems: string[] = [];
  const meters = pricing.meters;
  const names = new Set<string>();
  for (const meter of meters) {
    if (names.has(meter.name) || meter.name === pricing.default_meter) problems.push(`PRICING.meters: duplicate meter name ${meter.name}`);
    names.add(meter.name);
  }
  // Post-paid usage goes to Stripe meters by event name: one name must mean one price (a cost
  // meter's unit is a cent, so it shares its event only with other cost meters).
  const priceByEvent = new Map<string, number | "cost">([[pricing.default_stripe_event_name, pricing.default_price_cents]]);
  for (const meter of meters.filter((m) => reportsCost(m) || (m.price_cents ?? 0) > 0)) {
    const event = meter.stripe_event_name ?? pricing.default_stripe_event_name;
    const price = reportsCost(meter) ? "cost" : meter.price_cents!;
    const seen = priceByEvent.get(event);
    if (seen !== undefined && seen !== price) {
      problems.push(`PRICING.meters: meter ${meter.name} has another price than other meters reporting to Stripe event ${event}; give it its own stripe_event_name`);
    }
    priceByEvent.set(event, price);
  }
  for (const meter of meters) problems.push(...kindProblems(meter).map((p) => `PRICING.meters: meter ${meter.name}: ${p}`));
  return problems;
}

function kindProblems(m: MeterVars): string[] {
  const problems: string[] = [];
  const perRequest = m.units === "request";
  const mcp = m.units === "mcp";
  const tokens = m.units === "tokens";
  const fromResponse = !perRequest && !mcp && !tokens;
  if (tokens !== (m.price_cents === undefined)) problems.push(tokens ? "a tokens meter is priced by its models table, not price_cents" : "needs price_cents");
  if (fromResponse && m.hold_units === undefined) problems.push(`reads its units from the response (${m.units}): it needs hold_units, the most one request may be charged`);
  if ((perRequest || mcp) && (m.hold_units !== undefined || m.hold_units_from !== undefined || m.hold_multiplier_from !== undefined)) {
    problems.push("hold_units, hold_units_from and hold_multiplier_from apply only to units read from the response");
  }
  if (tokens && (m.hold_units_from !== undefined || m.hold_multiplier_from !== undefined)) {
    problems.push("a tokens meter takes its output limit from the request as its preset says; hold_units_from and hold_multiplier_from do not apply");
  }
  if (m.hold_units !== undefined && m.price_cents !== undefined && m.hold_units * MAX_HOLD_MULTIPLIER * m.price_cents > MAX_AMOUNT_CENTS * MICROS_PER_CENT) {
    problems.push(`hold_units × ${MAX_HOLD_MULTIPLIER} (the largest hold multiplier) × price_cents is more than the largest amount`);
  }
  const streamUsage = m.units.startsWith("sse:json:") || (tokens && m.preset === "openai-chat");
  if (!streamUsage && m.include_stream_usage === false) problems.push("include_stream_usage applies only to sse:json meters and the openai-chat preset");
  // A client can always keep a stream's usage event from arriving (it hangs up first, or, with
  // include_stream_usage off, does not ask for it): with "zero" that would make the stream free.
  if ((m.units.startsWith("sse:json:") || tokens) && m.on_missing_units === "zero") {
    problems.push('on_missing_units = "zero" is refused for meters whose units the client can suppress (sse:json, tokens): use "hold"');
  }
  if (!mcp && (m.tools !== undefined || m.charge_tool_errors === false)) problems.push('tools and charge_tool_errors apply only to units = "mcp"');
  if (mcp && m.methods !== undefined) problems.push("an MCP meter prices every method on its endpoint (POST by JSON-RPC method, GET and DELETE free): drop methods");
  if (!tokens && (m.preset !== undefined || m.models !== undefined)) problems.push('preset and models apply only to units = "tokens"');
  if (tokens && (m.preset === undefined || m.models === undefined)) problems.push("a tokens meter needs a preset and a models table");
  return problems;
}
