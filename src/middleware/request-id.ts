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

/** 48 bits of milliseconds, version 7, the variant bits and 74 random bits. */
export function uuidV7(now: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  const time = now.toString(16).padStart(12, "0").slice(-12);
  for (let i = 0; i < 6; i++) bytes[i] = parseInt(time.slice(i * 2, i * 2 + 2), 16);
  bytes[6] = 0x70 | (bytes[6]! & 0x0f);
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  let hex = "";
  for (const byte of bytes) hex += byte.toString(16).padStart(2, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
