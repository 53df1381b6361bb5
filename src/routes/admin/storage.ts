import { Hono } from "hono";
import { type AppEnv, customerStub } from "../../env";
import { customerId, notFound } from "./customers";

/** `/admin/customers/{id}/storage`: rows per table in the customer's object, to check that its state stays bounded. */
export const storage = new Hono<AppEnv>();

storage.get("/customers/:id/storage", async (c) => {
  const id = customerId(c.req.param("id"));
  return c.json((await customerStub(c.env, id).storageStats()) ?? notFound(id));
});
