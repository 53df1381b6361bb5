import { Hono } from "hono";
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

/**
 * A Stripe Checkout session (mode payment) that becomes credit when its webhook arrives; for the
 * checkout route (customer's key) and the portal's Top up button (portal session). Each session
 * is a Stripe API call, so they are limited per customer (GOVERNANCE.checkout_limit_per_hour):
 * one key must not use up the account's Stripe rate limit.
 */
export async function createTopUpCheckout(env: Env, config: Config, customer: CustomerProfile, amountCents: number, options: { savePaymentMethod?: boolean } = {}) {
  if (customer.plan !== "prepaid") throw new ApiError("conflict", "Post-paid customers are invoiced; top-ups are for prepaid credit.");
  if (!config.stripeEnabled) throw new ApiError("stripe_not_configured", "Top-ups need Stripe: set STRIPE_SECRET_KEY.");
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
    return await stripeClient(config, permit).checkout.sessions.create({
      mode: "payment",
      customer: customer.id,
      line_items: [
        {
          quantity: 1,
          price_data: { currency: config.PRICING.currency, unit_amount: amountCents, product_data: { name: "API credit" } },
        },
      ],
      success_url: config.GOVERNANCE.checkout_success_url,
      cancel_url: config.GOVERNANCE.checkout_cancel_url,
      metadata: { payg_customer_id: customer.id, payg_credit_cents: String(amountCents) },
      // Paid in PRICING.currency, always: with Adaptive Pricing the customer may pay in theirs, and
      // the session (its currency and amounts) then no longer matches the credit it buys.
      adaptive_pricing: { enabled: false },
      // The card is saved on the customer for auto top-up; its payment_intent.succeeded tells the object which card.
      ...(options.savePaymentMethod
        ? { payment_intent_data: { setup_future_usage: "off_session" as const, metadata: { payg_customer_id: customer.id, payg_save_payment_method: "true" } } }
        : {}),
    });
  } catch (error) {
    log.error("checkout session failed", describeError(error));
    throw new ApiError("upstream_error", "Stripe could not create the checkout session; try again.");
  }
}

/**
 * Creates a Stripe Checkout session (mode payment) for a credit top-up, authenticated by the
 * customer's key; `save_payment_method: true` saves the card for auto top-up.
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
  const customer = await customerStub(c.env, customerId).identify(keyHash);
  if (!customer) throw new ApiError("invalid_api_key", UNKNOWN_KEY);
  const session = await createTopUpCheckout(c.env, config, customer, body.amount_cents, { savePaymentMethod: body.save_payment_method === true });
  return c.json({ id: session.id, url: session.url, amount_cents: body.amount_cents }, 201);
});
