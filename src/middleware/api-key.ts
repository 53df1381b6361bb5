import { apiKeyFrom, keyMacMatches, parseApiKey, sha256Hex } from "../lib/api-key-format";
import type { Config } from "../lib/config";
import { ApiError } from "../lib/errors";

export const UNKNOWN_KEY = "Unknown or revoked API key.";

/** A key the worker has checked: whose it is, and the hash its object looks up. */
export type CheckedKey = { customerId: string; keyHash: string };

/**
 * The worker's half of API key authentication, before any Durable Object is touched: the key's
 * shape and, with KEY_SIGNING_SECRET, its mac. A forged customer id stops here. What passes still
 * has to match a stored hash in the customer's object.
 */
export async function authenticateApiKey(headers: Headers, config: Config): Promise<CheckedKey> {
  return authenticateKey(apiKeyFrom(headers), config);
}

/** The same check for a key given some other way (the portal's sign-in form). */
export async function authenticateKey(key: string | null, config: Config): Promise<CheckedKey> {
  if (!key) throw new ApiError("unauthorized", "An API key is required: Authorization: Bearer <key> or X-API-Key: <key>.");
  const checkedKeys = checkedKeysOf(config);
  const known = checkedKeys.get(key);
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
  if (checkedKeys.size >= CHECKED_KEYS_LIMIT) checkedKeys.delete(checkedKeys.keys().next().value!);
  checkedKeys.set(key, checked);
  return checked;
}

/**
 * Keys this isolate has already checked, per configuration: a key's mac and hash never change
 * under one KEY_SIGNING_SECRET, so a returning key costs neither digest again. Only the worker's
 * half is kept: revocation is decided by the object on every request. Bounded; the oldest go first.
 */
const CHECKED_KEYS_LIMIT = 10_000;
const checkedByConfig = new WeakMap<Config, Map<string, CheckedKey>>();

function checkedKeysOf(config: Config): Map<string, CheckedKey> {
  let checked = checkedByConfig.get(config);
  if (!checked) {
    checked = new Map();
    checkedByConfig.set(config, checked);
  }
  return checked;
}
