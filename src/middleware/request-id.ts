import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../env";

/**
 * Every request gets an id the gateway generated: in `c.var.requestId`, in error bodies, on the
 * response and on the request the origin sees. A client-sent X-Request-Id is never taken for it
 * (the proxy passes it on as X-Client-Request-Id). The id is a UUIDv7 (RFC 9562): time-ordered, so
 * the charge log that keys each charge by it grows at one end of its index instead of at random.
 */
export function gatewayRequestId(): MiddlewareHandler<AppEnv> {
  return async function gatewayRequestId(c, next) {
    const id = uuidV7(Date.now());
    c.set("requestId", id);
    c.header("x-request-id", id);
    await next();
  };
}

/**
 * 48 bits of milliseconds, version 7, the variant bits and 74 random bits: the time over the
 * front of a random (v4) UUID, whose variant bits are already RFC 9562's.
 */
export function uuidV7(now: number): string {
  const time = now.toString(16).padStart(12, "0").slice(-12);
  return `${time.slice(0, 8)}-${time.slice(8)}-7${crypto.randomUUID().slice(15)}`;
}
