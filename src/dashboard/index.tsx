import { Hono } from "hono";
import { csrf } from "hono/csrf";
import { LIVE_UNTIL_HEADER } from "../../durable-objects/customer-account/contract";
import { type AppEnv, customerStub, directoryStub } from "../env";
import { timingSafeEqualStrings } from "../lib/api-key-format";
import { COHORTS } from "../lib/config";
import { ApiError } from "../lib/errors";
import { authFailureLimited, SIGN_IN_RETRY_AFTER_SECONDS, TOO_MANY_SIGN_INS } from "../middleware/auth-failures";
import { limitBody } from "../middleware/body-limit";
import { customerId } from "../routes/admin/customers";
import { adminCall, must } from "../web/admin-client";
import { firstList } from "../web/components";
import { pageErrors, pageHeaders, readForm, safeNext, sameOriginUpgrade, serveAssets } from "../web/pages";
import { ADMIN_SESSION_SECONDS, endSession, freshSession, startSession } from "../web/session";
import { DASHBOARD, requireAdmin } from "./auth";
import { CustomerPage, type CustomerPageData } from "./customer-view";
import { CohortPage, Customers, OneTimeSecret, Overview, PRODUCT, SignIn } from "./views";

const KEY_ID = /^[A-Za-z0-9_-]{1,100}$/;

/** `/dashboard…`: the operator dashboard, server-rendered with Hono's JSX over the admin API. */
export const dashboard = new Hono<AppEnv>().basePath(DASHBOARD);

dashboard.get("/assets/*", serveAssets());
dashboard.use(pageHeaders(), csrf(), limitBody(16 * 1024));

dashboard.get("/sign-in", async (c) => {
  return c.html(<SignIn next={safeNext(c.req.query("next"), DASHBOARD)} disabled={!c.var.config.ADMIN_TOKEN} />);
});

dashboard.post("/sign-in", async (c) => {
  const form = await c.req.parseBody();
  const next = safeNext(typeof form.next === "string" ? form.next : undefined, DASHBOARD);
  const expected = c.var.config.ADMIN_TOKEN;
  if (!expected) return c.html(<SignIn next={next} disabled />, 401);
  if (typeof form.token !== "string" || !(await timingSafeEqualStrings(form.token, expected))) {
    // Counted like a wrong token on the admin API, so the form is no faster way to guess it.
    if (await authFailureLimited(c)) return c.html(<SignIn next={next} error={TOO_MANY_SIGN_INS} />, 429, { "retry-after": String(SIGN_IN_RETRY_AFTER_SECONDS) });
    return c.html(<SignIn next={next} error="That is not the admin token." />, 401);
  }
  await startSession(c, { kind: "admin", exp: Date.now() + ADMIN_SESSION_SECONDS * 1000, ...freshSession() });
  return c.redirect(next, 303);
});

dashboard.post("/sign-out", async (c) => {
  const session = await requireAdmin(c);
  await readForm(c, session);
  await directoryStub(c.env).endAdminSession(session.sid, session.exp);
  endSession(c, "admin");
  return c.redirect(`${DASHBOARD}/sign-in`, 303);
});

dashboard.get("/", async (c) => {
  const session = await requireAdmin(c);
  const data = must(await adminCall(c, "GET", "/overview"));
  return c.html(<Overview data={data} session={session} stripe={c.var.config.stripeEnabled} />);
});

dashboard.get("/customers", async (c) => {
  const session = await requireAdmin(c);
  const q = c.req.query("q")?.trim() ?? "";
  const cursor = c.req.query("cursor") ?? "";
  const params = new URLSearchParams({ limit: "25", ...(q ? { q } : {}), ...(cursor ? { cursor } : {}) });
  const page = must(await adminCall(c, "GET", `/customers?${params}`));
  return c.html(<Customers session={session} q={q} rows={page.customers} next={page.next_cursor} paged={cursor !== ""} currency={c.var.config.PRICING.currency} />);
});

dashboard.get("/cohorts/:cohort", async (c) => {
  const session = await requireAdmin(c);
  const cohort = c.req.param("cohort");
  if (!(COHORTS as readonly string[]).includes(cohort)) throw new ApiError("not_found", `There is no cohort ${cohort}.`);
  const cursor = c.req.query("cursor") ?? "";
  const params = new URLSearchParams({ limit: "50", ...(cursor ? { cursor } : {}) });
  const page = must(await adminCall(c, "GET", `/cohorts/${cohort}/members?${params}`));
  return c.html(<CohortPage session={session} cohort={cohort} members={page.members} next={page.next_cursor} paged={cursor !== ""} />);
});

