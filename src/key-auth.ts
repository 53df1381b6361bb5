import type { Config } from "./config";
import { ApiError } from "./errors";
import { apiKeyFrom, keyMacMatches, parseApiKey, sha256Hex } from "./keys";

export const UNKNOWN_KEY = "Unknown or revoked API key.";

/**
 * The worker's half of API key authentication, before any Durable Object is touched: the key's
 * shape and, with KEY_SIGNING_SECRET, its mac. A forged customer id stops here. What passes still
 * has to match a stored hash in the customer's object.
 */
export async function authenticateApiKey(headers: Headers, config: Config): Promise<{ customerId: string; keyHash: string }> {
  return authenticateKey(apiKeyFrom(headers), config);
}

/** The same check for a key given some other way (the portal's sign-in form). */
export async function authenticateKey(key: string | null, config: Config): Promise<{ customerId: string; keyHash: string }> {
  if (!key) throw new ApiError("unauthorized", "An API key is required: Authorization: Bearer <key> or X-API-Key: <key>.");
  const parsed = parseApiKey(key);
  if (!parsed) throw new ApiError("invalid_api_key", UNKNOWN_KEY);
  const secret = config.KEY_SIGNING_SECRET;
  // Without the secret nothing can be checked here; the object's hash lookup still decides.
  if (secret !== undefined) {
    const valid = parsed.mac === null ? config.ACCEPT_UNSIGNED_KEYS : await keyMacMatches(parsed, secret);
    if (!valid) throw new ApiError("invalid_api_key", UNKNOWN_KEY);
  }
  return { customerId: parsed.customerId, keyHash: await sha256Hex(key) };
}
