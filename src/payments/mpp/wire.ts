/*
 * The Payment HTTP authentication scheme on the wire (draft-ryan-httpauth-payment; the text in
 * tempoxyz/mpp-specs specs/core/draft-httpauth-payment-00.md, the Stripe method in
 * specs/methods/stripe/draft-stripe-charge-00.md). A challenge is `WWW-Authenticate: Payment`
 * auth-params (RFC 9110 §11.2); its `request` and the credential and receipt are base64url
 * (no padding) of JSON, the request canonical per RFC 8785 (JCS) so a client that re-serializes
 * it echoes the same string.
 */

import { ApiError } from "../../lib/errors";

export const WWW_AUTHENTICATE = "www-authenticate";
export const PAYMENT_RECEIPT = "payment-receipt";
/** Where the credential comes when `Authorization` keeps the API key (the challenge's `header` parameter, as mppx sends it). */
export const PAYMENT_AUTHORIZATION = "payment-authorization";
export const PROBLEM_BASE = "https://paymentauth.org/problems/";

/** The decoded `request` of a Stripe charge challenge (draft-stripe-charge-00 §Request). */
export interface StripeChargeRequest {
  amount: string;
  currency: string;
  description?: string;
  methodDetails: { networkId: string; paymentMethodTypes: string[] };
}

/** A challenge's parameters, as sent and as echoed in a credential; `request` and `opaque` are the wire strings. */
export interface Challenge {
  id: string;
  realm: string;
  method: string;
  intent: string;
  request: string;
  expires?: string;
  digest?: string;
  description?: string;
  header?: string;
  opaque?: string;
}

export interface Credential {
  challenge: Challenge;
  source?: string;
  payload: { spt: string; externalId?: string };
}

export interface Receipt {
  status: "success";
  method: "stripe";
  timestamp: string;
  reference: string;
}

const encoder = new TextEncoder();

export function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromBase64url(text: string): string | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return null;
  try {
    const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
  } catch {
    return null;
  }
}

/** RFC 8785 for what the gateway sends: strings, integers, arrays and objects (keys in UTF-16 order). */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value)
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export const encodeJson = (value: unknown) => base64url(encoder.encode(canonicalJson(value)));

export function decodeJson(text: string): unknown {
  const json = fromBase64url(text);
  if (json === null) return undefined;
  try {
    return JSON.parse(json);
  } catch {
    return undefined;
  }
}

const quoted = (value: string) => `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;

/** The WWW-Authenticate value: the draft's order (id, realm, method, intent, request, then the optional ones). */
export function serializeChallenge(challenge: Challenge): string {
  const names = ["id", "realm", "method", "intent", "request", "description", "digest", "expires", "header", "opaque"] as const;
  const params = names.filter((name) => challenge[name] !== undefined).map((name) => `${name}=${quoted(challenge[name]!)}`);
  return `Payment ${params.join(", ")}`;
}

const CHALLENGE_KEYS = new Set(["id", "realm", "method", "intent", "request", "expires", "digest", "description", "header", "opaque"]);

/**
 * A credential (`Payment <base64url JSON>`, the first Payment item of a comma list): its
 * challenge echo and payload, or null when it is not one. Unknown fields are ignored, as the
 * draft requires.
 */
export function parseCredential(value: string): Credential | null {
  const item = value
    .split(",")
    .map((part) => part.trim())
    .find((part) => /^Payment\s+/i.test(part));
  if (!item) return null;
  const parsed = decodeJson(item.replace(/^Payment\s+/i, "").trim()) as { challenge?: unknown; source?: unknown; payload?: unknown } | undefined;
  if (!parsed || typeof parsed !== "object") return null;
  const { challenge, payload, source } = parsed;
  if (!challenge || typeof challenge !== "object" || !payload || typeof payload !== "object") return null;
  const echo: Record<string, string> = {};
  for (const [key, field] of Object.entries(challenge)) {
    if (!CHALLENGE_KEYS.has(key)) continue;
    if (typeof field !== "string") return null;
    echo[key] = field;
  }
  if (!echo.id || !echo.realm || !echo.method || !echo.intent || echo.request === undefined) return null;
  const { spt, externalId } = payload as { spt?: unknown; externalId?: unknown };
  if (typeof spt !== "string" || !/^spt_[A-Za-z0-9_]{1,200}$/.test(spt)) return null;
  return {
    challenge: echo as unknown as Challenge,
    ...(typeof source === "string" ? { source } : {}),
    payload: { spt, ...(typeof externalId === "string" ? { externalId } : {}) },
  };
}

/**
 * The credential a request carries (`Payment-Authorization`, or a Payment item of `Authorization`),
 * null without one. Several different credentials are refused with 400, as the draft says servers
 * SHOULD (§Multiple Payment Options): the gateway will not guess which payment the client meant.
 */
export function credentialOf(headers: Headers): string | null {
  const dedicated = (headers.get(PAYMENT_AUTHORIZATION) ?? "").split(",");
  const inAuthorization = (headers.get("authorization") ?? "").split(",").filter((part) => /^\s*Payment\s+/i.test(part));
  // Whatever Payment-Authorization holds is meant as a credential (a malformed one gets its problem).
  const items = [...dedicated, ...inAuthorization].map((part) => part.trim().replace(/^Payment\s+/i, "Payment ")).filter(Boolean);
  const distinct = [...new Set(items)];
  if (distinct.length > 1)
    throw new ApiError("invalid_request", `The request carries ${distinct.length} different Payment credentials; send exactly one, for the challenge you chose.`);
  return distinct[0] ?? null;
}

/** RFC 3339 in UTC to the second, as the draft's examples write it. */
export const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
