import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../env";
import { timingSafeEqualStrings } from "../lib/api-key-format";
import { ApiError } from "../lib/errors";

/** Whether `Authorization: Bearer <token>` carries `expected`, compared in constant time. */
export async function hasAdminToken(authorization: string | undefined, expected: string): Promise<boolean> {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "");
  return match !== null && (await timingSafeEqualStrings(match[1]!, expected));
}

/** Requires `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time. */
export function adminAuth(): MiddlewareHandler<AppEnv> {
  return async function adminAuth(c, next) {
    const expected = c.var.config.ADMIN_TOKEN;
    if (!expected) throw new ApiError("unauthorized", "The admin API is disabled: set the ADMIN_TOKEN secret.");
    if (!(await hasAdminToken(c.req.header("authorization"), expected))) {
      throw new ApiError("unauthorized", "A valid admin token is required: Authorization: Bearer <ADMIN_TOKEN>.");
    }
    await next();
  };
}
