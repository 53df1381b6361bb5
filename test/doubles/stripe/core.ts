/**
 * The state every resource family of the Stripe double shares: the clock, the objects, the
 * webhook events (v1 snapshot events) and the thin (v2) events waiting for delivery.
 */
import type Stripe from "stripe";
import { clone, DAY_MS, newId, noSuch } from "./common";

export type EventType = Stripe.Event["type"];
export type EventOf<T extends EventType> = Extract<Stripe.Event, { type: T }>;
export type EventObject<T extends EventType> = EventOf<T>["data"]["object"];

/** What a test payment method does when it is charged (Stripe's test cards, see payments.ts). */
export type CardBehavior = "succeeds" | "declines" | "requires_authentication" | "refund_fails" | "settles_later";

/** The thin event types this double sends (Stripe's event destinations, API v2). */
export type ThinEventType = "v1.billing.meter.error_report_triggered" | "v1.billing.meter.no_meter_found";

/** A meter-event problem found "asynchronously", waiting to be reported as a thin event. */
export interface MeterProblem {
  type: ThinEventType;
  /** An ErrorType code of the SDK's V1BillingMeterErrorReportTriggeredEvent.Data.Reason. */
  code: Stripe.V2.Core.Events.V1BillingMeterErrorReportTriggeredEvent.Data.Reason.ErrorType.Code;
  message: string;
  /** The meter event's `identifier` (Stripe reports it as `request.identifier` in sample errors). */
  identifier: string;
  meter: Stripe.Billing.Meter | null;
  atMs: number;
}

/** A full v2 event as `GET /v2/core/events/{id}` returns it (JSON, timestamps as ISO strings). */
export type V2Event =
  | (Omit<Stripe.V2.Core.Events.V1BillingMeterErrorReportTriggeredEvent, "fetchRelatedObject" | "context" | "reason" | "changes"> & V2Common)
  | (Omit<Stripe.V2.Core.Events.V1BillingMeterNoMeterFoundEvent, "context" | "reason" | "changes"> & V2Common);

interface V2Common {
  context: string | null;
  reason: Stripe.V2.Core.Event["reason"] | null;
  changes: null;
}

/**
 * The thin payload Stripe POSTs to an event destination: no `data`, only a reference to the
 * related object (none for `no_meter_found`). Fetch the rest with `v2.core.events.retrieve(id)`.
 */
export interface ThinEventPayload {
  id: string;
  object: "v2.core.event";
  type: ThinEventType;
  created: string;
  livemode: boolean;
  context: string | null;
  reason: Stripe.V2.Core.Event["reason"] | null;
  related_object?: Stripe.V2.Core.Events.RelatedObject;
}

/** The API request being served (an event's `request`). */
export interface RequestContext {
  requestId: string;
  idempotencyKey: string | null;
}

export function eventRequest(ctx: RequestContext): Stripe.Event.Request {
  return { id: ctx.requestId, idempotency_key: ctx.idempotencyKey };
}

export interface StateOptions {
  now: () => number;
  apiVersion: string;
  defaultCurrency: string;
}

export class StripeState {
  readonly apiVersion: string;
  readonly defaultCurrency: string;

  readonly events: Stripe.Event[] = [];
  delivered = 0;

  readonly customers = new Map<string, Stripe.Customer>();
  readonly deletedCustomers = new Set<string>();
  readonly transactions = new Map<string, Stripe.CustomerBalanceTransaction[]>();
  /** Balances in currencies other than the customer's `currency` (Stripe's sign: negative = credit). */
  readonly otherBalances = new Map<string, Map<string, number>>();

  readonly sessions = new Map<string, Stripe.Checkout.Session>();
  /** `payment_intent_data` of each payment-mode session, applied when the session completes. */
  readonly sessionPaymentData = new Map<string, { setupFutureUsage: "on_session" | "off_session" | null; description: string | null; metadata: Stripe.Metadata }>();

  /** `invoice_creation`, tax and `customer_update` of each session, applied when it completes (checkout-tax.ts). */
  readonly sessionExtras = new Map<string, import("./checkout-tax").SessionExtras>();
  /** Post-purchase invoices of Checkout sessions. */
  readonly invoices = new Map<string, Stripe.Invoice>();

