import { formatCents, formatMoney, microsToWholeCents } from "../../src/money";
import { bucketOf } from "./ledger";
import type { Room } from "./room";

/** The admin API's view of one customer. */
export function summary(room: Room): Record<string, unknown> {
  const a = room.account.row;
  const config = room.config;
  const currency = config.PRICING.currency;
  return {
    customer: { ...room.account.profile(), created_at: a.created_at, updated_at: a.updated_at },
    balance: {
      available_cents: microsToWholeCents(a.balance),
      available_exact_cents: formatCents(a.balance),
      available: formatMoney(a.balance, currency),
      minimum_cents: microsToWholeCents(room.minimumMicros()),
      currency,
      ledger_sum_exact_cents: formatCents(room.ledger.sum()),
    },
    usage_last_24h: room.ledger.usageSince(bucketOf(Date.now() - 86_400_000, config.PRICING.usage_bucket_seconds)),
    ledger_summary: room.ledger.summaryByKind(),
    cohorts: room.cohorts.view(),
    unpaid_invoices: room.invoices.unpaidIds(),
    stripe: room.reports.view(),
    emails: room.emails.view(),
  };
}
