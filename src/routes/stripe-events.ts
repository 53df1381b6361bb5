import { Hono } from "hono";
import type Stripe from "stripe";
import Sdk from "stripe";
import type { ChargeRefunds } from "../../durable-objects/customer-account/contract";
import { type AppEnv, customerStub } from "../env";
import { CUSTOMER_ID } from "../lib/api-key-format";
import type { Config } from "../lib/config";
import { ApiError } from "../lib/errors";
import { log } from "../lib/log";
import { ENDPOINTS } from "../lib/stripe-budget";
import { stripeClient, stripeOffline } from "../lib/stripe-client";
import { idOf } from "../lib/stripe-ids";
import { limitBody } from "../middleware/body-limit";
import { lookupPermit } from "../stripe-permit";

/** The events the gateway acts on; anything else is acknowledged and ignored without a lookup. */
export const HANDLED_EVENTS = new Set([
  "customer.created",
  "customer.updated",
  "customer.deleted",
  "checkout.session.completed",
  "checkout.session.async_payment_succeeded",
  "invoice.paid",
  "invoice.payment_failed",
  "invoice.voided",
  "invoice.marked_uncollectible",
  "charge.refunded",
  "charge.refund.updated",
  "refund.created",
  "refund.updated",
  "refund.failed",
  "charge.dispute.created",
  "charge.dispute.updated",
  "charge.dispute.closed",
  "charge.dispute.funds_withdrawn",
  "charge.dispute.funds_reinstated",
  "payment_intent.succeeded",
  "payment_intent.payment_failed",
  // Its receipt_url, for the top-up list.
  "charge.succeeded",
]);

/** The customer an event is about, or null for events this gateway does not act on. */
function customerOf(event: Stripe.Event): string | null {
  const object = event.data.object as { object?: string; id?: string; customer?: string | { id: string } | null; metadata?: Record<string, string> | null };
  const id = object.object === "customer" ? object.id : (idOf(object.customer) ?? object.metadata?.payg_customer_id);
  return id && CUSTOMER_ID.test(id) ? id : null;
}

const REFUND_EVENTS = new Set(["charge.refunded", "charge.refund.updated", "refund.created", "refund.updated", "refund.failed"]);

/** The charge an event is about, for the events routed through it (disputes and refunds name no customer). */
function chargeOf(event: Stripe.Event): string | null {
  const object = event.data.object as { object?: string; id?: string; charge?: string | { id: string } | null };
  // A succeeded charge names its customer itself; only refunds and disputes are looked up.
  if (object.object === "charge") return event.type === "charge.succeeded" ? null : (object.id ?? null);
  if (event.type.startsWith("charge.dispute.") || REFUND_EVENTS.has(event.type)) return idOf(object.charge);
  return null;
}

/**
 * Disputes and refunds are found through their charge, and a refund event carries the charge's
 * refunds as Stripe lists them now (clawbacks.ts ChargeRefunds). If Stripe cannot be reached the
 * webhook fails (5xx) and Stripe delivers it again.
 */
async function throughCharge(env: Env, config: Config, event: Stripe.Event): Promise<{ customerId: string | null; refunds?: ChargeRefunds }> {
  const chargeId = chargeOf(event);
  if (!chargeId) return { customerId: null };
  try {
    // One batch of calls: the charge and the first page of its refunds (a further page takes one more).
    const permit = await lookupPermit(env, config, event.id, { [ENDPOINTS.chargeRetrieve]: 1, [ENDPOINTS.refundList]: REFUND_EVENTS.has(event.type) ? 1 : 0 });
    const stripe = stripeClient(config, permit);
    const charge = await stripe.charges.retrieve(chargeId);
    const customer = idOf(charge.customer);
    const customerId = customer && CUSTOMER_ID.test(customer) ? customer : null;
    if (!customerId || !REFUND_EVENTS.has(event.type)) return { customerId };
    const refunds: ChargeRefunds["refunds"] = [];
    for await (const refund of stripe.refunds.list({ charge: chargeId, limit: 100 })) {
      refunds.push({ id: refund.id, amount: refund.amount, status: refund.status, created: refund.created });
    }
    return {
      customerId,
      refunds: { charge: chargeId, payment_intent: idOf(charge.payment_intent), payment_method: idOf(charge.payment_method), currency: charge.currency, refunds },
    };
  } catch (error) {
    log.warn(`stripe event ${event.id}: could not look up charge ${chargeId}`, error);
    throw new ApiError("upstream_error", "The event could not be applied yet; Stripe will redeliver it.");
  }
}

/** A paid Checkout session with no customer of ours is not credited anywhere: the log says so. */
function logUnrouted(event: Stripe.Event): void {
  if (!event.type.startsWith("checkout.session.")) return;
  const session = event.data.object as Stripe.Checkout.Session;
  if (session.payment_status === "paid") log.warn(`stripe event ${event.id}: paid Checkout session ${session.id} names no customer of this gateway; not credited`);
}

export const stripeEvents = new Hono<AppEnv>();

