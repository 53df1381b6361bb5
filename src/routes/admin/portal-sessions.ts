import { Hono } from "hono";
import { z } from "zod";
import { type AppEnv, customerStub } from "../../env";
import { jsonBody } from "../../http";
import { customerId, notFound } from "./customers";

/** A portal link opens once, within this time (like Stripe's billing portal sessions, short-lived). */
export const PORTAL_LINK_DEFAULT_SECONDS = 600;

const PortalSessionBody = z.strictObject({
  expires_in_seconds: z.int().min(60).max(86_400).optional(),
});

/** `/admin/customers/{id}/portal-sessions`: one-time links into the customer portal, for the provider's app. */
export const portalSessions = new Hono<AppEnv>();

portalSessions.post("/customers/:id/portal-sessions", async (c) => {
  const id = customerId(c.req.param("id"));
  const body = await jsonBody(c, PortalSessionBody);
  const expiresAt = Date.now() + (body.expires_in_seconds ?? PORTAL_LINK_DEFAULT_SECONDS) * 1000;
  const token = (await customerStub(c.env, id).createPortalLink(expiresAt)) ?? notFound(id);
  const url = new URL("/portal/enter", c.req.url);
  url.searchParams.set("token", token);
  return c.json({ url: url.toString(), expires_at: expiresAt }, 201);
});
