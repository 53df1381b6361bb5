import { Hono } from "hono";
import { methodNotAllowed } from "hono/method-not-allowed";
import type { AppEnv } from "../../env";
import { errorBody } from "../../lib/errors";
import { formatCents } from "../../lib/money";
import { adminAuth } from "../../middleware/admin-auth";
import { limitBody } from "../../middleware/body-limit";
import { paymentsStatus } from "../../payments/offer";
import { autoTopUp } from "./auto-top-up";
import { cohorts } from "./cohorts";
import { customers } from "./customers";
import { emailUnsubscribe } from "./email-unsubscribe";
import { emails } from "./emails";
import { grants } from "./grants";
import { overview } from "./overview";
import { portalSessions } from "./portal-sessions";
import { reports } from "./reports";
import { storage } from "./storage";
import { topUps } from "./topups";
import { usage } from "./usage";
import { webhookEndpoints } from "./webhook-endpoints";

const ADMIN_BODY_LIMIT = 64 * 1024;

/**
 * The admin API: every route under /admin needs the admin token. Each resource is its own Hono
 * app in this folder, mounted here; add new ones before the fallback.
 */
export const admin = new Hono<AppEnv>().basePath("/admin");

admin.use(
  adminAuth(),
  limitBody(ADMIN_BODY_LIMIT),
  methodNotAllowed({
    app: admin,
    onMethodNotAllowed: (c, methods) =>
      c.json(errorBody("method_not_allowed", `${c.req.method} is not allowed on ${c.req.path}; use ${methods.join(", ")}.`, c.var.requestId), 405, { allow: methods.join(", ") }),
  }),
);

admin.get("/status", async (c) => {
  const config = c.var.config;
  return c.json({
    stripe: config.stripeEnabled ? "on" : "off",
    email_delivery: config.emailDelivery,
    origin: config.ORIGIN_URL,
    // Exact, as configured: a sub-cent price is a decimal string, never a float.
    default_price_cents: formatCents(config.PRICING.fallback.priceMicros),
    minimum_balance_cents: config.GOVERNANCE.minimum_balance_cents,
    payments: await paymentsStatus(config),
  });
});

admin.route("/", customers);
admin.route("/", cohorts);
admin.route("/", emails);
admin.route("/", grants);
admin.route("/", reports);
admin.route("/", webhookEndpoints);
admin.route("/", emailUnsubscribe);
admin.route("/", overview);
admin.route("/", usage);
admin.route("/", portalSessions);
admin.route("/", autoTopUp);
admin.route("/", storage);
admin.route("/", topUps);

/** Unknown admin paths are 404 (a known path with the wrong method becomes 405: methodNotAllowed above). */
admin.all("*", (c) => c.json(errorBody("not_found", `No admin route ${c.req.method} ${c.req.path}.`, c.var.requestId), 404));
