import type { Context } from "hono";
import type { z } from "zod";
import { ApiError } from "./lib/errors";

/** Parses a JSON body against a strict schema: malformed JSON, wrong types and unknown fields are 400s. */
export async function jsonBody<S extends z.ZodType>(c: Context, schema: S): Promise<z.infer<S>> {
  const text = await c.req.text();
  let value: unknown;
  try {
    value = text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    throw new ApiError("invalid_json", "The request body is not valid JSON.");
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`);
    throw new ApiError("invalid_request", problems.join("; "), { problems });
  }
  return parsed.data;
}

export function queryInt(c: Context, name: string, fallback: number, min: number, max: number): number {
  const raw = c.req.query(name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ApiError("invalid_request", `${name} must be a whole number from ${min} to ${max}.`);
  }
  return Number(raw);
}
