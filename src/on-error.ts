import type { Context } from "hono";
import type { AppEnv } from "./env";
import { ConfigError } from "./lib/config";
import { ApiError, errorBody } from "./lib/errors";
import { log } from "./lib/log";
import { hasAdminToken } from "./middleware/admin-auth";

/** Every JSON error in the house format `{error: {code, message, requestId}}`, never with internals. */
export async function jsonError(error: Error, c: Context<AppEnv>) {
  const id = c.get("requestId") ?? crypto.randomUUID();
  if (error instanceof ApiError) {
    return c.json(errorBody(error.code, error.message, id, error.details), error.status, error.headers);
  }
  if (error instanceof ConfigError) {
    log.error(`request ${id}: ${error.message}`);
    // The problem list is for the operator (and the log): the config is unreadable, so the admin
    // token is taken from the raw binding.
    const token = c.env.ADMIN_TOKEN;
    if (token && token.length >= 16 && (await hasAdminToken(c.req.header("authorization"), token))) {
      return c.json(errorBody("configuration_error", error.message, id, { problems: error.problems }), 500);
    }
    return c.json(errorBody("configuration_error", `The gateway is misconfigured; the operator can find the problem in the log under request ${id}.`, id), 500);
  }
  log.error(`request ${id} failed`, error);
  return c.json(errorBody("internal_error", "Something went wrong on our side.", id), 500);
}
