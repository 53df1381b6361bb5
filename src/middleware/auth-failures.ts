import type { Context, MiddlewareHandler } from "hono";
import type { AppEnv } from "../env";
import { ApiError } from "../lib/errors";

/**
 * Counts failed authentications (every 401: a missing, malformed, forged or revoked API key, a
 * wrong admin token) per client IP in the AUTH_FAILURE_LIMITER binding (wrangler.toml
 * `[[ratelimits]]`, 100 a minute). Past the limit the failure is answered 429 instead of 401.
 * Successful requests are never counted, so a customer behind the same address keeps working.
 */
export function limitAuthFailures(options: { retryAfterSeconds: number }): MiddlewareHandler<AppEnv> {
  return async function limitAuthFailures(c, next) {
    await next();
    if (!(c.error instanceof ApiError) || c.error.status !== 401) return;
    if (await authFailureLimited(c)) {
      throw new ApiError("rate_limited", "Too many failed authentications from this address; try again later.", undefined, {
        "retry-after": String(options.retryAfterSeconds),
      });
    }
  };
}

/** The longest period the rate limiting binding allows (wrangler.toml, AUTH_FAILURE_LIMITER). */
export const SIGN_IN_RETRY_AFTER_SECONDS = 60;
export const TOO_MANY_SIGN_INS = "Too many failed sign-ins from this address; try again in a minute.";

/**
 * Counts one failed authentication from the caller's address (for the sign-in pages, which answer
 * with a page rather than an error); true when past the limit, to be answered 429.
 */
export async function authFailureLimited(c: Context<AppEnv>): Promise<boolean> {
  if (!c.env.AUTH_FAILURE_LIMITER) return false;
  const { success } = await c.env.AUTH_FAILURE_LIMITER.limit({ key: c.req.header("cf-connecting-ip") ?? "unknown" });
  return !success;
}
