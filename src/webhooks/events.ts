/**
 * The webhook events the gateway sends to the provider's endpoints: public names, never renamed.
 * Every event's `data` carries `customer_id` and `balance_cents` (the customer's available
 * credit in whole cents, as in the admin API); the rest depends on the type.
 */
export const WEBHOOK_EVENT_TYPES = [
  "customer.balance.low",
  "customer.balance.depleted",
  "customer.balance.restored",
  "customer.payment_failed",
  "credit.expiring",
  "key.cap_reached",
  "topup.succeeded",
  "topup.failed",
  "report.failed",
] as const;

export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** What every event's data holds; filled in by the customer's outbox. */
export interface EventBase {
  customer_id: string;
  /** Available credit, whole cents (rounded toward negative infinity). */
  balance_cents: number;
}

interface BalanceFields {
  minimum_balance_cents: number;
}

/** The type-specific fields of each event's data (the base fields come on top). */
export interface WebhookEventFields {
  /** Entered the low_balance cohort: credit above the minimum fell under the warning threshold. */
  "customer.balance.low": BalanceFields & { threshold_cents: number };
  /** Entered out_of_credits: a default-priced request would now get 402. */
  "customer.balance.depleted": BalanceFields;
  /** Left out_of_credits: requests pass again. */
  "customer.balance.restored": BalanceFields;
  /** Entered payment_failed: a post-paid invoice is unpaid. */
  "customer.payment_failed": { unpaid_invoices: string[] };
  "credit.expiring": { grant_id: string; amount_cents: number; expires_at: number };
  "key.cap_reached": { key_id: string; cap_cents: number };
  "topup.succeeded": { topup_id: string; amount_cents: number };
  "topup.failed": { topup_id: string; amount_cents: number; reason: string };
  /** A Stripe report refused for good; `amount` is cents, or a meter quantity when `kind` is meter_event. */
  "report.failed": { report_id: string; kind: string; amount: number; meter: string | null; error: string };
}

export type WebhookEventData<T extends WebhookEventType> = EventBase & WebhookEventFields[T];

/** An event as the customer object hands it to the dispatcher: `body` is the exact JSON sent. */
export interface OutboundEvent {
  id: string;
  type: WebhookEventType;
  customerId: string;
  body: string;
}
