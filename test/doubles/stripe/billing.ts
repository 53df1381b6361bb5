/**
 * Billing: meters, meter events, the thin (v2) events Stripe sends about meter-event problems,
 * and invoices (shape only: `invoiceEvent` emits an event, the double never applies balances).
 *
 * Meter events (POST /v1/billing/meter_events): `value` a string of a positive whole number;
 * `timestamp` within the past 35 days and at most 5 minutes ahead; `identifier` dedupes for 24
 * hours by the double's clock (a repeat returns the original event with 200 and is counted once;
 * after 24 hours the same identifier is a new event). Checked synchronously as Stripe does: the
 * request shape. Checked "asynchronously", as Stripe does: whether a meter has this `event_name`
 * (else a `v1.billing.meter.no_meter_found` thin event, code `no_meter`) and whether the customer
 * exists (else `v1.billing.meter.error_report_triggered`, code `meter_event_customer_not_found`,
 * related_object the meter). Such events are answered 200 and never counted.
 * Choice of the double: a missing `payload[stripe_customer_id]` is refused with 400 (Stripe
 * reports it asynchronously as `meter_event_no_customer_defined`).
 *
 * Thin events (docs.stripe.com/api/v2/core/events/object, the SDK's
 * V1BillingMeterErrorReportTriggeredEvent / V1BillingMeterNoMeterFoundEvent): the payload POSTed to
 * an event destination has `id`, `object: "v2.core.event"`, `type`, `created` (ISO 8601),
 * `livemode`, `context`, `reason` and (error_report_triggered only) `related_object`
 * `{ id, type: "billing.meter", url: "/v1/billing/meters/{id}" }`. `GET /v2/core/events/{id}` adds
 * `data: { developer_message_summary, reason: { error_count, error_types: [{ code, error_count,
 * sample_errors: [{ error_message, request: { identifier } }] }] }, validation_start,
 * validation_end }` and `changes: null`. Problems are grouped per (type, meter) into one event per
 * `takeThinEvents()` call, like Stripe's validation windows; error_message texts are the double's.
 */
import type Stripe from "stripe";
import { checkKnown, invalid, missing, newId, noSuch, type Params, randomChars, readExpand, readInt, readString } from "./common";
import type { MeterProblem, StripeState, ThinEventPayload, V2Event } from "./core";

const METER_EVENT_CREATE_PARAMS = new Set(["event_name", "expand", "identifier", "payload", "timestamp"]);
const METER_PAST_WINDOW_S = 35 * 24 * 60 * 60;
const METER_FUTURE_WINDOW_S = 5 * 60;
/** Stripe's validation windows in the docs' example are 10 s long. */
const VALIDATION_WINDOW_MS = 10_000;
const MAX_SAMPLE_ERRORS = 5;

export interface InvoiceEventOptions {
  /** amount_due in minor units. Default 1000. */
  amount?: number;
  currency?: string;
  metadata?: Record<string, string>;
}

export type InvoiceEventType = "invoice.paid" | "invoice.payment_failed";

// ----------------------------------------------------------------------------- meters

/** Registers a meter for `eventName` (customer mapping `stripe_customer_id`, sum of `value`). */
export function createMeter(state: StripeState, eventName: string, displayName = eventName): Stripe.Billing.Meter {
  if (state.meters.has(eventName)) throw new Error(`a meter for event_name ${eventName} already exists`);
  const now = state.nowSeconds();
  const meter: Stripe.Billing.Meter = {
    id: `mtr_test_${randomChars(32)}`,
    object: "billing.meter",
    created: now,
    customer_mapping: { event_payload_key: "stripe_customer_id", type: "by_id" },
    default_aggregation: { formula: "sum" },
    display_name: displayName,
    event_name: eventName,
    event_time_window: null,
    livemode: false,
    status: "active",
    status_transitions: { deactivated_at: null },
    updated: now,
    value_settings: { event_payload_key: "value" },
  };
  state.meters.set(eventName, meter);
  return meter;
}

export function apiRetrieveMeter(state: StripeState, id: string, params: Params): Stripe.Billing.Meter {
  checkKnown(params, new Set(["expand"]));
  readExpand(params, []);
  for (const meter of state.meters.values()) if (meter.id === id) return meter;
  throw noSuch("billing.meter", id, "id", 404);
}

// ----------------------------------------------------------------------------- meter events

