import { Hono } from "hono";
import { z } from "zod";
import { type AppEnv, customerStub } from "../../env";
import { jsonBody } from "../../http";
import { ApiError } from "../../lib/errors";
import { customerId, notFound } from "./customers";

const ResolveBody = z.strictObject({ note: z.string().min(1).max(500) });

function settled<T>(row: T | "not_found" | "not_failed" | null, customer: string, reportId: string): T {
  if (row === null || row === "not_found") throw new ApiError("not_found", `No report ${reportId} for customer ${customer}.`);
  if (row === "not_failed") throw new ApiError("conflict", `Report ${reportId} has not failed: there is nothing to settle.`);
  return row;
}

/**
 * `/admin/customers/{id}/reports/{reportId}/retry|resolve`: an operator settles a Stripe report
 * that failed for good. Retry looks it up at Stripe and sends it again only if it is missing;
 * resolve records that it was settled by hand (it then counts as reported). Both are ledger notes.
 */
export const reports = new Hono<AppEnv>();

reports.post("/customers/:id/reports/:reportId/retry", async (c) => {
  const id = customerId(c.req.param("id"));
  const stub = customerStub(c.env, id);
  if (!(await stub.exists())) notFound(id);
  const row = settled(await stub.retryReport(c.req.param("reportId")), id, c.req.param("reportId"));
  return c.json({ id: row.report_id, kind: row.kind, amount: row.amount, status: row.status }, 202);
});

reports.post("/customers/:id/reports/:reportId/resolve", async (c) => {
  const id = customerId(c.req.param("id"));
  const body = await jsonBody(c, ResolveBody);
  const stub = customerStub(c.env, id);
  if (!(await stub.exists())) notFound(id);
  const row = settled(await stub.resolveReport(c.req.param("reportId"), body.note), id, c.req.param("reportId"));
  return c.json({ id: row.report_id, kind: row.kind, amount: row.amount, status: row.status });
});
