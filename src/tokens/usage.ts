import type { TokenCounts, TokenPreset } from "../lib/meters";
import { asUnits } from "../metering/units";

/*
 * Where each API reports its token usage, and the request fields that bound its output, by preset.
 * - openai-chat (platform.openai.com/docs/api-reference/chat/object): usage.prompt_tokens includes
 *   prompt_tokens_details.cached_tokens, usage.completion_tokens includes
 *   completion_tokens_details.reasoning_tokens; streamed, the last chunk carries usage when the
 *   request sets stream_options.include_usage. Output limit max_completion_tokens (or the older
 *   max_tokens) per choice, times n.
 * - openai-responses (platform.openai.com/docs/api-reference/responses/object): usage.input_tokens
 *   includes input_tokens_details.cached_tokens, usage.output_tokens includes
 *   output_tokens_details.reasoning_tokens; streamed, the response.completed event (or
 *   response.incomplete / response.failed) carries the response with its usage. Limit max_output_tokens.
 * - anthropic-messages (docs.anthropic.com/en/api/messages): usage.input_tokens,
 *   cache_read_input_tokens, cache_creation_input_tokens and output_tokens do not overlap;
 *   streamed (docs.anthropic.com/en/docs/build-with-claude/streaming), message_start carries the
 *   message's usage and each message_delta the cumulative counts. Limit max_tokens.
 * Each token is counted once, in exactly one kind.
 */

const ZERO: TokenCounts = { input: 0, cached_input: 0, cache_write: 0, output: 0, reasoning: 0 };

/** The largest output limit read from a request: more would not be a real request's. */
export const MAX_OUTPUT_LIMIT = 100_000_000;

type Json = Record<string, unknown>;
const objectAt = (value: unknown, key: string): Json | null => {
  const node = value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Json)[key] : undefined;
  return node !== null && typeof node === "object" && !Array.isArray(node) ? (node as Json) : null;
};
const count = (node: Json | null, key: string): number | null => (node && key in node ? asUnits(node[key]) : null);

/**
 * The output bound a request names (tokens), or null when it names none (the meter's hold_units
 * applies, times n for openai-chat).
 */
export function outputLimit(preset: TokenPreset, request: Json, fallback: number): number {
  const limit = (...fields: string[]) => {
    const values = fields.map((f) => count(request, f)).filter((n): n is number => n !== null);
    return values.length ? Math.min(Math.max(...values), MAX_OUTPUT_LIMIT) : null;
  };
  if (preset === "openai-chat") {
    const n = Math.min(Math.max(count(request, "n") ?? 1, 1), 128);
    return (limit("max_completion_tokens", "max_tokens") ?? fallback) * n;
  }
  return limit(preset === "openai-responses" ? "max_output_tokens" : "max_tokens") ?? fallback;
}

/** The counts in a usage object as the preset's API reports it; null when it has none readable. */
export function countsOf(preset: TokenPreset, usage: Json | null): TokenCounts | null {
  if (!usage) return null;
  if (preset === "anthropic-messages") {
    const input = count(usage, "input_tokens");
    const output = count(usage, "output_tokens");
    if (input === null || output === null) return null;
    return { ...ZERO, input, output, cached_input: count(usage, "cache_read_input_tokens") ?? 0, cache_write: count(usage, "cache_creation_input_tokens") ?? 0 };
  }
  const [inField, outField, inDetails, outDetails] =
    preset === "openai-chat"
      ? ["prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details"]
      : ["input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details"];
  const input = count(usage, inField);
  const output = count(usage, outField);
  if (input === null || output === null) return null;
  // The totals include their details: what a detail claims past its total is not counted twice.
  const cached = Math.min(count(objectAt(usage, inDetails), "cached_tokens") ?? 0, input);
  const reasoning = Math.min(count(objectAt(usage, outDetails), "reasoning_tokens") ?? 0, output);
  return { ...ZERO, input: input - cached, cached_input: cached, output: output - reasoning, reasoning };
}

/** The usage of a JSON response body. */
export function usageOfBody(preset: TokenPreset, body: unknown): TokenCounts | null {
  return countsOf(preset, objectAt(body, "usage"));
}

/**
 * A streamed response's usage, read event by event (each event's data, parsed): the last usage
 * seen counts; for Anthropic, message_delta's cumulative counts update message_start's.
 */
export class StreamUsage {
  private usage: Json | null = null;
  constructor(private readonly preset: TokenPreset) {}

  see(data: unknown): void {
    if (this.preset === "openai-chat") {
      const usage = objectAt(data, "usage");
      if (usage) this.usage = usage;
    } else if (this.preset === "openai-responses") {
      const usage = objectAt(objectAt(data, "response"), "usage");
      if (usage) this.usage = usage;
    } else {
      const type = (data as { type?: unknown } | null)?.type;
      if (type === "message_start") this.usage = objectAt(objectAt(data, "message"), "usage") ?? this.usage;
      if (type === "message_delta") {
        const delta = objectAt(data, "usage");
        if (delta) this.usage = { ...this.usage, ...Object.fromEntries(Object.entries(delta).filter(([, v]) => v !== null)) };
      }
    }
  }

  counts(): TokenCounts | null {
    return countsOf(this.preset, this.usage);
  }
}
