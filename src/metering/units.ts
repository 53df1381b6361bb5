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

/**
 * The hold for a request: the number at `path` in its JSON body (e.g. max_tokens), capped by the
 * meter's hold_units, which also applies when the request does not say. Use it only with a field
 * the origin enforces: units past the hold are recorded as over_hold, never charged.
 */
export function holdFromRequest(body: ArrayBuffer | null, path: readonly string[] | null, holdUnits: number): number {
  if (!path || !body) return holdUnits;
  const asked = unitsInJson(new TextDecoder().decode(body), path);
  return asked === null ? holdUnits : Math.min(asked, holdUnits);
}
