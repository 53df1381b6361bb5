import { Hono } from "hono";
import { type AppEnv, customerStub } from "../../env";
import { formatCents } from "../../lib/money";
import { customerId, notFound } from "./customers";

/**
 * `/admin/customers/{id}/leases`: the customer's `payg_leases` mode and its live credit leases
 * (docs/scaling.md), each with what the object set aside for one isolate and what that isolate
 * has reported spent. `reserved_exact_cents` is what the balance shows as taken until they report.
 */
export const leases = new Hono<AppEnv>();

leases.get("/customers/:id/leases", async (c) => {
  const id = customerId(c.req.param("id"));
  const view = (await customerStub(c.env, id).leases()) ?? notFound(id);
  return c.json({
    mode: view.mode,
    reserved_exact_cents: formatCents(view.reserved_micros),
    leases: view.leases.map((l) => ({
      id: l.id,
      isolate: l.isolate,
      granted_exact_cents: formatCents(l.granted_micros),
      spent_exact_cents: formatCents(l.spent_micros),
      reserve_exact_cents: formatCents(l.reserve_micros),
      want_exact_cents: formatCents(l.want_micros),
      rtt_ms: l.rtt_ms,
      synced_at: l.synced_at,
      expires_in_ms: l.expires_in_ms,
    })),
  });
});
