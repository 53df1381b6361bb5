import type { AuthorizeResult } from "../../durable-objects/customer-account/contract";
import type { Config } from "../lib/config";
import { ApiError, ERROR_STATUS, type ErrorCode, errorBody } from "../lib/errors";
import { mergeValues, portalUrl } from "../lib/merge";
import { formatMoney } from "../lib/money";
import { renderJson } from "../lib/template";
import { UNKNOWN_KEY } from "../middleware/api-key";
import { addKeyCapFields, KEY_CAP_POLICY, secondsToReset } from "./ratelimit";

/**
 * Every refusal about money is rendered here, one way: a request refused for credit, a key's cap,
 * an unpaid invoice or the account's currency, and (for the agent payment rails: x402, the Payment
 * HTTP authentication scheme) a payment that failed (`kind: "payment"`). The proxy answers it as
 * an HTTP response (`refusalResponse`); an MCP tool call gets the same body inside its tool result
 * (`moneyRefusalBody`). With GOVERNANCE.problem_details the body is an RFC 9457 problem (`type`,
 * `title`, `status`, `detail`, and the same fields as the default body), served as
 * `application/problem+json`.
 */
export type MoneyRefusal =
  | Extract<AuthorizeResult, { outcome: "insufficient_credit" | "payment_overdue" | "key_cap_reached" | "currency_mismatch" }>
  | {
      /** A payment rail's refusal: its stable code (in ERROR_STATUS), what went wrong, its own fields and headers. */
      outcome: "payment";
      code: ErrorCode;
      title: string;
      detail: string;
      fields?: Record<string, unknown>;
      headers?: Record<string, string>;
      /** A spec's own problem type (the Payment auth scheme's): an RFC 9457 problem whatever GOVERNANCE.problem_details says, with the house `error` member too. */
      problem?: string;
    };

export const MONEY_OUTCOMES = new Set(["insufficient_credit", "payment_overdue", "key_cap_reached", "currency_mismatch"]);

export function isMoneyRefusal(decision: AuthorizeResult): decision is Extract<MoneyRefusal, { outcome: AuthorizeResult["outcome"] }> {
  return MONEY_OUTCOMES.has(decision.outcome);
}

/** Problem types are tag URIs (RFC 4151): stable names, not pages to fetch (RFC 9457 §3.1.1). */
export function problemType(code: string): string {
  return `tag:payg-edge-gateway,2026:problems/${code}`;
}

interface Refusal {
  code: string;
  status: number;
  title: string;
  detail: string;
  /** The refusal's fields: in `error.details` of the house error format, at the top of a problem. */
  fields: Record<string, unknown>;
  headers: Headers;
  /** The provider's own 402 body (GOVERNANCE.blocked_body), answered as it is rendered. */
  templated?: Record<string, unknown>;
  problem?: string;
}

function describe(config: Config, refusal: MoneyRefusal, now: number): Refusal {
  const headers = new Headers();
  const nextSteps = { topup_url: config.GOVERNANCE.topup_url, portal_url: portalUrl(config) };
  switch (refusal.outcome) {
    case "insufficient_credit": {
      addKeyCapFields(headers, refusal.keyCap, now);
      const templated = renderJson(config.GOVERNANCE.blocked_body, mergeValues(config, refusal.customer, refusal)) as Record<string, unknown>;
      const detail = typeof templated.message === "string" ? templated.message : "The account's credit does not cover this request.";
      return { code: "insufficient_credit", status: 402, title: "Insufficient credit", detail, fields: templated, headers, templated };
    }
    case "key_cap_reached": {
      addKeyCapFields(headers, refusal, now);
      const retryAfter = secondsToReset(refusal, now);
      headers.set("retry-after", String(retryAfter));
      return {
        code: "key_cap_reached",
        status: 402,
        title: "API key spend cap reached",
        detail: `This API key has reached its spend cap of ${formatMoney(refusal.capCents * 1_000_000, config.PRICING.currency)} per ${refusal.period}; other keys of the account keep working.`,
        fields: {
          customer_id: refusal.customer.id,
          key_id: refusal.keyId,
          cap_cents: refusal.capCents,
          period: refusal.period,
          resets_at: refusal.resetsAt,
          retry_after_seconds: retryAfter,
          "violated-policies": [KEY_CAP_POLICY],
          next_steps: { portal_url: nextSteps.portal_url },
        },
        headers,
      };
    }
    case "payment_overdue":
      return {
        code: "payment_overdue",
        status: 402,
        title: "Payment overdue",
        detail: "An invoice is unpaid; access resumes once it is paid.",
        fields: { customer_id: refusal.customer.id, next_steps: { portal_url: nextSteps.portal_url } },
        headers,
      };
    case "currency_mismatch":
      return {
        code: "currency_mismatch",
        status: 402,
        title: "Currency mismatch",
        detail: `This account's Stripe balance is in ${refusal.stripeCurrency.toUpperCase()}, not ${refusal.currency.toUpperCase()}: it cannot pay for these requests.`,
        fields: { customer_id: refusal.customer.id },
        headers,
      };
    case "payment":
      return {
        code: refusal.code,
        status: ERROR_STATUS[refusal.code],
        title: refusal.title,
        detail: refusal.detail,
        fields: refusal.fields ?? {},
        headers: new Headers(refusal.headers),
        ...(refusal.problem ? { problem: refusal.problem } : {}),
      };
  }
}

