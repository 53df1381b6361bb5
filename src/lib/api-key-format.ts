import { hmacHex } from "../verify/payg-signature";
import { type KeyPurpose, purposeMac } from "./derived-keys";

/**
 * API keys carry the customer id so the worker can route straight to that customer's Durable
 * Object without a lookup: `payg_<customerId>.<secret>.<mac>`. Customer ids never contain ".", and
 * the secret is 256 random bits, so a plain SHA-256 is a safe hash to store.
 *
 * The mac (128 bits, hex) is an HMAC-SHA256 of `payg_<customerId>.<secret>` under the API key
 * key derived from KEY_SIGNING_SECRET: the worker checks it before any object is touched, so a
 * made-up customer id never starts one. Keys issued before keys were signed (or without the
 * secret) have no mac; only the object can check those. Portal link tokens have the same shape
 * without the prefix, signed under a key of their own, so neither passes as the other.
 */
export const CUSTOMER_ID = /^[A-Za-z0-9_-]{1,64}$/;
const KEY = /^(payg_([A-Za-z0-9_-]{1,64})\.[A-Za-z0-9_-]{43})(?:\.([0-9a-f]{32}))?$/;
const MAC_HEX_CHARS = 32;

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function keyMac(signingSecret: string, purpose: "api-key" | "portal-link", body: string): Promise<string> {
  return (await purposeMac(signingSecret, purpose satisfies KeyPurpose, body)).slice(0, MAC_HEX_CHARS);
}

/** How API keys were signed before each purpose had a key of its own (KEY_SIGNING_SECRET itself): keys issued then keep working. */
async function legacyKeyMac(signingSecret: string, body: string): Promise<string> {
  return (await hmacHex(signingSecret, body)).slice(0, MAC_HEX_CHARS);
}

async function signedToken(body: string, purpose: "api-key" | "portal-link", signingSecret?: string): Promise<string> {
  return signingSecret ? `${body}.${await keyMac(signingSecret, purpose, body)}` : body;
}

const randomSecret = () => base64url(crypto.getRandomValues(new Uint8Array(32)));

/** A new key; signed when a signing secret is given. */
export async function generateApiKey(customerId: string, signingSecret?: string): Promise<{ key: string; prefix: string; signed: boolean }> {
  const key = await signedToken(`payg_${customerId}.${randomSecret()}`, "api-key", signingSecret);
  return { key, prefix: key.slice(0, key.indexOf(".") + 5), signed: Boolean(signingSecret) };
}

/** A new portal link token `<customerId>.<secret>[.<mac>]`; signed when a signing secret is given. */
export function generatePortalLinkToken(customerId: string, signingSecret?: string): Promise<string> {
  return signedToken(`${customerId}.${randomSecret()}`, "portal-link", signingSecret);
}

export function newId(prefix: string): string {
  return `${prefix}_${base64url(crypto.getRandomValues(new Uint8Array(12)))}`;
}

export function parseApiKey(key: string): { customerId: string; body: string; mac: string | null } | null {
  const match = KEY.exec(key);
  return match ? { customerId: match[2]!, body: match[1]!, mac: match[3] ?? null } : null;
}

export function parsePortalLinkToken(token: string): { customerId: string; body: string; mac: string | null } | null {
  const parsed = parseApiKey(`payg_${token}`);
  return parsed && { ...parsed, body: parsed.body.slice("payg_".length) };
}

/** Whether a signed key's mac is the one KEY_SIGNING_SECRET gives, now or before keys had their own (compared in constant time). */
export async function keyMacMatches(parsed: { body: string; mac: string | null }, signingSecret: string): Promise<boolean> {
  if (parsed.mac === null) return false;
  if (await timingSafeEqualStrings(parsed.mac, await keyMac(signingSecret, "api-key", parsed.body))) return true;
  return timingSafeEqualStrings(parsed.mac, await legacyKeyMac(signingSecret, parsed.body));
}

/** Whether a portal link's mac is the one KEY_SIGNING_SECRET gives links (links are short-lived: no earlier derivation is accepted). */
export async function portalLinkMacMatches(parsed: { body: string; mac: string | null }, signingSecret: string): Promise<boolean> {
  return parsed.mac !== null && timingSafeEqualStrings(parsed.mac, await keyMac(signingSecret, "portal-link", parsed.body));
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

export async function sha256Hex(value: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(value)));
  let hex = "";
  for (const byte of digest) hex += HEX[byte];
  return hex;
}

/** Constant-time string comparison: both sides are hashed first so lengths never leak. */
export async function timingSafeEqualStrings(a: string, b: string): Promise<boolean> {
  const encoder = new TextEncoder();
  const [ha, hb] = await Promise.all([crypto.subtle.digest("SHA-256", encoder.encode(a)), crypto.subtle.digest("SHA-256", encoder.encode(b))]);
  return crypto.subtle.timingSafeEqual(ha, hb);
}

/** The key from `Authorization: Bearer <key>` or `X-API-Key: <key>`. */
export function apiKeyFrom(headers: Headers): string | null {
  const auth = headers.get("authorization");
  // A Payment credential (the Payment HTTP authentication scheme) in Authorization leaves the key to X-API-Key.
  if (auth && !/^Payment\s/i.test(auth)) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return match ? match[1]! : null;
  }
  return headers.get("x-api-key")?.trim() || null;
}
