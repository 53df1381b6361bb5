import { Hono } from "hono";
import { z } from "zod";
import type { Config } from "../config";
import { customerStub, type AppEnv } from "../env";
import { ApiError } from "../errors";
import { jsonBody } from "../http";
import { apiKeyFrom, parseApiKey, sha256Hex } from "../keys";
import { log } from "../log";
import { limitBody } from "../middleware/body-limit";
import { describeError, stripeClient } from "../stripe/client";
import type { CustomerProfile } from "../types";

export const billing = new Hono<AppEnv>();

/**
 * A Stripe Checkout session (mode payment) that becomes credit when its webhook arrives; for the
 * checkout route (customer's key) and the portal's Top up button (portal session).
 */
export async function createTopUpCheckout(config: Config, customer: CustomerProfile, amountCents: number) {
  if (customer.plan !== "prepaid") throw new ApiError("conflict", "Post-paid customers are invoiced; top-ups are for prepaid credit.");
  if (!config.stripeEnabled) throw new ApiError("stripe_not_configured", "Top-ups need Stripe: set STRIPE_SECRET_KEY.");
  try {
    return await stripeClient(config).checkout.sessions.create({
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
    });
  } catch (error) {
    log.error("checkout session failed", describeError(error));
    throw new ApiError("upstream_error", "Stripe could not create the checkout session; try again.");
  }
}

/** Creates a Stripe Checkout session (mode payment) for a credit top-up, authenticated by the customer's key. */
billing.post("/billing/checkout", limitBody(16 * 1024), async (c) => {
  const config = c.var.config;
  const key = apiKeyFrom(c.req.raw.headers);
  const parsed = key ? parseApiKey(key) : null;
  if (!key || !parsed) throw new ApiError("invalid_api_key", "A valid API key is required.");
  const { checkout_min_cents: min, checkout_max_cents: max } = config.GOVERNANCE;
  const body = await jsonBody(
    c,
    z.strictObject({ amount_cents: z.int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`) }),
  );
  const customer = await customerStub(c.env, parsed.customerId).identify(await sha256Hex(key));
  if (!customer) throw new ApiError("invalid_api_key", "Unknown or revoked API key.");
  const session = await createTopUpCheckout(config, customer, body.amount_cents);
  return c.json({ id: session.id, url: session.url, amount_cents: body.amount_cents }, 201);
});
