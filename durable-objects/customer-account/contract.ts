/**
 * What the worker may know of the CustomerAccount object: the types its RPC methods take and
 * answer, the live-socket headers, and the stub. The worker imports nothing else from this
 * folder (scripts/check-imports.mjs checks it); the class itself is exported from src/index.ts
 * because Workers needs it there.
 */
import type { CustomerProfile } from "../../src/lib/customer";

export { liftedByNewCard, pausedBecause } from "./auto-topup/notice";
export type { AutoTopUpState } from "./auto-topup/view";

/** The customer's own object (typed through the generated `Env`, so no import of the class). */
export function customerStub(env: Env, customerId: string) {
  return env.CUSTOMERS.get(env.CUSTOMERS.idFromName(customerId));
}

export type CustomerStub = ReturnType<typeof customerStub>;

/**
 * The worker's upgrade request says until when its viewer's session runs, which API key it signed
 * in with, and which portal session it is (so signing out closes it).
 */
export const LIVE_UNTIL_HEADER = "x-payg-live-until";
export const LIVE_KEY_HEADER = "x-payg-live-key";
export const LIVE_SESSION_HEADER = "x-payg-live-session";

/** What `authorize` decides for one request. */
export type AuthorizeResult =
  | {
      outcome: "ok";
      customerId: string;
      chargedMicros: number;
      /** Credit the request's meter may still use. */
      balanceMicros: number;
      bucket: number;
      /** The grant that paid most of it. */
      grantId: string | null;
      /** A retry of a request id already charged: nothing was charged again. */
      replayed?: true;
      /** A request billed from its response: the units reserved. */
      heldUnits?: number;
    }
  | { outcome: "replay"; response: { status: number; headers: string[][]; body: ArrayBuffer } }
  | { outcome: "idempotency_in_progress" | "idempotency_mismatch" | "idempotency_not_replayable" }
  | { outcome: "invalid_key" | "customer_deleted" }
  | {
      outcome: "insufficient_credit" | "payment_overdue";
      customer: CustomerProfile;
      balanceMicros: number;
      minimumMicros: number;
      priceMicros: number;
      expiringSoonMicros: number;
      keyCapCents: number | null;
    }
  | {
      outcome: "key_cap_reached";
      customer: CustomerProfile;
      keyId: string;
      capCents: number;
      period: "day" | "month";
      spentMicros: number;
      resetsAt: number;
    }
  | { outcome: "currency_mismatch"; customer: CustomerProfile; stripeCurrency: string; currency: string };

export interface CycleResult {
  reported: number;
  reportErrors: number;
  emailed: number;
}

/**
 * A charge's refunds as Stripe lists them, read by the webhook route for every refund event: a
 * Refund names no customer (it is routed through its charge), and `charge.refunded` lists no
 * refunds (`refunds` is not expanded in events since API 2022-11-15) while its cumulative
 * `amount_refunded` cannot say which refund failed. Refunds are tracked one by one instead.
 */
export interface ChargeRefunds {
  charge: string;
  payment_intent: string | null;
  /** The card the charge was paid with (a refund of the auto top-up card pauses auto top-up). */
  payment_method: string | null;
  currency: string;
  refunds: { id: string; amount: number; status: string | null; created: number }[];
}