/** The body of a described refusal: a problem (GOVERNANCE.problem_details), the provider's 402 template, or the house error. */
function bodyOf(config: Config, r: Refusal, requestId: string): Record<string, unknown> {
  if (r.problem) return { type: r.problem, title: r.title, status: r.status, detail: r.detail, ...r.fields, ...errorBody(r.code as ErrorCode, r.detail, requestId) };
  if (config.GOVERNANCE.problem_details) {
    return { type: problemType(r.code), title: r.title, status: r.status, detail: r.detail, code: r.code, ...r.fields, request_id: requestId };
  }
  return r.templated ?? errorBody(r.code as ErrorCode, r.detail, requestId, r.fields);
}

/** The response to a refusal about money, in the house format or as a problem (GOVERNANCE.problem_details). */
export function refusalResponse(config: Config, requestId: string, refusal: MoneyRefusal, now = Date.now()): Response {
  const r = describe(config, refusal, now);
  r.headers.set("x-request-id", requestId);
  r.headers.set("content-type", config.GOVERNANCE.problem_details || r.problem ? "application/problem+json" : "application/json");
  return new Response(JSON.stringify(bodyOf(config, r, requestId)), { status: r.status, headers: r.headers });
}

/**
 * A refusal as a body and a one-line message, for an answer that is not an HTTP 402 of its own:
 * an MCP tool call gets it inside its tool result (the x402 MCP transport's shape). The body is
 * exactly what `refusalResponse` would send.
 */
export function moneyRefusalBody(config: Config, refusal: MoneyRefusal, requestId: string, now = Date.now()): { message: string; body: Record<string, unknown> } {
  const r = describe(config, refusal, now);
  return { message: r.detail, body: bodyOf(config, r, requestId) };
}

/** Throws the JSON error of a refusal that is not about money (those are rendered above); returns when the request may pass. */
export function refuse(decision: Exclude<AuthorizeResult, MoneyRefusal | { outcome: "replay" }>): asserts decision is Extract<AuthorizeResult, { outcome: "ok" }> {
  switch (decision.outcome) {
    case "ok":
      return;
    case "invalid_key":
      throw new ApiError("invalid_api_key", UNKNOWN_KEY);
    case "customer_deleted":
      throw new ApiError("customer_deleted", "This customer account has been deleted.");
    case "idempotency_in_progress":
      throw new ApiError("idempotency_in_progress", "A request with this Idempotency-Key is still in flight; retry once it has finished.");
    case "idempotency_mismatch":
      throw new ApiError("idempotency_mismatch", "This Idempotency-Key was used for a request with another method, path or body.");
    case "idempotency_not_replayable":
      throw new ApiError(
        "idempotency_not_replayable",
        "This Idempotency-Key's request was charged, but its response cannot be replayed (streamed, too large, or never finished); nothing was charged again. Use a new key for a new request.",
      );
  }
}
