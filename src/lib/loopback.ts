/**
 * Loopback addresses: where plain http is acceptable (a local Stripe or MailChannels stand-in), and
 * what a deployed gateway must not point at. No imports, so scripts/check-bundle.mjs can load this
 * file directly (Node strips the types).
 */

export function isLoopbackUrl(url: string): boolean {
  let host: string;
  try {
    host = new URL(url).hostname.toLowerCase();
  } catch {
    return false;
  }
  if (host === "localhost" || host.endsWith(".localhost") || host === "[::1]") return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** A structured var, given as an object (wrangler.toml) or a JSON string (--var, dashboard). */
function structured(value: unknown): Record<string, unknown> {
  if (typeof value === "string") {
    try {
      return structured(JSON.parse(value));
    } catch {
      return {};
    }
  }
  return value !== null && typeof value === "object" ? (value as Record<string, unknown>) : {};
}

/**
 * What `wrangler deploy --dry-run` warns about before a deploy: the shipped quick-start values that
 * only make sense on a developer's machine, and an emailed top-up link that leads to a POST-only
 * JSON route instead of a page.
 */
export function deployWarnings(vars: Record<string, unknown>): string[] {
  const warnings: string[] = [];
  const origin = vars.ORIGIN_URL;
  if (typeof origin === "string" && isLoopbackUrl(origin)) {
    warnings.push(`warning: ORIGIN_URL is ${origin}, a loopback address: set it to the API this gateway protects before deploying.`);
  }
  const topup = structured(vars.GOVERNANCE).topup_url;
  if (typeof topup === "string") {
    if (isLoopbackUrl(topup)) {
      warnings.push(
        `warning: GOVERNANCE.topup_url is ${topup}, a loopback address: the 402 body and the emails would send customers nowhere. Use https://<your gateway>/portal or your own billing page.`,
      );
    }
    let path = "";
    try {
      path = new URL(topup).pathname.replace(/\/+$/, "").toLowerCase();
    } catch {
      // not a URL: the config validation names it
    }
    if (path.endsWith("/billing/checkout")) {
      warnings.push(`warning: GOVERNANCE.topup_url is ${topup}, the POST-only JSON route /billing/checkout: an emailed link must open a page, e.g. https://<your gateway>/portal.`);
    }
  }
  return warnings;
}
