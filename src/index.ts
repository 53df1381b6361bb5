import { Hono } from "hono";
import { ConfigError, getConfig } from "./config";
import { runCron } from "./cron";
import type { AppEnv } from "./env";
import { ApiError, errorBody } from "./errors";
import { log } from "./log";
import { hasAdminToken } from "./middleware/admin-auth";
import { limitAuthFailures } from "./middleware/auth-failures";
import { loadConfig } from "./middleware/config";
import { gatewayRequestId } from "./middleware/request-id";
import { admin } from "./routes/admin";
import { billing } from "./routes/billing";
import { email } from "./routes/email";
import { proxy } from "./routes/proxy";
import { webhooks } from "./routes/webhooks";

export { CustomerAccount } from "../durable-objects/customer-account";
export { Directory } from "../durable-objects/directory";
export { WebhookDispatcher } from "../durable-objects/webhook-dispatcher";

const app = new Hono<AppEnv>();

// Retry-After: the longest period the rate limiting binding allows (wrangler.toml, AUTH_FAILURE_LIMITER).
app.use(gatewayRequestId(), limitAuthFailures({ retryAfterSeconds: 60 }), loadConfig());
app.route("/", admin);
app.route("/", webhooks);
app.route("/", billing);
app.route("/", email);
app.route("/", proxy);

app.onError(async (error, c) => {
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
});

export default {
  fetch: app.fetch,
  async scheduled(controller, env, ctx) {
    const result = await runCron(env, getConfig(env), controller.scheduledTime);
    log.info(`cron ${controller.cron}: visited ${result.visited} customers, ${result.failed} failed${result.more ? ", more due" : ""}`);
  },
} satisfies ExportedHandler<AppEnv["Bindings"]>;