export function apiCreateMeterEvent(state: StripeState, params: Params): Stripe.Billing.MeterEvent {
  checkKnown(params, METER_EVENT_CREATE_PARAMS);
  readExpand(params, []);
  const eventName = readString(params, "event_name", { required: true, max: 100 }) as string;
  const payload = params.payload;
  if (payload === undefined) throw missing("payload");
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    throw invalid("Invalid object", { param: "payload" });
  }
  const p = payload as Params;
  const customer = p.stripe_customer_id;
  if (typeof customer !== "string" || customer === "") throw missing("payload[stripe_customer_id]");
  const value = p.value;
  if (value === undefined) throw missing("payload[value]");
  if (typeof value !== "string" || !/^[1-9]\d*$/.test(value)) {
    throw invalid(`Invalid payload[value]: must be a positive whole number, got ${JSON.stringify(value)}`, {
      param: "payload[value]",
    });
  }
  const identifier = readString(params, "identifier", { max: 100 });
  const now = state.nowSeconds();
  const timestamp = readInt(params, "timestamp") ?? now;
  if (timestamp < now - METER_PAST_WINDOW_S) {
    throw invalid("Timestamp must be within the past 35 calendar days.", { param: "timestamp" });
  }
  if (timestamp > now + METER_FUTURE_WINDOW_S) {
    throw invalid("Timestamp must not be more than 5 minutes in the future.", { param: "timestamp" });
  }

  // A repeated identifier within 24 hours returns the stored event, counted once.
  if (identifier !== undefined && identifier !== "") {
    const seen = state.meterByIdentifier.get(identifier);
    if (seen && !state.expired24h(seen.firstSeenMs)) return seen.event;
  }
  const stringPayload: Record<string, string> = {};
  for (const [k, v] of Object.entries(p)) stringPayload[k] = typeof v === "string" ? v : JSON.stringify(v);
  const event: Stripe.Billing.MeterEvent = {
    object: "billing.meter_event",
    created: now,
    event_name: eventName,
    identifier: identifier || crypto.randomUUID(),
    livemode: false,
    payload: stringPayload,
    timestamp,
  };
  state.meterByIdentifier.set(event.identifier, { event, firstSeenMs: state.nowMs() });

  const meter = state.meters.get(eventName);
  const problem = (type: MeterProblem["type"], code: MeterProblem["code"], message: string) =>
    state.meterProblems.push({ type, code, message, identifier: event.identifier, meter: meter ?? null, atMs: state.nowMs() });
  if (!meter) {
    problem("v1.billing.meter.no_meter_found", "no_meter", `No active meter was found for event_name ${eventName}.`);
    state.rejectedMeterEvents.push(event);
  } else if (!state.customers.has(customer) || state.deletedCustomers.has(customer)) {
    problem("v1.billing.meter.error_report_triggered", "meter_event_customer_not_found", `Customer ${customer} for the meter event was not found.`);
    state.rejectedMeterEvents.push(event);
  } else {
    state.meterEvents.push(event);
  }
  return event;
}

// ----------------------------------------------------------------------------- thin events

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Turns the problems found since the last call into thin events (one per type and meter),
 * keeps the full events for `GET /v2/core/events/{id}`, and returns the thin payloads.
 */
export function takeThinEvents(state: StripeState): ThinEventPayload[] {
  const groups = new Map<string, MeterProblem[]>();
  for (const problem of state.meterProblems.splice(0)) {
    const key = `${problem.type} ${problem.meter?.id ?? ""}`;
    const list = groups.get(key);
    if (list) list.push(problem);
    else groups.set(key, [problem]);
  }
  const out: ThinEventPayload[] = [];
  for (const problems of groups.values()) {
    const first = problems[0]!;
    const byCode = new Map<string, MeterProblem[]>();
    for (const p of problems) byCode.set(p.code, [...(byCode.get(p.code) ?? []), p]);
    const start = Math.floor(Math.min(...problems.map((p) => p.atMs)) / VALIDATION_WINDOW_MS) * VALIDATION_WINDOW_MS;
    const end = (Math.floor(Math.max(...problems.map((p) => p.atMs)) / VALIDATION_WINDOW_MS) + 1) * VALIDATION_WINDOW_MS;
    const n = problems.length;
    const data = {
      developer_message_summary: n === 1 ? "There is 1 invalid event" : `There are ${n} invalid events`,
      reason: {
        error_count: n,
        error_types: [...byCode].map(([code, list]) => ({
          code,
          error_count: list.length,
          sample_errors: list.slice(0, MAX_SAMPLE_ERRORS).map((p) => ({ error_message: p.message, request: { identifier: p.identifier } })),
        })),
      },
      validation_end: iso(end),
      validation_start: iso(start),
    };
    const base = {
      id: `evt_test_${randomChars(46)}`,
      object: "v2.core.event" as const,
      context: null,
      created: iso(state.nowMs()),
      livemode: false,
      reason: null,
      changes: null,
    };
    let full: V2Event;
    if (first.type === "v1.billing.meter.error_report_triggered") {
      const meter = first.meter!;
      full = {
        ...base,
        type: first.type,
        data,
        related_object: { id: meter.id, type: "billing.meter", url: `/v1/billing/meters/${meter.id}` },
      };
    } else {
      full = { ...base, type: first.type, data };
    }
    state.v2Events.set(full.id, full);
    out.push(thinPayload(full));
  }
  return out;
}

