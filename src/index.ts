import { Hono } from "hono";
import { runCron } from "./cron";
import { dashboard } from "./dashboard";
import type { AppEnv } from "./env";
import { getConfig } from "./lib/config";
import { log } from "./lib/log";
import { limitAuthFailures, SIGN_IN_RETRY_AFTER_SECONDS } from "./middleware/auth-failures";
import { loadConfig } from "./middleware/config";
import { gatewayRequestId } from "./middleware/request-id";
import { jsonError } from "./on-error";
import { portal } from "./portal";
import { admin } from "./routes/admin";
import { billing } from "./routes/billing";
import { email } from "./routes/email";
import { proxy } from "./routes/proxy";
import { stripeEvents } from "./routes/stripe-events";

export { CustomerAccount } from "../durable-objects/customer-account";
export { Directory } from "../durable-objects/directory/index";
export { WebhookDispatcher } from "../durable-objects/webhook-dispatcher";

const app = new Hono<AppEnv>();

app.use(gatewayRequestId(), limitAuthFailures({ retryAfterSeconds: SIGN_IN_RETRY_AFTER_SECONDS }), loadConfig());
app.route("/", admin);
app.route("/", stripeEvents);
app.route("/", billing);
app.route("/", email);
// Reserved like /admin: the operator dashboard and the customer portal (pages, assets, live sockets).
app.route("/", dashboard);
app.route("/", portal);
app.route("/", proxy);

app.onError(jsonError);

export default {
  fetch: app.fetch,
  async scheduled(controller, env, _ctx) {
    const result = await runCron(env, getConfig(env), controller.scheduledTime);
    log.info(`cron ${controller.cron}: visited ${result.visited} customers, ${result.failed} failed${result.more ? ", more due" : ""}`);
  },
} satisfies ExportedHandler<AppEnv["Bindings"]>;
