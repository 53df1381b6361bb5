/**
 * What the worker may know of the CustomerAccount object: the types its RPC methods take and
 * answer, the live-socket headers, and the stub. The worker imports nothing else from this
 * folder (scripts/check-imports.mjs checks it); the class itself is exported from src/index.ts
 * because Workers needs it there.
 */
import type { CustomerProfile } from "../../src/lib/customer";

export { liftedByNewCard, pausedBecause } from "./auto-topup/notice";
export type { AutoTopUpState } from "./auto-topup/view";
export type { TopUpListItem } from "./stripe/receipts";

import type { LeaseState } from "./leases/protocol";

export type { BucketCounter, LeaseReport, LeaseState, LeaseSyncRequest } from "./leases/protocol";

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

/**
 * A key's spend cap as it stands once this request is charged (or held): what the RateLimit
 * header fields tell the client (src/proxy/ratelimit.ts).
 */
export interface KeyCapState {
  capCents: number;
  period: "day" | "month";
  /** Micro-cents spent through the key in the current period. */
  spentMicros: number;
  /** When the period ends (ms). */
  resetsAt: number;
}

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
      /** The key has a spend cap. */
      keyCap?: KeyCapState;
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
      keyCap?: KeyCapState;
    }
  | ({ outcome: "key_cap_reached"; customer: CustomerProfile; keyId: string } & KeyCapState)
  | { outcome: "currency_mismatch"; customer: CustomerProfile; stripeCurrency: string; currency: string };

/** A payment an agent made on a 402, settled by the worker before it is handed here. */
export interface PaidGrantInput {
  /**
   * The payment's own id, the same however often it is presented: for x402 the EIP-3009
   * authorization (network, asset, payer, nonce: a nonce is used once on chain), for MPP the
   * challenge id.
   */
  id: string;
  rail: "x402" | "mpp";
  customerId: string;
  /** Whole cents, > 0. */
  amountCents: number;
  payer: string | null;
  /** The transaction hash (x402) or PaymentIntent (MPP); null when a lost settle answer was confirmed on chain. */
  transaction: string | null;
  /** x402 with record_in_stripe: Stripe's name of the payment's network; the payment is then also recorded as a crypto PaymentIntent. */
  stripeNetwork?: string | null;
  /** A Stripe PaymentIntent the payment is recorded as: refunds and disputes of it claw the grant back. */
  paymentIntent?: string | null;
  /** What the client is told, the same on every replay (x402: the SettlementResponse JSON; MPP: the receipt). */
  receipt: string;
}

export interface PaidAuthorizeResult {
  decision: AuthorizeResult;
  /** The receipt of the payment's first settlement. */
  receipt: string;
  /** The payment was credited before (a retry): nothing was credited now. */
  replayed: boolean;
  /** Credited: false only when the balance limit refused it (logged). */
  credited: boolean;
}

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

/** What `leaseSync` answers (leases/protocol.ts). */
export interface LeaseSyncReply {
  /** For `direct`: exactly what authorize answers. */
  decision: AuthorizeResult | null;
  /** null: no lease (none granted, or the one reported is gone: returned or expired at the object). */
  lease: LeaseState | null;
}
