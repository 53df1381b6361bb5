import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";

/**
 * Counts failed authentications (every 401: a missing, malformed, forged or revoked API key, a
 * wrong admin token) per client IP in the AUTH_FAILURE_LIMITER binding (wrangler.toml
 * `[[ratelimits]]`, 100 a minute). Past the limit the failure is answered 429 instead of 401.
 * Successful requests are never counted, so a customer behind the same address keeps working.
 */
export function limitAuthFailures(options: { retryAfterSeconds: number }): MiddlewareHandler<AppEnv> {
  return async function limitAuthFailures(c, next) {
    await next();
    if (!(c.error instanceof ApiError) || c.error.status !== 401 || !c.env.AUTH_FAILURE_LIMITER) return;
    const ip = c.req.header("cf-connecting-ip") ?? "unknown";
    const { success } = await c.env.AUTH_FAILURE_LIMITER.limit({ key: ip });
    if (!success) {
      throw new ApiError("rate_limited", "Too many failed authentications from this address; try again later.", undefined, {
        "retry-after": String(options.retryAfterSeconds),
      });
    }
  };
}
