import { Hono } from "hono";
import type Stripe from "stripe";
import { z } from "zod";
import { type AppEnv, customerStub } from "../env";
import { jsonBody } from "../http";
import type { Config } from "../lib/config";
import type { CustomerProfile } from "../lib/customer";
import { ApiError } from "../lib/errors";
import { log } from "../lib/log";
import { ENDPOINTS } from "../lib/stripe-budget";
import { describeError, stripeClient } from "../lib/stripe-client";
import { authenticateApiKey, UNKNOWN_KEY } from "../middleware/api-key";
import { limitBody } from "../middleware/body-limit";
import { checkoutPermit } from "../stripe-permit";

export const billing = new Hono<AppEnv>();

/** Payment methods auto top-up can charge off-session later: the card a Checkout top-up saves. */
export const SAVABLE_PAYMENT_METHODS = ["card"] as const;

/**
 * What Checkout offers: GOVERNANCE.checkout_payment_method_types (unset: Stripe's dynamic choice),
 * and, for a top-up that saves its card for auto top-up, only the methods auto top-up can charge.
 * Stripe's API (since stripe-node 23) names the list `allowed_payment_method_types`: a filter on
 * the methods Stripe finds eligible, where `payment_method_types` was a fixed list.
 */
function allowedPaymentMethods(config: Config, save: boolean): string[] | undefined {
  const configured = config.GOVERNANCE.checkout_payment_method_types;
  if (!save) return configured;
  const savable = (configured ?? SAVABLE_PAYMENT_METHODS).filter((type) => (SAVABLE_PAYMENT_METHODS as readonly string[]).includes(type));
  if (!savable.length) throw new ApiError("conflict", "Automatic top-up charges a saved card, which GOVERNANCE.checkout_payment_method_types does not offer.");
  return savable;
}

/** The Checkout session of a top-up of `amountCents` (credit before any tax). */
export function topUpSessionParams(config: Config, customer: CustomerProfile, amountCents: number, save: boolean): Stripe.Checkout.SessionCreateParams {
  const { checkout_invoice: invoice, checkout_automatic_tax: tax } = config.GOVERNANCE;
  const metadata = { payg_customer_id: customer.id, payg_credit_cents: String(amountCents) };
  const methods = allowedPaymentMethods(config, save);
  return {
    mode: "payment",
    customer: customer.id,
    line_items: [
      {
        quantity: 1,
        // Exclusive: tax is added on top, so the credit bought is the amount chosen.
        price_data: { currency: config.PRICING.currency, unit_amount: amountCents, product_data: { name: "API credit" }, ...(tax ? { tax_behavior: "exclusive" as const } : {}) },
      },
    ],
    success_url: config.GOVERNANCE.checkout_success_url,
    cancel_url: config.GOVERNANCE.checkout_cancel_url,
    metadata,
    // Paid in PRICING.currency, always: with Adaptive Pricing the customer may pay in theirs, and
    // the session (its currency and amounts) then no longer matches the credit it buys.
    adaptive_pricing: { enabled: false },
    // A Stripe invoice for every paid top-up (with its PDF); its metadata marks it as a top-up's.
    ...(invoice ? { invoice_creation: { enabled: true, invoice_data: { description: "API credit top-up", metadata } } } : {}),
    // Stripe Tax needs the customer's address and, for a tax ID, the business name saved on the
    // existing customer: customer_update is what Stripe requires with both.
    ...(tax ? { automatic_tax: { enabled: true }, tax_id_collection: { enabled: true }, customer_update: { address: "auto" as const, name: "auto" as const } } : {}),
    ...(methods ? { allowed_payment_method_types: methods } : {}),
    // The card is saved on the customer for auto top-up; its payment_intent.succeeded tells the object which card.
    ...(save ? { payment_intent_data: { setup_future_usage: "off_session" as const, metadata: { payg_customer_id: customer.id, payg_save_payment_method: "true" } } } : {}),
  };
}

/**
 * A Stripe Checkout session (mode payment) that becomes credit when its webhook arrives; for the
 * checkout route (customer's key) and the portal's Top up button (portal session). Each session
 * is a Stripe API call, so they are limited per customer (GOVERNANCE.checkout_limit_per_hour):
 * one key must not use up the account's Stripe rate limit.
 */
export async function createTopUpCheckout(env: Env, config: Config, customer: CustomerProfile, amountCents: number, options: { savePaymentMethod?: boolean } = {}) {
  if (customer.plan !== "prepaid") throw new ApiError("conflict", "Post-paid customers are invoiced; top-ups are for prepaid credit.");
  if (!config.stripeEnabled) throw new ApiError("stripe_not_configured", "Top-ups need Stripe: set STRIPE_SECRET_KEY.");
  const params = topUpSessionParams(config, customer, amountCents, options.savePaymentMethod === true);
  // The call first: a spent Stripe budget (429) must not use up one of the customer's hourly sessions.
  const permit = await checkoutPermit(env, config, customer.id, ENDPOINTS.checkoutSessionCreate);
  const slot = await customerStub(env, customer.id).takeCheckoutSlot({ limit: config.GOVERNANCE.checkout_limit_per_hour, amountCents });
  if (!slot.ok && "balanceLimit" in slot) {
    throw new ApiError("conflict", "This top-up would take the balance past the largest balance the gateway holds.");
  }
  if (!slot.ok) {
    throw new ApiError(
      "rate_limited",
      `At most ${config.GOVERNANCE.checkout_limit_per_hour} checkout sessions an hour; try again in ${slot.retryAfterSeconds} s.`,
      { retry_after_seconds: slot.retryAfterSeconds },
      { "retry-after": String(slot.retryAfterSeconds) },
    );
  }
  try {
    return await stripeClient(config, permit).checkout.sessions.create(params);
  } catch (error) {
    log.error("checkout session failed", describeError(error));
    throw new ApiError("upstream_error", "Stripe could not create the checkout session; try again.");
  }
}

/**
 * Creates a Stripe Checkout session (mode payment) for a credit top-up, authenticated by the
 * customer's key; `save_payment_method: true` saves the card for auto top-up (not from a key with a
 * spend cap: docs/design/portal-authority.md).
 */
billing.post("/billing/checkout", limitBody(16 * 1024), async (c) => {
  const config = c.var.config;
  const { customerId, keyHash } = await authenticateApiKey(c.req.raw.headers, config);
  const { checkout_min_cents: min, checkout_max_cents: max } = config.GOVERNANCE;
  const body = await jsonBody(
    c,
    z.strictObject({
      amount_cents: z.int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`),
      save_payment_method: z.boolean().optional(),
    }),
  );
  const found = await customerStub(c.env, customerId).identifyKey(keyHash);
  if (!found) throw new ApiError("invalid_api_key", UNKNOWN_KEY);
  // A key narrower than the account (a spend cap) cannot choose the card auto top-up charges, as in the portal.
  if (body.save_payment_method === true && found.capped)
    throw new ApiError("forbidden", "A key with a spend cap cannot save a card for auto top-up; top up without save_payment_method, or use the owner's portal link.");
  const session = await createTopUpCheckout(c.env, config, found.customer, body.amount_cents, { savePaymentMethod: body.save_payment_method === true });
  return c.json({ id: session.id, url: session.url, amount_cents: body.amount_cents }, 201);
});
