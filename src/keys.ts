/**
 * API keys carry the customer id so the worker can route straight to that customer's Durable
 * Object without a lookup: `payg_<customerId>.<secret>`. Customer ids never contain ".", and the
 * secret is 256 random bits, so a plain SHA-256 is a safe hash to store.
 */
export const CUSTOMER_ID = /^[A-Za-z0-9_-]{1,64}$/;
const KEY = /^payg_([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9_-]{43})$/;

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function generateApiKey(customerId: string): { key: string; prefix: string } {
  const secret = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const key = `payg_${customerId}.${secret}`;
  return { key, prefix: key.slice(0, key.indexOf(".") + 5) };
}

export function newId(prefix: string): string {
  return `${prefix}_${base64url(crypto.getRandomValues(new Uint8Array(12)))}`;
}

export function parseApiKey(key: string): { customerId: string } | null {
  const match = KEY.exec(key);
  return match ? { customerId: match[1]! } : null;
}

export async function sha256Hex(value: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(value));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Constant-time string comparison: both sides are hashed first so lengths never leak. */
export async function timingSafeEqualStrings(a: string, b: string): Promise<boolean> {
  const encoder = new TextEncoder();
  const [ha, hb] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(a)),
    crypto.subtle.digest("SHA-256", encoder.encode(b)),
  ]);
  return crypto.subtle.timingSafeEqual(ha, hb);
}

/** The key from `Authorization: Bearer <key>` or `X-API-Key: <key>`. */
export function apiKeyFrom(headers: Headers): string | null {
  const auth = headers.get("authorization");
  if (auth) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return match ? match[1]! : null;
  }
  return headers.get("x-api-key")?.trim() || null;
}