stripeEvents.post("/webhooks/stripe", limitBody(1024 * 1024), async (c) => {
  const config = c.var.config;
  if (!config.stripeEnabled) throw new ApiError("stripe_not_configured", "Stripe is not configured: set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET.");
  const signature = c.req.header("stripe-signature");
  const payload = await c.req.text();
  if (!signature) throw new ApiError("invalid_signature", "Missing Stripe-Signature header.");
  let event: Stripe.Event;
  try {
    event = await stripeOffline(config).webhooks.constructEventAsync(payload, signature, config.STRIPE_WEBHOOK_SECRET!, undefined, Sdk.createSubtleCryptoProvider());
  } catch (error) {
    // The SDK's reason (tolerance, expected signature…) helps an attacker, not Stripe: log it only.
    log.warn(`stripe webhook refused: ${(error as Error).message}`);
    throw new ApiError("invalid_signature", "The Stripe-Signature header does not match this endpoint's signing secret.");
  }
  if (!HANDLED_EVENTS.has(event.type)) return c.json({ received: true, status: "ignored" });
  const routed = chargeOf(event) ? await throughCharge(c.env, config, event) : { customerId: customerOf(event) };
  const customerId = routed.customerId;
  if (!customerId) {
    logUnrouted(event);
    return c.json({ received: true, status: "ignored" });
  }
  try {
    const result = await customerStub(c.env, customerId).applyStripeEvent(customerId, event, routed.refunds);
    return c.json({ received: true, status: result.status });
  } catch (error) {
    // Not recorded as processed: Stripe redelivers it, and the redelivery is applied in full.
    log.warn(`stripe event ${event.id} not applied`, error);
    throw new ApiError("upstream_error", "The event could not be applied yet; Stripe will redeliver it.");
  }
});

/** Meter event identifiers carry the customer: `payg_meter.<customer id>.<random>`. */
export function customerOfMeterReport(identifier: string): string | null {
  const [prefix, customer] = identifier.split(".");
  return prefix === "payg_meter" && customer && CUSTOMER_ID.test(customer) ? customer : null;
}

const METER_ERROR_EVENTS = new Set(["v1.billing.meter.error_report_triggered", "v1.billing.meter.no_meter_found"]);

/**
 * Stripe's event destination for v2 ("thin") events: meter errors, which Stripe reports only
 * after it has accepted a meter event with 200. The sample errors name our identifiers, so the
 * customer's post-paid report is marked failed and announced (report.failed): usage never
 * disappears silently. Errors beyond Stripe's samples cannot be traced and are logged, with counts.
 */
stripeEvents.post("/webhooks/stripe/events", limitBody(1024 * 1024), async (c) => {
  const config = c.var.config;
  if (!config.stripeEnabled || !config.STRIPE_EVENT_DESTINATION_SECRET) {
    throw new ApiError("stripe_not_configured", "Stripe's event destination is not configured: set STRIPE_EVENT_DESTINATION_SECRET.");
  }
  const signature = c.req.header("stripe-signature");
  const payload = await c.req.text();
  if (!signature) throw new ApiError("invalid_signature", "Missing Stripe-Signature header.");
  let notification: { id: string; type: string };
  try {
    notification = await stripeOffline(config).parseEventNotificationAsync(payload, signature, config.STRIPE_EVENT_DESTINATION_SECRET, undefined, Sdk.createSubtleCryptoProvider());
  } catch (error) {
    log.warn(`stripe event destination refused: ${(error as Error).message}`);
    throw new ApiError("invalid_signature", "The Stripe-Signature header does not match this endpoint's signing secret.");
  }
  if (!METER_ERROR_EVENTS.has(notification.type)) return c.json({ received: true, status: "ignored" });
  let event: Stripe.V2.Core.Events.V1BillingMeterErrorReportTriggeredEvent | Stripe.V2.Core.Events.V1BillingMeterNoMeterFoundEvent;
  try {
    const permit = await lookupPermit(c.env, config, notification.id, { [ENDPOINTS.v2EventRetrieve]: 1 });
    event = (await stripeClient(config, permit).v2.core.events.retrieve(notification.id)) as typeof event;
  } catch (error) {
    log.warn(`stripe thin event ${notification.id}: could not fetch it`, error);
    throw new ApiError("upstream_error", "The event could not be fetched yet; Stripe will redeliver it.");
  }
  const byCustomer = new Map<string, string[]>();
  let samples = 0;
  for (const type of event.data.reason.error_types) {
    for (const sample of type.sample_errors) {
      samples++;
      const customer = customerOfMeterReport(sample.request.identifier);
      if (customer) byCustomer.set(customer, [...(byCustomer.get(customer) ?? []), sample.request.identifier]);
    }
  }
  let failed = 0;
  for (const [customer, identifiers] of byCustomer) {
    const codes = event.data.reason.error_types.map((t) => t.code).join(", ");
    failed += await customerStub(c.env, customer).meterEventsFailed(identifiers, `Stripe ${event.type} (${codes}): ${event.data.developer_message_summary}`);
  }
  const untraced = event.data.reason.error_count - failed;
  if (untraced > 0) {
    log.error(
      `stripe ${event.type} ${event.id}: ${event.data.reason.error_count} meter events refused, ${failed} traced to their reports (${samples} samples); ${event.data.developer_message_summary}`,
    );
  }
  return c.json({ received: true, status: "applied", failed_reports: failed, untraced });
});
