/**
 * Path prefixes the gateway keeps for itself (its admin API, webhooks, billing, and the pages it
 * serves). Whatever spelling reaches the proxy, a normalized path under one of them, in any
 * letter case, is refused: never forwarded, never charged. Add a prefix here when the gateway
 * gains a route family.
 */
export const RESERVED_PREFIXES = ["/admin", "/webhooks", "/billing", "/portal", "/dashboard", "/email"] as const;

/** Whether a normalized path is a reserved prefix or lies under one (case-insensitively). */
export function isReserved(normalizedPath: string): boolean {
  const path = normalizedPath.toLowerCase();
  return RESERVED_PREFIXES.some((prefix) => path === prefix || path.startsWith(`${prefix}/`));
}
