import { Hono } from "hono";
import { type AppEnv, customerStub } from "../../env";
import { queryInt } from "../../http";
import { customerId, notFound } from "./customers";

/**
 * `/admin/customers/{id}/topups`: paid top-ups (Checkout and automatic), newest first, with the
 * credit (before tax), the tax paid on top, and the Stripe invoice and receipt links their events
 * carried. The portal shows it to a session opened from a provider's link, the dashboard on the
 * customer's page.
 */
export const topUps = new Hono<AppEnv>();

topUps.get("/customers/:id/topups", async (c) => {
  const id = customerId(c.req.param("id"));
  const limit = queryInt(c, "limit", 50, 1, 200);
  const stub = customerStub(c.env, id);
  if (!(await stub.exists())) notFound(id);
  return c.json({ topups: await stub.topUps(limit) });
});
