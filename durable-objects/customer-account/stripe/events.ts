import type Stripe from "stripe";
import { idOf } from "../../../src/lib/stripe-ids";
import { markDeleted, profileFromStripe, upsertProfile } from "../access/profile";
import { creditMppPaymentIntent } from "../agent-payments/paid-grants";
import { applyPaymentIntentEvent } from "../auto-topup/charge";
import type { ChargeRefunds } from "../contract";
import type { AccountContext } from "../core/context";
import { createGrant } from "../credit/credits";
import { applyDispute } from "../credit/disputes";
import { recordIgnoredPayment } from "../credit/ignored-payments";
import { applyRefund } from "../credit/refunds";
import { forgetTopUpPayment, recordDocument, recordTopUpPayment } from "./receipts";
import { stripeAgrees } from "./reconcile";

export type EventStatus = "applied" | "duplicate" | "ignored";

/** The Stripe work (sending reports, reconciling) runs from this timer, under the object's lock. */
export const STRIPE_TIMER = "stripe";

/**
 * Applies one verified Stripe event, synchronously: the webhook is answered as soon as the event
 * is recorded here. Nothing in this step calls Stripe; what needs Stripe (reconciling a balance
 * change, sending the reports a top-up queued) is left to the `stripe` timer, which runs under
 * the lock and respects each report's backoff. Duplicates are acknowledged and ignored.
 */
export function applyStripeEvent(context: AccountContext, customerId: string, event: Stripe.Event, refunds?: ChargeRefunds): EventStatus {
  context.ensure(customerId);
  if (context.stripeEvents.seen(event.id)) return "duplicate";
  const status = context.atomically(() => {
    const status = apply(context, customerId, event, refunds);
    context.stripeEvents.record(event.id, event.type, Date.now());
    return status;
  });
  context.directory.schedule();
  return status;
}

