/**
 * Verifies what payg-edge-gateway signs: the requests it forwards to your origin
 * (`X-Payg-Signature` on every request, with ORIGIN_SIGNING_SECRET set) and the webhooks it sends
 * to your endpoints (`X-Payg-Signature` on each delivery, with the endpoint's secret).
 *
 * Copy this one file into your origin or webhook receiver: it has no imports and needs only Web
 * Crypto (Workers, Deno, Bun, browsers, Node.js 20+).
 *
 * Header: `X-Payg-Signature: t=<unix seconds>,v1=<hex>[,v2=<hex>]`, each an HMAC-SHA256 with your
 * secret.
 * - Forwarded requests: v1 signs `<t>.<METHOD>.<path and query>.<X-Payg-Customer-Id>.<X-Request-Id>`;
 *   v2 signs `<the v1 string>.<X-Payg-Client-Ip>`, so the client IP can be trusted too.
 * - Webhooks: v1 signs `<t>.<raw request body>`. Dedupe deliveries on the event `id`
 *   (also in `X-Payg-Event-Id`): a delivery may arrive more than once.
 * Reject a timestamp more than 5 minutes from your clock (replays).
 */

export const TOLERANCE_SECONDS = 300;

export type Verification<T> = ({ ok: true } & T) | { ok: false; reason: string };

export interface SignatureHeader {
  t: number;
  v1: string[];
  v2: string[];
}

const encoder = new TextEncoder();

async function hmacKey(secret: string, usage: "sign" | "verify"): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [usage]);
}

/** Hex HMAC-SHA256 of `payload` under `secret`. */
export async function hmacHex(secret: string, payload: string): Promise<string> {
  const signature = await crypto.subtle.sign("HMAC", await hmacKey(secret, "sign"), encoder.encode(payload));
  return [...new Uint8Array(signature)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Constant-time check of a hex HMAC (Web Crypto's verify compares in constant time). */
async function matches(secret: string, payload: string, hex: string): Promise<boolean> {
  if (!/^[0-9a-f]{64}$/.test(hex)) return false;
  const bytes = new Uint8Array(hex.match(/../g)!.map((h) => parseInt(h, 16)));
  return crypto.subtle.verify("HMAC", await hmacKey(secret, "verify"), bytes, encoder.encode(payload));
}

export function parseSignatureHeader(header: string | null | undefined): SignatureHeader | null {
  if (!header) return null;
  const parsed: SignatureHeader = { t: NaN, v1: [], v2: [] };
  for (const part of header.split(",")) {
    const [key, value] = part.trim().split("=", 2);
    if (key === "t" && value && /^\d{1,12}$/.test(value)) parsed.t = Number(value);
    else if ((key === "v1" || key === "v2") && value) parsed[key].push(value.toLowerCase());
  }
  return Number.isFinite(parsed.t) && parsed.v1.length > 0 ? parsed : null;
}

/** The string v1 signs on a forwarded request. */
export function originPayload(t: number, method: string, pathAndQuery: string, customerId: string, requestId: string): string {
  return `${t}.${method.toUpperCase()}.${pathAndQuery}.${customerId}.${requestId}`;
}

/** The string v1 signs on a webhook delivery. */
export function webhookPayload(t: number, rawBody: string): string {
  return `${t}.${rawBody}`;
}

function fresh(t: number, now: number, tolerance: number): boolean {
  return Math.abs(Math.floor(now / 1000) - t) <= tolerance;
}

async function anyMatches(secret: string, payload: string, candidates: string[]): Promise<boolean> {
  for (const candidate of candidates) if (await matches(secret, payload, candidate)) return true;
  return false;
}

export interface VerifyOptions {
  /** Milliseconds since the epoch; defaults to Date.now(). */
  now?: number;
  toleranceSeconds?: number;
}

/**
 * Checks that a request really came through the gateway: the signature, its age, and (when the
 * gateway sent `X-Payg-Client-Ip`) the v2 signature over the client IP too.
 */
export async function verifyOriginRequest(
  request: Request,
  secret: string,
  options: VerifyOptions = {},
): Promise<Verification<{ customerId: string; requestId: string; clientIp: string | null }>> {
  const header = parseSignatureHeader(request.headers.get("x-payg-signature"));
  if (!header) return { ok: false, reason: "missing or malformed X-Payg-Signature" };
  if (!fresh(header.t, options.now ?? Date.now(), options.toleranceSeconds ?? TOLERANCE_SECONDS)) {
    return { ok: false, reason: "signature timestamp outside the tolerance" };
  }
  const customerId = request.headers.get("x-payg-customer-id") ?? "";
  const requestId = request.headers.get("x-request-id") ?? "";
  const url = new URL(request.url);
  const payload = originPayload(header.t, request.method, url.pathname + url.search, customerId, requestId);
  if (!(await anyMatches(secret, payload, header.v1))) return { ok: false, reason: "signature does not match" };
  const clientIp = request.headers.get("x-payg-client-ip");
  if (clientIp !== null && !(await anyMatches(secret, `${payload}.${clientIp}`, header.v2))) {
    return { ok: false, reason: "client IP signature (v2) does not match" };
  }
  return { ok: true, customerId, requestId, clientIp };
}

/** Checks a webhook delivery on its raw body; returns the parsed event. */
export async function verifyWebhook(
  rawBody: string,
  signatureHeader: string | null | undefined,
  secret: string,
  options: VerifyOptions = {},
): Promise<Verification<{ event: { id: string; type: string; created: number; data: Record<string, unknown> } }>> {
  const header = parseSignatureHeader(signatureHeader);
  if (!header) return { ok: false, reason: "missing or malformed X-Payg-Signature" };
  if (!fresh(header.t, options.now ?? Date.now(), options.toleranceSeconds ?? TOLERANCE_SECONDS)) {
    return { ok: false, reason: "signature timestamp outside the tolerance" };
  }
  if (!(await anyMatches(secret, webhookPayload(header.t, rawBody), header.v1))) return { ok: false, reason: "signature does not match" };
  try {
    return { ok: true, event: JSON.parse(rawBody) };
  } catch {
    return { ok: false, reason: "body is not JSON" };
  }
}
