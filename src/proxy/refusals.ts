import type { AuthorizeResult } from "../../durable-objects/customer-account/contract";
import type { Config } from "../lib/config";
import { ApiError, errorBody } from "../lib/errors";
import { mergeValues } from "../lib/merge";
import { formatMoney } from "../lib/money";
import { renderJson } from "../lib/template";
import { UNKNOWN_KEY } from "../middleware/api-key";

/** The refusals about money: credit, an unpaid invoice, a key's cap, a Stripe balance in another currency. */
export type MoneyRefusal = Extract<AuthorizeResult, { outcome: "insufficient_credit" | "payment_overdue" | "key_cap_reached" | "currency_mismatch" }>;

export function isMoneyRefusal(decision: AuthorizeResult): decision is MoneyRefusal {
  return ["insufficient_credit", "payment_overdue", "key_cap_reached", "currency_mismatch"].includes(decision.outcome);
}

/** The 402 body for a request the credit cannot pay for: GOVERNANCE.blocked_body with its merge tags. */
export function creditRefusal(config: Config, decision: Extract<AuthorizeResult, { outcome: "insufficient_credit" | "payment_overdue" }>): Record<string, unknown> {
  return renderJson(config.GOVERNANCE.blocked_body, mergeValues(config, decision.customer, decision)) as Record<string, unknown>;
}

/** Throws the refusal's JSON error unless the request may pass (the templated 402 is answered before). */
export function refuse(
  config: Config,
  decision: Exclude<AuthorizeResult, { outcome: "insufficient_credit" | "replay" }>,
): asserts decision is Extract<AuthorizeResult, { outcome: "ok" }> {
  const error = refusalError(config, decision);
  if (error) throw error;
}

/**
 * A refusal as the client is told it: the 402 template's body and message for credit, the JSON
 * error of any other money refusal (an MCP tool call gets it inside its tool result).
 */
export function moneyRefusalBody(config: Config, decision: MoneyRefusal, requestId: string): { message: string; body: Record<string, unknown> } {
  if (decision.outcome === "insufficient_credit") {
    const body = creditRefusal(config, decision);
    const message = typeof body.message === "string" ? body.message : typeof body.code === "string" ? body.code : decision.outcome;
    return { message, body };
  }
  const error = refusalError(config, decision)!;
  return { message: error.message, body: errorBody(error.code, error.message, requestId, error.details) };
}

/** The JSON error of a refusal; null when the request may pass. */
function refusalError(config: Config, decision: Exclude<AuthorizeResult, { outcome: "replay" }>): ApiError | null {
  switch (decision.outcome) {
    case "ok":
      return null;
    case "invalid_key":
      return new ApiError("invalid_api_key", UNKNOWN_KEY);
    case "customer_deleted":
      return new ApiError("customer_deleted", "This customer account has been deleted.");
    case "insufficient_credit":
    case "payment_overdue":
      // Credit is refused with the 402 template (creditRefusal); the plain error only completes the type.
      return decision.outcome === "payment_overdue"
        ? new ApiError("payment_overdue", "An invoice is unpaid; access resumes once it is paid.", { customer_id: decision.customer.id })
        : new ApiError("insufficient_credit", "Your API credit is used up.", { customer_id: decision.customer.id });
    case "currency_mismatch":
      return new ApiError(
        "currency_mismatch",
        `This account's Stripe balance is in ${decision.stripeCurrency.toUpperCase()}, not ${decision.currency.toUpperCase()}: it cannot pay for these requests.`,
        { customer_id: decision.customer.id },
      );
    case "key_cap_reached":
      return new ApiError(
        "key_cap_reached",
        `This API key has reached its spend cap of ${formatMoney(decision.capCents * 1_000_000, config.PRICING.currency)} per ${decision.period}; other keys of the account keep working.`,
        { customer_id: decision.customer.id, key_id: decision.keyId, cap_cents: decision.capCents, period: decision.period, resets_at: decision.resetsAt },
      );
    case "idempotency_in_progress":
      return new ApiError("idempotency_in_progress", "A request with this Idempotency-Key is still in flight; retry once it has finished.");
    case "idempotency_mismatch":
      return new ApiError("idempotency_mismatch", "This Idempotency-Key was used for a request with another method, path or body.");
    case "idempotency_not_replayable":
      return new ApiError(
        "idempotency_not_replayable",
        "This Idempotency-Key's request was charged, but its response cannot be replayed (streamed, too large, or never finished); nothing was charged again. Use a new key for a new request.",
      );
  }
}
