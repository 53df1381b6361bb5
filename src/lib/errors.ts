import type { ContentfulStatusCode } from "hono/utils/http-status";

/** Stable error codes: clients branch on these, so never rename one. */
export const ERROR_STATUS = {
  invalid_json: 400,
  invalid_request: 400,
  invalid_signature: 400,
  unknown_model: 400,
  unauthorized: 401,
  invalid_api_key: 401,
  customer_deleted: 401,
  forbidden: 403,
  insufficient_credit: 402,
  payment_overdue: 402,
  key_cap_reached: 402,
  currency_mismatch: 402,
  // Agent payments of a 402 (docs/concepts/agent-payments.md).
  payment_invalid: 402,
  payment_failed: 402,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  stripe_not_configured: 409,
  idempotency_in_progress: 409,
  idempotency_not_replayable: 409,
  payload_too_large: 413,
  idempotency_mismatch: 422,
  rate_limited: 429,
  internal_error: 500,
  configuration_error: 500,
  origin_unavailable: 502,
  origin_timeout: 502,
  upstream_error: 502,
  payment_unconfirmed: 502,
} as const satisfies Record<string, ContentfulStatusCode>;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class ApiError extends Error {
  readonly status: ContentfulStatusCode;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
    /** Extra response headers, e.g. Retry-After on a 429. */
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = "ApiError";
    this.status = ERROR_STATUS[code];
  }
}

export function errorBody(code: ErrorCode, message: string, requestId: string, details?: Record<string, unknown>) {
  return { error: { code, message, requestId, ...(details ? { details } : {}) } };
}
