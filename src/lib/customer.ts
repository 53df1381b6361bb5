import type { Cohort } from "./config";

export type Plan = "prepaid" | "postpaid";

export interface CustomerProfile {
  id: string;
  email: string | null;
  name: string | null;
  metadata: Record<string, string>;
  plan: Plan;
  minimum_balance_cents: number | null;
  deleted: boolean;
}

export interface ProfilePatch {
  email?: string | null;
  name?: string | null;
  metadata?: Record<string, string>;
  plan?: Plan;
  minimum_balance_cents?: number | null;
}

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

export interface DirectorySnapshot {
  customerId: string;
  email: string | null;
  name: string | null;
  deleted: boolean;
  cohorts: { cohort: Cohort; entered_at: number }[];
  dueAt: number | null;
  seq: number;
}

export interface CycleResult {
  reported: number;
  reportErrors: number;
  emailed: number;
}
