import type { Plan } from "../../../src/lib/customer";

export interface RequestState {
  plan: Plan;
  balanceMicros: number;
  minimumMicros: number;
  priceMicros: number;
  /** Post-paid only: an invoice is unpaid and the rule blocks such customers. */
  overdue: boolean;
}

export type Verdict = "ok" | "insufficient_credit" | "payment_overdue";

/**
 * The governance rule, with no I/O: may this request pass? Prepaid customers pass while the
 * price leaves at least the minimum balance (free requests always pass); post-paid customers
 * pass unless an invoice is overdue.
 */
export function decide(s: RequestState): Verdict {
  if (s.plan === "postpaid") return s.overdue ? "payment_overdue" : "ok";
  if (s.priceMicros > 0 && s.balanceMicros - s.priceMicros < s.minimumMicros) return "insufficient_credit";
  return "ok";
}
