import { Hono } from "hono";
import { methodNotAllowed } from "hono/method-not-allowed";
import type { AppEnv } from "../../env";
import { errorBody } from "../../lib/errors";
import { adminAuth } from "../../middleware/admin-auth";
import { limitBody } from "../../middleware/body-limit";
import { autoTopUp } from "./auto-top-up";
import { cohorts } from "./cohorts";
import { customers } from "./customers";
import { emailUnsubscribe } from "./email-unsubscribe";
import { emails } from "./emails";
import { grants } from "./grants";
import { leases } from "./leases";
import { overview } from "./overview";
import { portalSessions } from "./portal-sessions";
import { reports } from "./reports";
import { status } from "./status";
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

admin.route("/", status);
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
admin.route("/", leases);

/** Unknown admin paths are 404 (a known path with the wrong method becomes 405: methodNotAllowed above). */
admin.all("*", (c) => c.json(errorBody("not_found", `No admin route ${c.req.method} ${c.req.path}.`, c.var.requestId), 404));
