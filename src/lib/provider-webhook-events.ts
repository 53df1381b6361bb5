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
  "auto_topup.updated",
  "auto_topup.paused",
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

/** Auto top-up's settings as `auto_topup.updated` shows them (whole cents, seconds). */
export interface AutoTopUpEventSettings {
  enabled: boolean;
  threshold_cents: number;
  amount_cents: number;
  monthly_cap_cents: number;
  min_interval_seconds: number;
  max_per_day: number;
  /** Set while paused: a Stripe failure code, or dispute, refund, below_threshold, no_saved_card, invalid_settings. */
  paused_reason: string | null;
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
  /** The auto top-up settings changed (on, off, other amounts, a pause lifted); null: never set before. */
  "auto_topup.updated": { previous: AutoTopUpEventSettings | null; current: AutoTopUpEventSettings | null };
  /** Auto top-up paused; `topup_id` is the top-up whose payment failed, null for the other reasons. */
  "auto_topup.paused": { reason: string; topup_id: string | null };
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