/** The thin notification of a full v2 event: what an event destination receives. */
export function thinPayload(event: V2Event): ThinEventPayload {
  const thin: ThinEventPayload = {
    id: event.id,
    object: event.object,
    type: event.type,
    created: event.created,
    livemode: event.livemode,
    context: event.context,
    reason: event.reason,
  };
  if ("related_object" in event) thin.related_object = event.related_object;
  return thin;
}

export function apiRetrieveV2Event(state: StripeState, id: string): V2Event {
  const event = state.v2Events.get(id);
  if (!event) throw invalid(`No such event: '${id}'`, { code: "resource_missing" }, 404);
  return event;
}

// ----------------------------------------------------------------------------- invoices

export function buildInvoice(state: StripeState, c: Stripe.Customer, type: InvoiceEventType, id: string, opts: InvoiceEventOptions): Stripe.Invoice {
  const now = state.nowSeconds();
  const amount = opts.amount ?? 1000;
  const currency = opts.currency ?? c.currency ?? state.defaultCurrency;
  const paid = type === "invoice.paid";
  const line: Stripe.InvoiceLineItem = {
    id: newId("il_"),
    object: "line_item",
    amount,
    currency,
    description: "Usage",
    discount_amounts: [],
    discountable: true,
    discounts: [],
    invoice: id,
    livemode: false,
    metadata: {},
    parent: null,
    period: { end: now, start: now },
    pretax_credit_amounts: null,
    pricing: null,
    quantity: 1,
    quantity_decimal: null,
    subscription: null,
    subtotal: amount,
    taxes: [],
  };
  return {
    id,
    object: "invoice",
    account_country: "US",
    account_name: null,
    account_tax_ids: null,
    amount_due: amount,
    amount_overpaid: 0,
    amount_paid: paid ? amount : 0,
    amount_remaining: paid ? 0 : amount,
    amount_shipping: 0,
    application: null,
    attempt_count: 1,
    attempted: true,
    auto_advance: !paid,
    automatic_tax: { disabled_reason: null, enabled: false, liability: null, provider: null, status: null },
    automatically_finalizes_at: null,
    billing_reason: "manual",
    collection_method: "charge_automatically",
    created: now,
    currency,
    custom_fields: null,
    customer: c.id,
    customer_account: null,
    customer_address: null,
    customer_email: c.email,
    customer_name: c.name ?? null,
    customer_phone: c.phone ?? null,
    customer_shipping: null,
    customer_tax_exempt: "none",
    customer_tax_ids: [],
    default_payment_method: null,
    default_source: null,
    default_tax_rates: [],
    description: null,
    discounts: [],
    due_date: null,
    effective_at: now,
    ending_balance: 0,
    footer: null,
    from_invoice: null,
    hosted_invoice_url: `https://invoice.stripe.test/i/${id}`,
    invoice_pdf: `https://pay.stripe.test/invoice/${id}/pdf`,
    issuer: { type: "self" },
    last_finalization_error: null,
    latest_revision: null,
    lines: { object: "list", data: [line], has_more: false, url: `/v1/invoices/${id}/lines` },
    livemode: false,
    metadata: { ...(opts.metadata ?? {}) },
    next_payment_attempt: paid ? null : now + 3 * 24 * 60 * 60,
    number: `${c.invoice_prefix ?? "INV"}-0001`,
    on_behalf_of: null,
    parent: null,
    payment_settings: { default_mandate: null, payment_method_options: null, payment_method_types: null },
    period_end: now,
    period_start: now,
    post_payment_credit_notes_amount: 0,
    pre_payment_credit_notes_amount: 0,
    receipt_number: null,
    rendering: null,
    shipping_cost: null,
    shipping_details: null,
    starting_balance: 0,
    statement_descriptor: null,
    status: paid ? "paid" : "open",
    status_transitions: {
      finalized_at: now,
      marked_uncollectible_at: null,
      paid_at: paid ? now : null,
      voided_at: null,
    },
    subtotal: amount,
    subtotal_excluding_tax: amount,
    test_clock: null,
    total: amount,
    total_discount_amounts: [],
    total_excluding_tax: amount,
    total_pretax_credit_amounts: [],
    total_taxes: [],
    webhooks_delivered_at: now,
  };
}
