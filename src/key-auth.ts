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
  const known = checkedKeys(config).get(key);
  if (known) return known;
  const parsed = parseApiKey(key);
  if (!parsed) throw new ApiError("invalid_api_key", UNKNOWN_KEY);
  const secret = config.KEY_SIGNING_SECRET;
  // Without the secret nothing can be checked here; the object's hash lookup still decides.
  if (secret !== undefined) {
    const valid = parsed.mac === null ? config.ACCEPT_UNSIGNED_KEYS : await keyMacMatches(parsed, secret);
    if (!valid) throw new ApiError("invalid_api_key", UNKNOWN_KEY);
  }
  const checked = { customerId: parsed.customerId, keyHash: await sha256Hex(key) };
  remember(config, key, checked);
  return checked;
}

/**
 * Keys this isolate has already checked, per configuration: a key's mac and hash never change
 * under one KEY_SIGNING_SECRET, so a returning key costs neither digest again. Only the worker's
 * half is kept: revocation is decided by the object on every request. Bounded; the oldest go first.
 */
const CHECKED_KEYS_LIMIT = 10_000;
const checkedByConfig = new WeakMap<Config, Map<string, { customerId: string; keyHash: string }>>();

function checkedKeys(config: Config): Map<string, { customerId: string; keyHash: string }> {
  let checked = checkedByConfig.get(config);
  if (!checked) checkedByConfig.set(config, (checked = new Map()));
  return checked;
}

function remember(config: Config, key: string, checked: { customerId: string; keyHash: string }): void {
  const keys = checkedKeys(config);
  if (keys.size >= CHECKED_KEYS_LIMIT) keys.delete(keys.keys().next().value!);
  keys.set(key, checked);
}
