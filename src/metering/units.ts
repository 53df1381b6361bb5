/**
 * Reading the billed quantity of a request from its response (or its hold from the request).
 * Units are whole numbers: a value that is not a non-negative safe integer is unreadable, and the
 * meter's on_missing_units applies.
 */

export function asUnits(value: unknown): number | null {
  const n = typeof value === "string" && /^\d{1,15}$/.test(value.trim()) ? Number(value.trim()) : value;
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0 ? n : null;
}

/** The value at a dotted path of a parsed JSON document, as units. */
export function unitsAt(document: unknown, path: readonly string[]): number | null {
  let node: unknown = document;
  for (const part of path) {
    if (node === null || typeof node !== "object" || Array.isArray(node) || !Object.hasOwn(node, part)) return null;
    node = (node as Record<string, unknown>)[part];
  }
  return asUnits(node);
}

export function unitsInJson(text: string, path: readonly string[]): number | null {
  try {
    return unitsAt(JSON.parse(text), path);
  } catch {
    return null;
  }
}

/** A request body as a JSON object, or null (no body, not JSON, not an object). */
export function jsonObjectOf(body: ArrayBuffer | null): Record<string, unknown> | null {
  if (!body || body.byteLength === 0) return null;
  try {
    const value: unknown = JSON.parse(new TextDecoder().decode(body));
    return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * The hold for a request, in units: the largest of the request's limit fields (hold_units_from,
 * e.g. max_completion_tokens and max_tokens, which an origin may obey in either order), capped by
 * the meter's hold_units (also the hold when the request names none), times the multiplier field
 * (hold_multiplier_from, e.g. n completions), and never less than one unit: a priced request that
 * cannot afford one unit is refused before the origin hears of it. Units past the hold are still
 * charged when the response reports them.
 */
export function holdUnitsFor(
  request: Record<string, unknown> | null,
  meter: { holdUnits: number | null; holdFrom: readonly (readonly string[])[] | null; holdMultiplierFrom: readonly string[] | null },
  maxMultiplier: number,
): number {
  const cap = meter.holdUnits!;
  let asked: number | null = null;
  for (const path of meter.holdFrom ?? []) {
    const units = request ? unitsAt(request, path) : null;
    if (units !== null && (asked === null || units > asked)) asked = units;
  }
  const multiplier = meter.holdMultiplierFrom && request ? unitsAt(request, meter.holdMultiplierFrom) : null;
  const perRequest = asked === null ? cap : Math.min(asked, cap);
  return Math.max(1, perRequest * Math.min(Math.max(multiplier ?? 1, 1), maxMultiplier));
}

/**
 * A streamed OpenAI-style request (`"stream": true`) forwarded with `stream_options.include_usage`
 * set, so the origin always sends the usage chunk the meter reads; `clientAsked` says whether the
 * client asked for it itself (if not, the gateway takes that chunk out of what the client gets).
 * Null when the request is not streamed.
 */
export function withStreamUsage(request: Record<string, unknown> | null): { body: string; clientAsked: boolean } | null {
  if (request?.stream !== true) return null;
  const options =
    request.stream_options !== null && typeof request.stream_options === "object" && !Array.isArray(request.stream_options)
      ? (request.stream_options as Record<string, unknown>)
      : {};
  return { body: JSON.stringify({ ...request, stream_options: { ...options, include_usage: true } }), clientAsked: options.include_usage === true };
}
