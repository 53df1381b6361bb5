/**
 * The Stripe call budget as its callers see it. The tokens live in the directory shards' memory
 * (durable-objects/directory/budget.ts): a caller asks its shard once for the calls it is about to
 * make (one RPC per batch of calls, never per call), spends them through a StripePermit, and every
 * HTTP request the Stripe SDK sends takes one of them (stripe-client.ts). A request with no token
 * left never leaves: the SDK gets a 429 of our own (BUDGET_SPENT_CODE) that it does not retry.
 */

/** Interactive calls (Checkout) may use the share background work leaves alone. */
export type BudgetPriority = "background" | "interactive";

/** Calls wanted, per endpoint (endpointOf). */
export interface BudgetAsk {
  priority: BudgetPriority;
  calls: Record<string, number>;
}

/** How often usage is reported while customers due outnumber the budget (null: every cycle). */
export interface ReportBatching {
  minReportMicros: number;
  maxReportDelayMs: number;
}

export interface BudgetGrant {
  calls: Record<string, number>;
  /** When more is likely to be free, if not everything asked for was granted (0 otherwise). */
  retryAfterMs: number;
  batching: ReportBatching | null;
}

/** Where a permit takes its tokens from: one directory shard. */
export interface BudgetSource {
  takeStripeCalls(ask: BudgetAsk): Promise<BudgetGrant> | BudgetGrant;
  stripeRateLimited(): Promise<void> | void;
}

/** The code of the 429 a call gets when the budget has no token for it (it never reached Stripe). */
export const BUDGET_SPENT_CODE = "payg_budget_spent";

export const METER_EVENTS_ENDPOINT = "POST /v1/billing/meter_events";

/** Path segments after these name one object: `POST /v1/customers/:id/balance_transactions` is one endpoint whatever the customer. */
const COLLECTIONS = new Set([
  "customers",
  "payment_intents",
  "charges",
  "sessions",
  "refunds",
  "events",
  "disputes",
  "balance_transactions",
  "payment_methods",
  "meters",
  "invoices",
]);

/** One endpoint, as Stripe counts its per-endpoint limit: the method and the path with object ids left out. */
export function endpointOf(method: string, path: string): string {
  const segments = path.split("?")[0]!.split("/");
  return `${method.toUpperCase()} ${segments.map((s, i) => (i > 0 && COLLECTIONS.has(segments[i - 1]!) && s !== "" ? ":id" : s)).join("/")}`;
}

/** The endpoints the gateway calls, by what they do. */
export const ENDPOINTS = {
  balanceTransactionCreate: "POST /v1/customers/:id/balance_transactions",
  balanceTransactionList: "GET /v1/customers/:id/balance_transactions",
  customerRetrieve: "GET /v1/customers/:id",
  paymentIntentCreate: "POST /v1/payment_intents",
  paymentIntentList: "GET /v1/payment_intents",
  checkoutSessionCreate: "POST /v1/checkout/sessions",
  chargeRetrieve: "GET /v1/charges/:id",
  refundList: "GET /v1/refunds",
  v2EventRetrieve: "GET /v2/core/events/:id",
  meterEventCreate: METER_EVENTS_ENDPOINT,
} as const;

/**
 * The calls one caller may still make: granted by its shard in batches. `take` spends one for a
 * request about to leave; with none left for that endpoint it asks the shard for one more (a
 * lookup that needs a second page), and says no if the shard has none.
 */
export class StripePermit {
  private readonly left = new Map<string, number>();
  private rateLimitedReported = false;
  /** Calls the SDK actually sent (answered or not). */
  sent = 0;
  /** Calls refused here for want of a token (they never reached Stripe). */
  refused = 0;
  retryAfterMs = 0;
  batching: ReportBatching | null = null;

  constructor(
    private readonly source: BudgetSource,
    readonly priority: BudgetPriority,
  ) {}

  /** Asks the shard for these calls in one RPC; adds what it grants. Returns the grant. */
  async reserve(calls: Record<string, number>): Promise<BudgetGrant> {
    const wanted = Object.fromEntries(Object.entries(calls).filter(([, n]) => n > 0));
    const grant = await this.source.takeStripeCalls({ priority: this.priority, calls: wanted });
    for (const [endpoint, n] of Object.entries(grant.calls)) this.left.set(endpoint, (this.left.get(endpoint) ?? 0) + n);
    this.retryAfterMs = grant.retryAfterMs;
    this.batching = grant.batching;
    return grant;
  }

  /** What of `calls` this permit does not hold yet. */
  missing(calls: Record<string, number>): Record<string, number> {
    return Object.fromEntries(Object.entries(calls).flatMap(([endpoint, n]) => (n > (this.left.get(endpoint) ?? 0) ? [[endpoint, n - (this.left.get(endpoint) ?? 0)]] : [])));
  }

  /** Calls left for an endpoint. */
  has(endpoint: string, n = 1): boolean {
    return (this.left.get(endpoint) ?? 0) >= n;
  }

  async take(endpoint: string): Promise<boolean> {
    if (!this.has(endpoint)) await this.reserve({ [endpoint]: 1 });
    const left = this.left.get(endpoint) ?? 0;
    if (left < 1) {
      this.refused++;
      return false;
    }
    this.left.set(endpoint, left - 1);
    this.sent++;
    return true;
  }

  /** Stripe answered 429: the shard shrinks the budget for a while (told once per permit). */
  async rateLimited(): Promise<void> {
    if (this.rateLimitedReported) return;
    this.rateLimitedReported = true;
    await this.source.stripeRateLimited();
  }
}
