import type Stripe from "stripe";
import { MAX_AMOUNT_CENTS } from "../../../src/lib/money";
import type { CustomerProfile, ProfilePatch } from "../../../src/lib/customer";
import type { AutoTopUpSettings } from "../auto-topup/auto-topup";
import type { Room } from "../core/context";

/** The live (not deleted) customer's profile; with a key hash, only while that key is valid. */
export function activeProfile(room: Room, keyHash?: string): CustomerProfile | null {
  const { account, keys } = room;
  if (!account.exists || account.row.deleted_at !== null) return null;
  if (keyHash !== undefined && !keys.isValid(keyHash)) return null;
  return account.profile();
}

/** Creates or updates the customer's profile; a plan change makes the next cycle settle with Stripe. */
export function upsertProfile(room: Room, customerId: string, patch: ProfilePatch): { created: boolean; customer: CustomerProfile } {
  const created = !room.account.exists;
  room.ensure(customerId);
  const { fields, planChanged } = room.account.patchFields(patch);
  // Settle with Stripe under the new plan: prepaid takes its balance from Stripe again.
  if (planChanged && room.config.stripeEnabled) fields.reconcile_needed = 1;
  if (Object.keys(fields).length) room.account.set(fields);
  room.changed();
  room.directory.schedule();
  return { created, customer: room.account.profile() };
}

export function markDeleted(room: Room): void {
  if (room.account.row.deleted_at !== null) return;
  room.account.set({ deleted_at: Date.now() });
  room.changed();
  room.directory.schedule();
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
  room: Room,
  customerId: string,
  patch: ProfilePatch,
  autoTopUp?: AutoTopUpSettings | null,
): { created: boolean; customer: CustomerProfile } | { refused: string } {
  if (autoTopUp && (patch.plan ?? (room.account.exists ? room.account.row.plan : "prepaid")) !== "prepaid") {
    return { refused: "Auto top-up is for prepaid credit; post-paid customers are invoiced." };
  }
  if (autoTopUp === undefined) return upsertProfile(room, customerId, patch);
  return room.atomically(() => {
    const result = upsertProfile(room, customerId, patch);
    room.autoTopUp.configure(autoTopUp, Date.now());
    room.changed();
    return result;
  });
}