  readonly paymentMethods = new Map<string, Stripe.PaymentMethod>();
  readonly cardBehavior = new Map<string, CardBehavior>();
  readonly paymentIntents = new Map<string, Stripe.PaymentIntent>();
  /** Shared Payment Tokens granted to this account (shared-payment.ts). */
  readonly grantedTokens = new Map<string, import("./shared-payment").GrantedToken>();
  readonly charges = new Map<string, Stripe.Charge>();
  readonly refunds = new Map<string, Stripe.Refund>();
  readonly disputes = new Map<string, Stripe.Dispute>();

  /** Meters by event_name. */
  readonly meters = new Map<string, Stripe.Billing.Meter>();
  readonly meterEvents: Stripe.Billing.MeterEvent[] = [];
  /** Meter events Stripe accepted but will not count (no meter, no customer): reported as thin events. */
  readonly rejectedMeterEvents: Stripe.Billing.MeterEvent[] = [];
  readonly meterByIdentifier = new Map<string, { event: Stripe.Billing.MeterEvent; firstSeenMs: number }>();
  readonly meterProblems: MeterProblem[] = [];
  readonly v2Events = new Map<string, V2Event>();

  private readonly baseNow: () => number;
  private offsetMs = 0;

  constructor(options: StateOptions) {
    this.baseNow = options.now;
    this.apiVersion = options.apiVersion;
    this.defaultCurrency = options.defaultCurrency;
  }

  // ----------------------------------------------------------------------------- clock

  nowMs(): number {
    return this.baseNow() + this.offsetMs;
  }

  nowSeconds(): number {
    return Math.floor(this.nowMs() / 1000);
  }

  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new Error(`advance: ms must be a non-negative number, got ${ms}`);
    this.offsetMs += ms;
  }

  /** True once `sinceMs` is 24 hours or more in the past (idempotency keys, meter identifiers). */
  expired24h(sinceMs: number): boolean {
    return this.nowMs() - sinceMs >= DAY_MS;
  }

  // ----------------------------------------------------------------------------- lookups

  liveCustomer(id: string, status = 404, param = "id"): Stripe.Customer {
    const c = this.customers.get(id);
    if (!c || this.deletedCustomers.has(id)) throw noSuch("customer", id, param, status);
    return c;
  }

  // ----------------------------------------------------------------------------- events

  emit<T extends EventType>(type: T, object: EventObject<T>, previous: Partial<EventObject<T>> | undefined, request: Stripe.Event.Request | null): EventOf<T> {
    const data = previous === undefined ? { object: clone(object) } : { object: clone(object), previous_attributes: clone(previous) };
    // Typed through EventBase (the shared shape of every Stripe.Event); the generic signature
    // above ties `object`/`previous` to the event type at each call site.
    const event: Stripe.EventBase = {
      id: newId("evt_"),
      object: "event",
      api_version: this.apiVersion,
      created: this.nowSeconds(),
      data,
      livemode: false,
      pending_webhooks: 1,
      request,
      type,
    };
    this.events.push(event as Stripe.Event);
    return event as EventOf<T>;
  }

  /** `request` of an event caused by a test helper (Dashboard-like action): no API request id. */
  static readonly noRequest: Stripe.Event.Request = { id: null, idempotency_key: null };

  reset(): void {
    this.events.length = 0;
    this.delivered = 0;
    this.customers.clear();
    this.deletedCustomers.clear();
    this.transactions.clear();
    this.otherBalances.clear();
    this.sessions.clear();
    this.sessionPaymentData.clear();
    this.sessionExtras.clear();
    this.invoices.clear();
    this.paymentMethods.clear();
    this.cardBehavior.clear();
    this.paymentIntents.clear();
    this.grantedTokens.clear();
    this.charges.clear();
    this.refunds.clear();
    this.disputes.clear();
    this.meterEvents.length = 0;
    this.rejectedMeterEvents.length = 0;
    this.meterByIdentifier.clear();
    this.meterProblems.length = 0;
    this.v2Events.clear();
  }
}
