/**
 * Shared pieces of the Stripe double: the form parser (Stripe / qs bracket notation), ids,
 * Stripe's v1 error shape and the parameter readers every endpoint uses.
 */
import type Stripe from "stripe";

export type Params = Record<string, unknown>;

/**
 * Stripe's v1 error object (`{ error: {...} }`), as the SDK reads it (its StripeRawError). Card
 * errors carry the PaymentIntent / PaymentMethod they are about.
 */
export interface StripeErrorBody {
  type: "invalid_request_error" | "api_error" | "idempotency_error" | "card_error";
  message: string;
  code?: string;
  decline_code?: string;
  param?: string;
  doc_url?: string;
  charge?: string;
  payment_intent?: Stripe.PaymentIntent;
  payment_method?: Stripe.PaymentMethod;
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
      const slot = Array.isArray(container) ? (part === "" ? container.length : Number(part)) : part === "" && HASH_KEYS.has(parentName) ? "" : part;
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
export function canonical(value: unknown): string {
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

export function randomChars(n: number, alphabet = BASE62): string {
  const bytes = new Uint8Array(n);
  crypto.getRandomValues(bytes);
  let out = "";
  for (const b of bytes) out += alphabet[b % alphabet.length];
  return out;
}

export function newId(prefix: string, n = 24): string {
  return prefix + randomChars(n);
}

/**
 * An error answer. `committed`: the request began executing (e.g. a card decline), so Stripe
 * saves the answer under the Idempotency-Key and replays it; validation errors are not saved.
 */
export class ApiError extends Error {
  readonly committed: boolean;
  constructor(
    readonly status: number,
    readonly error: StripeErrorBody,
    opts: { committed?: boolean } = {},
  ) {
    super(error.message);
    this.committed = opts.committed ?? false;
  }
}

export function invalid(message: string, extra: { code?: string; param?: string } = {}, status = 400): ApiError {
  return new ApiError(status, { type: "invalid_request_error", message, ...extra });
}

export function missing(param: string): ApiError {
  return invalid(`Missing required param: ${param}.`, { code: "parameter_missing", param });
}

export function noSuch(kind: string, id: string, param: string, status: number): ApiError {
  return invalid(`No such ${kind}: '${id}'`, { code: "resource_missing", param }, status);
}

export function checkKnown(params: Params, allowed: ReadonlySet<string>): void {
  for (const key of Object.keys(params)) {
    if (!allowed.has(key)) {
      throw invalid(`Received unknown parameter: ${key}`, { code: "parameter_unknown", param: key });
    }
  }
}

export function readString(params: Params, name: string, opts: { required?: boolean; max?: number } = {}): string | undefined {
  const v = params[name];
  if (v === undefined) {
    if (opts.required) throw missing(name);
    return undefined;
  }
  if (typeof v !== "string") throw invalid(`Invalid string: ${JSON.stringify(v)}`, { param: name });
  if (opts.required && v === "") throw missing(name);
  if (opts.max !== undefined && v.length > opts.max) throw tooLong(name, v, opts.max);
  return v;
}

export function parseIntParam(v: unknown, param: string): number {
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

export function readInt(params: Params, name: string, opts: { required?: boolean } = {}): number | undefined {
  const v = params[name];
  if (v === undefined || v === "") {
    if (opts.required) throw missing(name);
    return undefined;
  }
  return parseIntParam(v, name);
}

/** Emptyable string: "" means "unset" (null). */
export function readNullableString(params: Params, name: string): string | null | undefined {
  const v = readString(params, name);
  if (v === undefined) return undefined;
  return v === "" ? null : v;
}

/**
 * Metadata param: `""` clears all keys; a key with value `""` removes that key.
 * Returns the raw instruction map (empty-string values mean "delete").
 */
export function readMetadata(params: Params, name = "metadata"): { clear: boolean; set: Record<string, string> } | undefined {
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

export function applyMetadata(current: Stripe.Metadata, instr: { clear: boolean; set: Record<string, string> }): Stripe.Metadata {
  const next: Stripe.Metadata = instr.clear ? {} : { ...current };
  for (const [k, v] of Object.entries(instr.set)) {
    if (v === "") delete next[k];
    else next[k] = v;
  }
  return next;
}

export function metadataDiff(before: Stripe.Metadata, after: Stripe.Metadata): Record<string, string | null> | undefined {
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

export const clone = <T>(v: T): T => structuredClone(v);

/** Stripe's answer to a string over its maxLength (the message text is the double's wording). */
export function tooLong(param: string, value: string, max: number): ApiError {
  const shown = value.length > 30 ? `${value.slice(0, 30)}...` : value;
  return invalid(`Invalid string: ${shown}; must be at most ${max} characters`, { param });
}

/** Boolean params arrive as the strings "true" / "false" in a form body. */
export function readBoolean(params: Params, name: string): boolean | undefined {
  const v = params[name];
  if (v === undefined) return undefined;
  if (v === "true" || v === true) return true;
  if (v === "false" || v === false) return false;
  throw invalid(`Invalid boolean: ${String(v)}`, { param: name });
}

/** `expand[]` (the SDK sends `expand[0]=a&expand[1]=b`); refuses paths the endpoint cannot expand. */
export function readExpand(params: Params, allowed: readonly string[]): Set<string> {
  const v = params.expand;
  if (v === undefined) return new Set();
  const list = Array.isArray(v) ? v : [v];
  const out = new Set<string>();
  for (const item of list) {
    if (typeof item !== "string") throw invalid("Invalid array", { param: "expand" });
    if (!allowed.includes(item)) throw invalid(`This property cannot be expanded (${item}).`, { param: "expand" });
    out.add(item);
  }
  return out;
}

export function readCurrency(params: Params, name: string, opts: { required?: boolean } = {}): string | undefined {
  const raw = readString(params, name, opts);
  if (raw === undefined) return undefined;
  const currency = raw.toLowerCase();
  if (!/^[a-z]{3}$/.test(currency)) throw invalid(`Invalid currency: ${raw}`, { param: name });
  return currency;
}

export function decodeId(raw: string | undefined): string {
  return decodeURIComponent(raw ?? "");
}

export const DAY_MS = 24 * 60 * 60 * 1000;
