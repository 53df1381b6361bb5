import type { MiddlewareHandler } from "hono";
import { requestId } from "hono/request-id";
import type { AppEnv } from "../env";

/**
 * Every request gets an id the gateway generated: in `c.var.requestId`, in error bodies, on the
 * response and on the request the origin sees. A client-sent X-Request-Id is never taken for it
 * (the proxy passes it on as X-Client-Request-Id).
 */
export function gatewayRequestId(): MiddlewareHandler<AppEnv> {
  // An empty header name makes Hono's middleware ignore any client header and always generate.
  const generate = requestId({ headerName: "" });
  return async function gatewayRequestId(c, next) {
    await generate(c, async () => {
      c.header("x-request-id", c.var.requestId);
      await next();
    });
  };
}
