import { Hono } from "hono";
import { type AppEnv, customerStub } from "../../env";
import { customerId, notFound } from "./customers";

/** `GET /admin/customers/{id}/auto-top-up`: settings, state (paused and why, capped), this month's total, recent top-ups. */
export const autoTopUp = new Hono<AppEnv>();

autoTopUp.get("/customers/:id/auto-top-up", async (c) => {
  const id = customerId(c.req.param("id"));
  const view = (await customerStub(c.env, id).autoTopUp()) ?? notFound(id);
  return c.json({ customer_id: id, stripe: c.var.config.stripeEnabled, ...view });
});
