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
