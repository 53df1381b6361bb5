import { Hono } from "hono";
import { requestId } from "hono/request-id";
import { getConfig } from "./config";
import { runCron } from "./cron";
import type { AppEnv } from "./env";
import { log } from "./log";
import { loadConfig } from "./middleware/config";
import { jsonError } from "./on-error";
import { dashboard } from "./dashboard";
import { portal } from "./portal";
import { admin } from "./routes/admin";
import { billing } from "./routes/billing";
import { proxy } from "./routes/proxy";
import { webhooks } from "./routes/webhooks";

export { CustomerAccount } from "../durable-objects/customer-account";
export { Directory } from "../durable-objects/directory";

const app = new Hono<AppEnv>();

app.use(requestId({ headerName: "x-request-id" }), loadConfig());
app.route("/", admin);
app.route("/", webhooks);
app.route("/", billing);
// Reserved like /admin: the operator dashboard and the customer portal (pages, assets, live sockets).
app.route("/", dashboard);
app.route("/", portal);
app.route("/", proxy);

app.onError(jsonError);

export default {
  fetch: app.fetch,
  async scheduled(controller, env, ctx) {
    const result = await runCron(env, getConfig(env), controller.scheduledTime);
    log.info(`cron ${controller.cron}: visited ${result.visited} customers, ${result.failed} failed${result.more ? ", more due" : ""}`);
  },
} satisfies ExportedHandler<AppEnv["Bindings"]>;
