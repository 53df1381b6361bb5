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
  | { outcome: "ok"; customerId: string; chargedMicros: number; balanceMicros: number; bucket: number }
  | { outcome: "invalid_key" | "customer_deleted" }
  | {
      outcome: "insufficient_credit" | "payment_overdue";
      customer: CustomerProfile;
      balanceMicros: number;
      minimumMicros: number;
      priceMicros: number;
    };

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
