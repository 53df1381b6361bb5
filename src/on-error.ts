import type { Context } from "hono";
import { ConfigError } from "./config";
import type { AppEnv } from "./env";
import { ApiError, errorBody } from "./errors";
import { log } from "./log";

/** Every JSON error in the house format `{error: {code, message, requestId}}`, never with internals. */
export function jsonError(error: Error, c: Context<AppEnv>) {
  const id = c.get("requestId") ?? crypto.randomUUID();
  if (error instanceof ApiError) {
    return c.json(errorBody(error.code, error.message, id, error.details), error.status);
  }
  if (error instanceof ConfigError) {
    log.error(error.message);
    return c.json(errorBody("configuration_error", error.message, id), 500);
  }
  log.error(`request ${id} failed`, error);
  return c.json(errorBody("internal_error", "Something went wrong on our side.", id), 500);
}
