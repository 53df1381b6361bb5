import { Hono } from "hono";
import { type AppEnv, customerStub } from "../../env";
import { customerId, notFound } from "./customers";

/**
 * `/admin/customers/{id}/email-unsubscribe`: resets a customer's unsubscribe (its state is in
 * `GET /admin/customers/{id}`, under `emails`), e.g. when it asks to get the reminders again.
 */
export const emailUnsubscribe = new Hono<AppEnv>();

emailUnsubscribe.delete("/customers/:id/email-unsubscribe", async (c) => {
  const id = customerId(c.req.param("id"));
  const result = (await customerStub(c.env, id).setEmailUnsubscribed(false)) ?? notFound(id);
  return c.json({ customer_id: id, unsubscribed: result.unsubscribed_at !== null, unsubscribed_at: result.unsubscribed_at });
});
