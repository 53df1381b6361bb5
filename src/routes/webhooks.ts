import { Hono } from "hono";
import type Stripe from "stripe";
import Sdk from "stripe";
import type { Config } from "../config";
import { customerStub, type AppEnv } from "../env";
import { ApiError } from "../errors";
import { CUSTOMER_ID } from "../keys";
import { log } from "../log";
import { limitBody } from "../middleware/body-limit";
import { stripeClient } from "../stripe/client";

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
  "charge.dispute.created",
  "charge.dispute.closed",
]);

/** The customer an event is about, or null for events this gateway does not act on. */
function customerOf(event: Stripe.Event): string | null {
  const object = event.data.object as { object?: string; id?: string; customer?: string | { id: string } | null; metadata?: Record<string, string> | null };
  const id = object.object === "customer" ? object.id : typeof object.customer === "string" ? object.customer : object.customer?.id ?? object.metadata?.payg_customer_id;
  return id && CUSTOMER_ID.test(id) ? id : null;
}

/**
 * A Dispute names no customer: it is found through the disputed charge. If Stripe cannot be
 * reached the webhook fails (5xx) and Stripe delivers it again.
 */
async function disputedCustomer(config: Config, event: Stripe.Event): Promise<string | null> {
  if (!event.type.startsWith("charge.dispute.")) return null;
  const dispute = event.data.object as Stripe.Dispute;
  const chargeId = typeof dispute.charge === "string" ? dispute.charge : dispute.charge.id;
  try {
    const charge = await stripeClient(config).charges.retrieve(chargeId);
    const customer = typeof charge.customer === "string" ? charge.customer : (charge.customer?.id ?? null);
    return customer && CUSTOMER_ID.test(customer) ? customer : null;
  } catch (error) {
    log.warn(`stripe event ${event.id}: could not look up charge ${chargeId}`, error);
    throw new ApiError("upstream_error", "The event could not be applied yet; Stripe will redeliver it.");
  }
}

export const webhooks = new Hono<AppEnv>();

webhooks.post("/webhooks/stripe", limitBody(1024 * 1024), async (c) => {
  const config = c.var.config;
  if (!config.stripeEnabled) throw new ApiError("stripe_not_configured", "Stripe is not configured: set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET.");
  const signature = c.req.header("stripe-signature");
  const payload = await c.req.text();
  if (!signature) throw new ApiError("invalid_signature", "Missing Stripe-Signature header.");
  let event: Stripe.Event;
  try {
    event = await stripeClient(config).webhooks.constructEventAsync(
      payload,
      signature,
      config.STRIPE_WEBHOOK_SECRET!,
      undefined,
      Sdk.createSubtleCryptoProvider(),
    );
  } catch (error) {
    // The SDK's reason (tolerance, expected signature…) helps an attacker, not Stripe: log it only.
    log.warn(`stripe webhook refused: ${(error as Error).message}`);
    throw new ApiError("invalid_signature", "The Stripe-Signature header does not match this endpoint's signing secret.");
  }
  const customerId = HANDLED_EVENTS.has(event.type) ? (customerOf(event) ?? (await disputedCustomer(config, event))) : null;
  if (!customerId) return c.json({ received: true, status: "ignored" });
  try {
    const result = await customerStub(c.env, customerId).applyStripeEvent(customerId, event);
    return c.json({ received: true, status: result.status });
  } catch (error) {
    // Not recorded as processed: Stripe redelivers it, and the redelivery is applied in full.
    log.warn(`stripe event ${event.id} not applied`, error);
    throw new ApiError("upstream_error", "The event could not be applied yet; Stripe will redeliver it.");
  }
});
