import type { Context } from "hono";
import { Hono } from "hono";
import { requestId } from "hono/request-id";
import type { AppEnv } from "../env";
import { ApiError, ERROR_STATUS, type ErrorCode } from "../lib/errors";
import { loadConfig } from "../middleware/config";
import { jsonError } from "../on-error";
import { admin } from "../routes/admin";

/**
 * The dashboard and the portal read and write through the admin API itself, in-process (no
 * network hop): one set of rules, validation and idempotency for JSON clients and pages alike.
 */
const api = new Hono<AppEnv>().use(requestId({ headerName: "x-request-id" }), loadConfig()).route("/", admin);
api.onError(jsonError);

// biome-ignore lint/suspicious/noExplicitAny: pages read the admin API's JSON as the documented shapes, not re-declared types
export interface AdminResult<T = any> {
  status: number;
  ok: boolean;
  body: T;
}

// biome-ignore lint/suspicious/noExplicitAny: as AdminResult
export async function adminCall<T = any>(c: Context<AppEnv>, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<AdminResult<T>> {
  const token = c.var.config.ADMIN_TOKEN ?? "";
  // The caller's origin, so links the API builds (portal sessions) point at this host.
  const request = new Request(new URL(`/admin${path}`, c.req.url), {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      "x-request-id": c.var.requestId,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const response = await api.fetch(request, c.env, c.executionCtx);
  const text = await response.text();
  return { status: response.status, ok: response.ok, body: text ? JSON.parse(text) : null };
}

/** An admin API answer a page needs: its error (404 unknown customer, 400 bad input) becomes the page's. */
export function must<T>(result: AdminResult<T>): T {
  if (result.ok) return result.body;
  const error = (result.body as { error?: { code?: string; message?: string } } | null)?.error;
  const code = error?.code && error.code in ERROR_STATUS ? (error.code as ErrorCode) : "internal_error";
  throw new ApiError(code, error?.message ?? "The admin API failed.");
}
