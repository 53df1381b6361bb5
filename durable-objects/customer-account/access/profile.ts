import type Stripe from "stripe";
import type { CustomerProfile, ProfilePatch } from "../../../src/lib/customer";
import { MAX_AMOUNT_CENTS } from "../../../src/lib/money";
import type { AutoTopUpSettings } from "../auto-topup/auto-topup";
import type { AccountContext } from "../core/context";

/** The live (not deleted) customer's profile; with a key hash, only while that key is valid. */
export function activeProfile(context: AccountContext, keyHash?: string): CustomerProfile | null {
  const { account, keys } = context;
  if (!account.exists || account.row.deleted_at !== null) return null;
  if (keyHash !== undefined && !keys.isValid(keyHash)) return null;
  return account.profile();
}

/** Creates or updates the customer's profile; a plan change makes the next cycle settle with Stripe. */
export function upsertProfile(context: AccountContext, customerId: string, patch: ProfilePatch): { created: boolean; customer: CustomerProfile } {
  const created = !context.account.exists;
  context.ensure(customerId);
  const { fields, planChanged } = context.account.patchFields(patch);
  // Settle with Stripe under the new plan: prepaid takes its balance from Stripe again.
  if (planChanged && context.config.stripeEnabled) fields.reconcile_needed = 1;
  if (Object.keys(fields).length) context.account.set(fields);
  // Usage held back by report batching is reported under the plan it was used on.
  if (planChanged) context.reports.batching.force();
  context.changed();
  context.directory.schedule();
  return { created, customer: context.account.profile() };
}

export function markDeleted(context: AccountContext): void {
  if (context.account.row.deleted_at !== null) return;
  context.account.set({ deleted_at: Date.now() });
  context.changed();
  context.directory.schedule();
}

/**
 * The profile fields the gateway takes from a Stripe customer: metadata `payg_plan` and
 * `payg_minimum_balance_cents` override the plan and the minimum; removing one (it appears in the
 * event's previous metadata) clears its override.
 */
export function profileFromStripe(customer: Stripe.Customer, previousMetadata?: Record<string, string>): ProfilePatch {
  const metadata = Object.fromEntries(Object.entries(customer.metadata ?? {}).map(([k, v]) => [k, String(v)]));
  const patch: ProfilePatch = { email: customer.email ?? null, name: customer.name ?? null, metadata };
  if (metadata.payg_plan === "prepaid" || metadata.payg_plan === "postpaid") patch.plan = metadata.payg_plan;
  else if (previousMetadata?.payg_plan !== undefined) patch.plan = "prepaid";
  const minimum = metadata.payg_minimum_balance_cents;
  if (minimum !== undefined && /^-?\d{1,10}$/.test(minimum) && Math.abs(Number(minimum)) <= MAX_AMOUNT_CENTS) {
    patch.minimum_balance_cents = Number(minimum);
  } else if (minimum === undefined && previousMetadata?.payg_minimum_balance_cents !== undefined) {
    patch.minimum_balance_cents = null;
  }
  return patch;
}

/**
 * Creates or updates the profile and, when given, the auto top-up settings (null turns it off),
 * in one step. Auto top-up is refused for a post-paid customer before anything is written.
 */
export function upsertProfileAndAutoTopUp(
  context: AccountContext,
  customerId: string,
  patch: ProfilePatch,
  autoTopUp?: AutoTopUpSettings | null,
): { created: boolean; customer: CustomerProfile } | { refused: string } {
  if (autoTopUp && (patch.plan ?? (context.account.exists ? context.account.row.plan : "prepaid")) !== "prepaid") {
    return { refused: "Auto top-up is for prepaid credit; post-paid customers are invoiced." };
  }
  if (autoTopUp === undefined) return upsertProfile(context, customerId, patch);
  return context.atomically(() => {
    const result = upsertProfile(context, customerId, patch);
    context.autoTopUp.configure(autoTopUp, Date.now());
    context.changed();
    return result;
  });
}

/** Behavioral emails off (the unsubscribe link) or back on (the admin reset); the directory's due time for them moves with it. */
export function setUnsubscribed(context: AccountContext, unsubscribed: boolean): { unsubscribed_at: number | null } | null {
  if (!context.account.exists) return null;
  const unsubscribed_at = context.emails.audience.setUnsubscribed(unsubscribed, Date.now());
  context.directory.schedule();
  return { unsubscribed_at };
}
