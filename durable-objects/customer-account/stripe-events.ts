import type Stripe from "stripe";
import { MICROS_PER_CENT } from "../../src/money";
import { applyPaymentIntentEvent } from "./auto-topup-charge";
import { applyDispute, applyRefund } from "./clawbacks";
import { createGrant } from "./credits";
import { markDeleted, profileFromStripe, upsertProfile } from "./profile";
import type { Room } from "./room";

export type EventStatus = "applied" | "duplicate" | "ignored";

/** The Stripe work (sending reports, reconciling) runs from this timer, under the object's lock. */
export const STRIPE_TIMER = "stripe";

/**
 * What Stripe's balance should read given what the edge knows (cents): the edge balance plus
 * usage not yet reported is what Stripe should have been told; credit reports Stripe refused and
 * reports not sent yet are the difference. Null when the edge cannot tell (sub-cent state).
 */
export function expectedStripeBalance(input: { balanceMicros: number; pendingUsageMicros: number; failedCents: number; unsentCents: number }): number | null {
  const told = input.balanceMicros + input.pendingUsageMicros;
  if (told % MICROS_PER_CENT !== 0) return null;
  return -told / MICROS_PER_CENT - input.failedCents - input.unsentCents;
}

/**
 * Applies one verified Stripe event, synchronously: the webhook is answered as soon as the event
 * is recorded here. Nothing in this step calls Stripe; what needs Stripe (reconciling a balance
 * change, sending the reports a top-up queued) is left to the `stripe` timer, which runs under
 * the lock and respects each report's backoff. Duplicates are acknowledged and ignored.
 */
export function applyStripeEvent(room: Room, customerId: string, event: Stripe.Event): EventStatus {
  room.ensure(customerId);
  if (room.stripeEvents.seen(event.id)) return "duplicate";
  const status = room.atomically(() => {
    const status = apply(room, customerId, event);
    room.stripeEvents.record(event.id, event.type, Date.now());
    return status;
  });
  room.directory.schedule();
  return status;
}

function apply(room: Room, customerId: string, event: Stripe.Event): "applied" | "ignored" {
  const now = Date.now();
  switch (event.type) {
    case "customer.created":
    case "customer.updated": {
      const customer = event.data.object;
      if (event.created >= room.account.row.profile_event_at) {
        const previous = (event.data.previous_attributes as { metadata?: Record<string, string> } | undefined)?.metadata;
        upsertProfile(room, customerId, profileFromStripe(customer, previous));
        room.account.set({ profile_event_at: event.created, ...(customer.currency ? { stripe_currency: customer.currency } : {}) });
      }
      const balanceChanged =
        event.type === "customer.created" || (event.data.previous_attributes as Record<string, unknown> | undefined)?.balance !== undefined;
      // Our own balance transactions come back as customer.updated: when the new balance is what
      // the edge already expects, there is nothing to fetch.
      if (balanceChanged && customer.balance !== expectedStripeBalanceNow(room)) {
        room.account.set({ reconcile_needed: 1 });
        room.timers.at(STRIPE_TIMER, now);
      }
      return "applied";
    }
    case "customer.deleted":
      markDeleted(room);
      return "applied";
    case "checkout.session.completed":
    case "checkout.session.async_payment_succeeded": {
      const session = event.data.object;
      if (session.payment_status !== "paid" || session.mode !== "payment") return "ignored";
      // Only top-ups this gateway created: other payments on the account are not API credit.
      const credit = Number(session.metadata?.payg_credit_cents);
      if (!Number.isSafeInteger(credit) || credit <= 0 || session.currency !== room.config.PRICING.currency) return "ignored";
      const paymentIntent = idOf(session.payment_intent);
      // A refund or dispute that arrived first is applied as it lands: that starts no top-up.
      room.autoTopUp.quietly(() =>
        createGrant(room, {
          customerId,
          amountCents: credit,
          reason: `Stripe Checkout ${session.id}`,
          reference: `checkout_${session.id}`,
          source: "checkout",
          paymentIntent,
        }),
      );
      room.timers.at(STRIPE_TIMER, now);
      return "applied";
    }
    case "payment_intent.succeeded":
    case "payment_intent.payment_failed":
      return afterCredit(room, applyPaymentIntentEvent(room, event, now), now);
    case "charge.refunded": {
      const charge = event.data.object;
      const payment = { paymentIntent: idOf(charge.payment_intent), paymentMethod: idOf(charge.payment_method) };
      return afterCredit(room, clawback(room, "refund", payment, now, () => applyRefund(room, charge, now)), now);
    }
    case "charge.dispute.created":
    case "charge.dispute.closed": {
      const dispute = event.data.object;
      const closing = event.type === "charge.dispute.closed";
      // Opened, or lost: a won (or prevented) one pauses nothing.
      const reason = !closing || dispute.status === "lost" ? "dispute" : null;
      const payment = { paymentIntent: idOf(dispute.payment_intent), paymentMethod: null };
      return afterCredit(room, clawback(room, reason, payment, now, () => applyDispute(room, dispute, closing, now)), now);
    }
    case "invoice.paid":
    case "invoice.payment_failed":
    case "invoice.voided":
    case "invoice.marked_uncollectible":
      room.invoices.record(event.data.object.id!, event.type, now);
      room.changed();
      return "applied";
    default:
      return "ignored";
  }
}

/**
 * A refund or dispute step (clawbacks.ts): when the payment was made with the auto top-up card,
 * auto top-up pauses first; whatever the card, the step starts no top-up (the next debit may).
 */
function clawback(
  room: Room,
  reason: "refund" | "dispute" | null,
  payment: { paymentIntent: string | null; paymentMethod: string | null },
  now: number,
  apply: () => "applied" | "ignored",
): "applied" | "ignored" {
  const paused = reason !== null && room.autoTopUp.paymentReversed(reason, payment, now);
  return room.autoTopUp.quietly(() => {
    const status = apply();
    // The pause moves the customer's auto top-up cohort even when nothing was taken back.
    if (paused) room.changed(now);
    return paused ? "applied" : status;
  });
}

function idOf(value: string | { id: string } | null | undefined): string | null {
  return typeof value === "string" ? value : (value?.id ?? null);
}

/** A clawback queues a report: the stripe timer sends it. */
function afterCredit(room: Room, status: "applied" | "ignored", now: number): "applied" | "ignored" {
  if (status === "applied") room.timers.at(STRIPE_TIMER, now);
  return status;
}

export function expectedStripeBalanceNow(room: Room): number | null {
  const a = room.account.row;
  return expectedStripeBalance({
    balanceMicros: a.balance,
    pendingUsageMicros: a.pending_usage,
    failedCents: room.reports.failedBalanceCents(),
    unsentCents: room.reports.unsentBalanceCents(),
  });
}