function apply(context: AccountContext, customerId: string, event: Stripe.Event, refunds: ChargeRefunds | undefined): "applied" | "ignored" {
  const now = Date.now();
  switch (event.type) {
    case "customer.created":
    case "customer.updated": {
      const customer = event.data.object;
      if (event.created >= context.account.row.profile_event_at) {
        const previous = (event.data.previous_attributes as { metadata?: Record<string, string> } | undefined)?.metadata;
        upsertProfile(context, customerId, profileFromStripe(customer, previous));
        context.account.set({ profile_event_at: event.created, ...(customer.currency ? { stripe_currency: customer.currency } : {}) });
      }
      const balanceChanged = event.type === "customer.created" || (event.data.previous_attributes as Record<string, unknown> | undefined)?.balance !== undefined;
      // Our own balance transactions come back as customer.updated: when the new balance is what
      // the edge already expects, there is nothing to fetch.
      if (balanceChanged && !stripeAgrees(context, customer.balance)) {
        context.account.set({ reconcile_needed: 1 });
        context.timers.at(STRIPE_TIMER, now);
      }
      return "applied";
    }
    case "customer.deleted":
      markDeleted(context);
      return "applied";
    case "checkout.session.completed":
    case "checkout.session.async_payment_succeeded": {
      const session = event.data.object;
      if (session.payment_status !== "paid") return "ignored";
      const ignore = (reason: string) => {
        recordIgnoredPayment(context.sql, { event_id: event.id, object_id: session.id, amount: session.amount_total, currency: session.currency, reason }, now);
        return "ignored" as const;
      };
      // Only top-ups this gateway created: other payments on the account are not API credit.
      const credit = Number(session.metadata?.payg_credit_cents);
      if (session.mode !== "payment") return ignore(`a ${session.mode}-mode session is not a top-up`);
      if (!Number.isSafeInteger(credit) || credit <= 0) return ignore("no valid payg_credit_cents metadata: not a top-up this gateway created");
      if (session.currency !== context.config.PRICING.currency) return ignore(`paid in ${session.currency}, not ${context.config.PRICING.currency}`);
      // Tax (Stripe Tax, exclusive) is paid on top of the credit and never credited: the grant is the pre-tax amount.
      const tax = session.total_details?.amount_tax ?? 0;
      if (session.amount_total === null || session.amount_total - tax !== credit)
        return ignore(`paid ${session.amount_total} with ${tax} tax, its payg_credit_cents say ${credit}`);
      const paymentIntent = idOf(session.payment_intent);
      // Recorded first: a refund or dispute that arrived before takes back its pre-tax share (creditShare).
      if (paymentIntent) {
        recordTopUpPayment(context.sql, {
          paymentIntent,
          source: "checkout",
          reference: session.id,
          creditCents: credit,
          taxCents: tax,
          totalCents: session.amount_total,
          currency: session.currency,
          invoice: idOf(session.invoice),
          createdAt: event.created * 1000,
        });
      }
      // A refund or dispute that arrived first is applied as it lands: that starts no top-up.
      const result = context.autoTopUp.quietly(() =>
        createGrant(context, {
          customerId,
          amountCents: credit,
          reason: `Stripe Checkout ${session.id}`,
          reference: `checkout_${session.id}`,
          source: "checkout",
          paymentIntent,
        }),
      );
      if ((result.status === "balance_limit" || result.status === "conflict") && paymentIntent) forgetTopUpPayment(context.sql, paymentIntent);
      if (result.status === "balance_limit") return ignore("the balance would pass the largest the gateway holds; refund it");
      if (result.status === "conflict") return ignore(`a grant checkout_${session.id} with other terms exists`);
      context.timers.at(STRIPE_TIMER, now);
      return "applied";
    }
    case "payment_intent.succeeded":
      if (event.data.object.metadata?.payg_mpp_challenge) return afterCredit(context, creditMppPaymentIntent(context, customerId, event.data.object), now);
      return afterCredit(context, applyPaymentIntentEvent(context, event, now), now);
    case "payment_intent.payment_failed":
      return afterCredit(context, applyPaymentIntentEvent(context, event, now), now);
    case "charge.refunded":
    case "charge.refund.updated":
    case "refund.created":
    case "refund.updated":
    case "refund.failed": {
      // The route lists the charge's refunds with every refund event (see ChargeRefunds).
      if (!refunds) return "ignored";
      // A refund leaving the auto top-up card pauses it; a refund's later updates (failed, say) do not.
      const reason = event.type === "charge.refunded" || event.type === "refund.created" ? "refund" : null;
      const payment = { paymentIntent: refunds.payment_intent, paymentMethod: refunds.payment_method };
      return afterCredit(
        context,
        clawback(context, reason, payment, now, () => applyRefund(context, refunds, now)),
        now,
      );
    }
    case "charge.dispute.created":
    case "charge.dispute.updated":
    case "charge.dispute.closed":
    case "charge.dispute.funds_withdrawn":
    case "charge.dispute.funds_reinstated": {
      const dispute = event.data.object;
      // A chargeback (opened as one, or an inquiry whose funds were then withdrawn) or a lost
      // dispute pauses auto top-up, once each; an inquiry, updates and wins pause nothing.
      const pauses =
        (event.type === "charge.dispute.created" && !dispute.status.startsWith("warning_")) ||
        event.type === "charge.dispute.funds_withdrawn" ||
        (event.type === "charge.dispute.closed" && dispute.status === "lost");
      const payment = { paymentIntent: idOf(dispute.payment_intent), paymentMethod: null };
      return afterCredit(
        context,
        clawback(context, pauses ? "dispute" : null, payment, now, () => applyDispute(context, dispute, event, now)),
        now,
      );
    }
    case "charge.succeeded": {
      const charge = event.data.object;
      recordDocument(
        context.sql,
        { id: charge.id, kind: "receipt", paymentIntent: idOf(charge.payment_intent), url: charge.receipt_url ?? null, pdfUrl: null, number: charge.receipt_number },
        now,
      );
      return "applied";
    }
    case "invoice.paid":
    case "invoice.payment_failed":
    case "invoice.voided":
    case "invoice.marked_uncollectible": {
      const invoice = event.data.object;
      // A Checkout top-up's invoice (GOVERNANCE.checkout_invoice) is paid with it: a link for the
      // top-up list, not a post-paid invoice that could block the account.
      if (invoice.metadata?.payg_credit_cents !== undefined) {
        if (event.type === "invoice.paid")
          recordDocument(
            context.sql,
            { id: invoice.id!, kind: "invoice", paymentIntent: null, url: invoice.hosted_invoice_url ?? null, pdfUrl: invoice.invoice_pdf ?? null, number: invoice.number },
            now,
          );
        return "applied";
      }
      context.invoices.record(invoice.id!, event.type, now);
      context.changed();
      return "applied";
    }
    default:
      return "ignored";
  }
}

/**
 * A refund or dispute step (clawbacks.ts): when the payment was made with the auto top-up card,
 * auto top-up pauses first; whatever the card, the step starts no top-up (the next debit may).
 */
function clawback(
  context: AccountContext,
  reason: "refund" | "dispute" | null,
  payment: { paymentIntent: string | null; paymentMethod: string | null },
  now: number,
  apply: () => "applied" | "ignored",
): "applied" | "ignored" {
  const paused = reason !== null && context.autoTopUp.paymentReversed(reason, payment, now);
  return context.autoTopUp.quietly(() => {
    const status = apply();
    // The pause moves the customer's auto top-up cohort even when nothing was taken back.
    if (paused) context.changed(now);
    return paused ? "applied" : status;
  });
}

/** A clawback queues a report: the stripe timer sends it. */
function afterCredit(context: AccountContext, status: "applied" | "ignored", now: number): "applied" | "ignored" {
  if (status === "applied") context.timers.at(STRIPE_TIMER, now);
  return status;
}
