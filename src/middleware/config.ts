import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../env";
import { getConfig } from "../lib/config";

/** Validates the environment once per isolate and hands the parsed config to every handler. */
export function loadConfig(): MiddlewareHandler<AppEnv> {
  return async function loadConfig(c, next) {
    c.set("config", getConfig(c.env));
    await next();
  };
}
