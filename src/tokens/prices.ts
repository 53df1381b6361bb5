import { ApiError } from "../lib/errors";
import type { CompiledMeter, ModelPrices, TokenCounts, TokenKind, TokenPreset } from "../lib/meters";
import { MAX_AMOUNT_CENTS, MICROS_PER_CENT } from "../lib/money";
import { outputLimit } from "./usage";

/**
 * A tokens meter's request, priced before anything is held: its model's row (400 unknown_model
 * when the table has none) and the most it may cost.
 */
export function tokenHold(meter: CompiledMeter, preset: TokenPreset, request: Record<string, unknown> | null, body: ArrayBuffer | null) {
  if (!request || !body) throw new ApiError("invalid_json", "This endpoint is priced per model and token: the body must be a JSON object with a `model`.");
  const row = modelRow(meter.models, request.model);
  return { preset, row, holdMicros: holdCost(row, body.byteLength, outputLimit(preset, request, meter.holdUnits!)) };
}

/** The models table's row for a request's model (first glob match), or 400 unknown_model. */
export function modelRow(models: readonly ModelPrices[], model: unknown): ModelPrices {
  if (typeof model !== "string" || model === "") throw new ApiError("invalid_request", "This endpoint is priced per model: the request body needs a string `model`.");
  const row = models.find((m) => m.pattern.test(model));
  if (!row)
    throw new ApiError("unknown_model", `The model ${JSON.stringify(model.slice(0, 200))} has no price here; nothing was forwarded or charged.`, { model: model.slice(0, 200) });
  return row;
}

/**
 * What tokens cost at a row's prices, in micro-cents: Σ tokens × micro-cents per million tokens,
 * plus the markup, rounded up once to a whole micro-cent (BigInt: exact at any size).
 */
export function tokensCost(row: ModelPrices, counts: TokenCounts): number {
  let sum = 0n;
  for (const kind of Object.keys(counts) as TokenKind[]) sum += BigInt(counts[kind]) * BigInt(row.perMillion[kind]);
  const total = markedUp(row, sum);
  // A response claiming more than the largest amount is charged that amount (settlement never throws).
  return Number(total > MAX_MICROS ? MAX_MICROS : total);
}

/**
 * The most a request may cost, held before it is forwarded: its input bounded by the body's size
 * (a token is at least one byte of text; an image sent by URL can cost more, and settlement charges
 * what the usage says), at the dearest input kind, plus the output bound at the dearer of output
 * and reasoning (reasoning tokens count against the output limit).
 */
export function holdCost(row: ModelPrices, inputBytes: number, outputTokens: number): number {
  const p = row.perMillion;
  const input = Math.max(p.input, p.cached_input, p.cache_write);
  const output = Math.max(p.reasoning, p.output);
  const sum = BigInt(inputBytes) * BigInt(input) + BigInt(outputTokens) * BigInt(output);
  return Math.max(1, clamp(markedUp(row, sum)));
}

/** Σ tokens × micro-cents per million tokens → micro-cents with the row's markup, rounded up once. */
function markedUp(row: ModelPrices, sum: bigint): bigint {
  const scale = 100n * 1_000_000n;
  return (sum * BigInt(100 + row.markupPercent) + scale - 1n) / scale;
}

const MAX_MICROS = BigInt(MAX_AMOUNT_CENTS) * BigInt(MICROS_PER_CENT);

function clamp(micros: bigint): number {
  if (micros > MAX_MICROS) throw new ApiError("invalid_request", "This request could cost more than the largest amount the gateway holds; lower its output limit.");
  return Number(micros);
}
