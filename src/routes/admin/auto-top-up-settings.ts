import { z } from "zod";
import type { Config } from "../../lib/config";
import { MAX_STRIPE_AMOUNT_CENTS } from "../../lib/money";

const wholeCents = (name: string) => z.int(`${name} must be a whole number of cents`);

/**
 * `auto_topup` in `PUT /admin/customers/{id}`: the three amounts in whole cents and the two rate
 * limits, or null to turn it off. A top-up is a Checkout-sized payment
 * (GOVERNANCE.checkout_min_cents..checkout_max_cents); a cap below one top-up would never let one
 * through; a threshold not below the amount would charge again right after each top-up.
 */
export function autoTopUpField(config: Config) {
  const { checkout_min_cents: min, checkout_max_cents: max } = config.GOVERNANCE;
  return z
    .strictObject({
      threshold_cents: wholeCents("threshold_cents").min(0).max(MAX_STRIPE_AMOUNT_CENTS),
      amount_cents: wholeCents("amount_cents").min(min, `must be at least ${min}`).max(max, `must be at most ${max}`),
      monthly_cap_cents: wholeCents("monthly_cap_cents").min(1).max(MAX_STRIPE_AMOUNT_CENTS),
      /** At most one top-up per this many seconds, whatever the balance does. */
      min_interval_seconds: z
        .int("min_interval_seconds must be a whole number of seconds")
        .min(60)
        .max(30 * 86_400)
        .default(600),
      /** At most this many top-ups per UTC day. */
      max_per_day: z.int("max_per_day must be a whole number").min(1).max(100).default(4),
    })
    .refine((s) => s.threshold_cents < s.amount_cents, { path: ["threshold_cents"], message: "must be below amount_cents" })
    .refine((s) => s.monthly_cap_cents >= s.amount_cents, { path: ["monthly_cap_cents"], message: "must be at least amount_cents" })
    .nullable()
    .optional();
}
