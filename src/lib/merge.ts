import type { Config } from "./config";
import type { CustomerProfile } from "./customer";
import { formatCents, formatMoney, microsToWholeCents } from "./money";
import { firstName, type MergeValues } from "./template";

/** The customer portal: <PUBLIC_URL>/portal, or the top-up page where PUBLIC_URL is not set. */
export function portalUrl(config: Config): string {
  return config.PUBLIC_URL ? `${config.PUBLIC_URL.replace(/\/+$/, "")}/portal` : config.GOVERNANCE.topup_url;
}

export function mergeValues(
  config: Config,
  customer: Pick<CustomerProfile, "id" | "name" | "email">,
  amounts: { balanceMicros: number; minimumMicros: number; priceMicros: number; expiringSoonMicros?: number; keyCapCents?: number | null },
): MergeValues {
  const currency = config.PRICING.currency;
  return {
    "customer.id": customer.id,
    "customer.name": customer.name ?? "",
    "customer.first_name": firstName(customer.name) || "there",
    "customer.email": customer.email ?? "",
    "balance.available": formatMoney(amounts.balanceMicros, currency),
    "balance.available_cents": microsToWholeCents(amounts.balanceMicros),
    "balance.minimum": formatMoney(amounts.minimumMicros, currency),
    "balance.minimum_cents": microsToWholeCents(amounts.minimumMicros),
    "request.price": formatMoney(amounts.priceMicros, currency),
    "request.price_cents": formatCents(amounts.priceMicros),
    topup_url: config.GOVERNANCE.topup_url,
    "credit.expiring_soon": formatMoney(amounts.expiringSoonMicros ?? 0, currency),
    "key.cap": amounts.keyCapCents == null ? "" : formatMoney(amounts.keyCapCents * 1_000_000, currency),
    portal_url: portalUrl(config),
  };
}
