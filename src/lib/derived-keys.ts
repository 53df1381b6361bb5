import { hmacHex } from "../verify/payg-signature";

/**
 * Every purpose the gateway makes a MAC for. Each gets a key of its own from its secret, so a MAC
 * made for one purpose never verifies as another, whatever the message: a new kind of token adds
 * its purpose here and signs with `purposeMac`.
 */
export type KeyPurpose = "api-key" | "portal-link" | "dashboard-session" | "portal-session" | "unsubscribe" | "payment-challenge";

const encoder = new TextEncoder();
// HKDF's extract step keys its HMAC with this salt, not with the secret: no MAC the gateway ever
// published under a raw secret (the old API key and unsubscribe MACs) can equal a derived key.
const SALT = encoder.encode("payg-edge-gateway derived keys");
const CACHE_LIMIT = 64;
const cache = new Map<string, string>();

/** The key for `purpose` derived from `secret`: HKDF-SHA256 (RFC 5869) with the purpose as its info, as 64 hex characters. */
export async function derivedKey(secret: string, purpose: KeyPurpose): Promise<string> {
  const id = `${purpose}\u0000${secret}`;
  const known = cache.get(id);
  if (known) return known;
  const ikm = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: SALT, info: encoder.encode(`payg-edge-gateway ${purpose} v1`) }, ikm, 256);
  const key = [...new Uint8Array(bits)].map((b) => b.toString(16).padStart(2, "0")).join("");
  // A few secrets per isolate (one configuration): the bound only keeps a changing test setup small.
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  cache.set(id, key);
  return key;
}

/** Hex HMAC-SHA256 of `message` under the key for `purpose` derived from `secret`. */
export async function purposeMac(secret: string, purpose: KeyPurpose, message: string): Promise<string> {
  return hmacHex(await derivedKey(secret, purpose), message);
}
