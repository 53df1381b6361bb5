import { z } from "zod";
import type { Config } from "../../config";
import { MAX_STRIPE_AMOUNT_CENTS } from "../../money";

const wholeCents = (name: string) => z.int(`${name} must be a whole number of cents`);

/**
 * `auto_topup` in `PUT /admin/customers/{id}`: the three amounts in whole cents, or null to turn
 * it off. A top-up is a Checkout-sized payment (GOVERNANCE.checkout_min_cents..checkout_max_cents),
 * and a cap below one top-up would never let one through.
 */
export function autoTopUpField(config: Config) {
  const { checkout_min_cents: min, checkout_max_cents: max } = config.GOVERNANCE;
  return z
    .strictObject({
      threshold_cents: wholeCents("threshold_cents").min(0).max(MAX_STRIPE_AMOUNT_CENTS),
      amount_cents: wholeCents("amount_cents").min(min, `must be at least ${min}`).max(max, `must be at most ${max}`),
      monthly_cap_cents: wholeCents("monthly_cap_cents").min(1).max(MAX_STRIPE_AMOUNT_CENTS),
    })
    .refine((s) => s.monthly_cap_cents >= s.amount_cents, { path: ["monthly_cap_cents"], message: "must be at least amount_cents" })
    .nullable()
    .optional();
}
