import type Stripe from "stripe";
import { applyDispute, applyRefund } from "./clawbacks";
import { createGrant } from "./credits";
import { markDeleted, profileFromStripe, upsertProfile } from "./profile";
import type { Room } from "./room";
import { reconcile } from "./stripe-reconcile";

export type EventStatus = "applied" | "duplicate" | "ignored";

/**
 * Applies one verified Stripe event (the caller holds the lock); duplicates are acknowledged and
 * ignored. A balance change never trusts the event's balance: pending reports are settled and
 * the customer is fetched, so stale, duplicated and reordered events cannot move it backwards.
 */
export async function applyStripeEvent(room: Room, customerId: string, event: Stripe.Event): Promise<EventStatus> {
  room.ensure(customerId);
  if (room.stripeEvents.seen(event.id)) return "duplicate";
  const status = await apply(room, customerId, event);
  room.stripeEvents.record(event.id, event.type, Date.now());
  room.directory.schedule();
  return status;
}

async function apply(room: Room, customerId: string, event: Stripe.Event): Promise<"applied" | "ignored"> {
  switch (event.type) {
    case "customer.created":
    case "customer.updated": {
      if (event.created >= room.account.row.profile_event_at) {
        const previous = (event.data.previous_attributes as { metadata?: Record<string, string> } | undefined)?.metadata;
        upsertProfile(room, customerId, profileFromStripe(event.data.object, previous));
        room.account.set({ profile_event_at: event.created });
      }
      const balanceChanged =
        event.type === "customer.created" || (event.data.previous_attributes as Record<string, unknown> | undefined)?.balance !== undefined;
      if (balanceChanged) {
        const flushed = await room.reports.flush(Date.now(), true);
        if (flushed.pending > 0) {
          room.account.set({ reconcile_needed: 1 });
          throw new Error("Stripe reports still pending; reconcile deferred");
        }
        await reconcile(room, `${event.type} ${event.id}`);
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
      const paymentIntent = typeof session.payment_intent === "string" ? session.payment_intent : (session.payment_intent?.id ?? null);
      createGrant(room, {
        customerId,
        amountCents: credit,
        reason: `Stripe Checkout ${session.id}`,
        reference: `checkout_${session.id}`,
        source: "checkout",
        paymentIntent,
      });
      await room.reports.flush(Date.now());
      return "applied";
    }
    case "charge.refunded":
      return applyRefund(room, event.data.object, Date.now());
    case "charge.dispute.created":
    case "charge.dispute.closed":
      return applyDispute(room, event.data.object, event.type === "charge.dispute.closed", Date.now());
    case "invoice.paid":
    case "invoice.payment_failed":
    case "invoice.voided":
    case "invoice.marked_uncollectible":
      room.invoices.record(event.data.object.id!, event.type, Date.now());
      room.changed();
      return "applied";
    default:
      return "ignored";
  }
}