dashboard.get("/customers/:id", async (c) => {
  const session = await requireAdmin(c);
  const id = customerId(c.req.param("id"));
  const path = `/customers/${id}`;
  const ledgerCursor = c.req.query("ledger_cursor");
  const ledgerQuery = new URLSearchParams({ limit: "20", ...(ledgerCursor ? { cursor: ledgerCursor } : {}) });
  const summary = must(await adminCall(c, "GET", path));
  const [keys, ledger, emails, usage, grants, webhooks, topUps, leases] = await Promise.all([
    adminCall(c, "GET", `${path}/keys`),
    adminCall(c, "GET", `${path}/ledger?${ledgerQuery}`),
    adminCall(c, "GET", `${path}/emails?limit=20`),
    adminCall(c, "GET", `${path}/usage?hours=168`),
    adminCall(c, "GET", `${path}/grants`),
    adminCall(c, "GET", "/webhook-endpoints"),
    adminCall(c, "GET", `${path}/topups?limit=20`),
    adminCall(c, "GET", `${path}/leases`),
  ]);
  const data: CustomerPageData = {
    summary,
    keys: must(keys).keys,
    ledger: must(ledger),
    emails: must(emails).emails,
    usage: must(usage),
    grants: grants.ok ? firstList(grants.body) : null,
    webhooks: webhooks.ok ? firstList(webhooks.body) : null,
    topUps: topUps.ok ? topUps.body.topups : [],
    leases: leases.ok ? leases.body : null,
  };
  return c.html(<CustomerPage session={session} data={data} notice={c.req.query("notice")} idempotencyKey={crypto.randomUUID()} ledgerPaged={Boolean(ledgerCursor)} />);
});

/** The form's idempotency key (rendered into the page) is the admin API's Idempotency-Key: a double submit grants once. */
dashboard.post("/customers/:id/credits", async (c) => {
  const session = await requireAdmin(c);
  const id = customerId(c.req.param("id"));
  const form = await readForm(c, session);
  if (!/^-?\d{1,10}$/.test(form.amount?.trim() ?? "")) throw new ApiError("invalid_request", "Amount (cents) must be a whole number of cents.");
  const result = must(
    await adminCall(
      c,
      "POST",
      `/customers/${id}/credits`,
      { amount: Number(form.amount!.trim()), reason: form.reason ?? "" },
      {
        "idempotency-key": form.idempotency_key ?? crypto.randomUUID(),
      },
    ),
  );
  return c.redirect(`${DASHBOARD}/customers/${id}?notice=${result.applied ? "credit-granted" : "credit-repeated"}`, 303);
});

dashboard.post("/customers/:id/keys", async (c) => {
  const session = await requireAdmin(c);
  const id = customerId(c.req.param("id"));
  const form = await readForm(c, session);
  const key = must(await adminCall(c, "POST", `/customers/${id}/keys`, form.name?.trim() ? { name: form.name.trim() } : {}));
  return c.html(
    <OneTimeSecret
      session={session}
      title="New API key"
      intro={`The new key for ${id}. It is shown only this once: copy it now.`}
      secret={key.key}
      back={`${DASHBOARD}/customers/${id}`}
    />,
    201,
  );
});

dashboard.post("/customers/:id/keys/:keyId/revoke", async (c) => {
  const session = await requireAdmin(c);
  const id = customerId(c.req.param("id"));
  await readForm(c, session);
  const keyId = c.req.param("keyId");
  if (!KEY_ID.test(keyId)) throw new ApiError("not_found", `No key ${keyId}.`);
  const result = await adminCall(c, "DELETE", `/customers/${id}/keys/${keyId}`);
  if (result.status !== 204) must(result);
  return c.redirect(`${DASHBOARD}/customers/${id}?notice=key-revoked`, 303);
});

dashboard.post("/customers/:id/portal-session", async (c) => {
  const session = await requireAdmin(c);
  const id = customerId(c.req.param("id"));
  await readForm(c, session);
  const link = must(await adminCall(c, "POST", `/customers/${id}/portal-sessions`, {}));
  return c.html(
    <OneTimeSecret
      session={session}
      title="Portal link"
      intro={`A one-time link into ${id}'s customer portal. It opens once, before it expires.`}
      secret={link.url}
      back={`${DASHBOARD}/customers/${id}`}
      note="Your app gets these from POST /admin/customers/{id}/portal-sessions and sends the customer there."
    />,
    201,
  );
});

/** Retry or resolve a failed Stripe report (the admin API's routes, from a form). */
dashboard.post("/customers/:id/reports/:reportId/:action{retry|resolve}", async (c) => {
  const session = await requireAdmin(c);
  const id = customerId(c.req.param("id"));
  await readForm(c, session);
  const action = c.req.param("action") as "retry" | "resolve";
  const reportId = c.req.param("reportId");
  if (!KEY_ID.test(reportId)) throw new ApiError("not_found", `No report ${reportId}.`);
  must(await adminCall(c, "POST", `/customers/${id}/reports/${reportId}/${action}`, {}));
  return c.redirect(`${DASHBOARD}/customers/${id}?notice=${action === "retry" ? "report-retried" : "report-resolved"}`, 303);
});

/** The live balance: the worker checks the session and the page's origin, then hands the socket to the object. */
dashboard.get("/customers/:id/live", async (c) => {
  const session = await requireAdmin(c);
  const id = customerId(c.req.param("id"));
  if (!sameOriginUpgrade(c)) throw new ApiError("invalid_request", "Expected a WebSocket upgrade from a dashboard page.");
  const response = await customerStub(c.env, id).fetch(new Request("https://customer/live", { headers: { upgrade: "websocket", [LIVE_UNTIL_HEADER]: String(session.exp) } }));
  if (response.status === 404) throw new ApiError("not_found", `No customer ${id}.`);
  return response;
});

dashboard.all("*", () => {
  throw new ApiError("not_found", "There is no dashboard page here.");
});

dashboard.onError(pageErrors({ product: PRODUCT, home: DASHBOARD }));
