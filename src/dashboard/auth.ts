import type { Context } from "hono";
import { type AppEnv, directoryStub } from "../env";
import { ApiError } from "../lib/errors";
import { respondWith } from "../web/pages";
import { type AdminSession, readSession } from "../web/session";

export const DASHBOARD = "/dashboard";

/**
 * The operator's session (signed, unexpired, not signed out), or: a redirect to sign in (pages),
 * 401 in the house format (sockets, forms).
 */
export async function requireAdmin(c: Context<AppEnv>): Promise<AdminSession> {
  const session = await readSession(c, "admin");
  if (session && !(await directoryStub(c.env).adminSessionEnded(session.sid))) return session;
  if (c.req.method === "GET" && c.req.header("upgrade")?.toLowerCase() !== "websocket") {
    const url = new URL(c.req.url);
    respondWith(c.redirect(`${DASHBOARD}/sign-in?next=${encodeURIComponent(url.pathname + url.search)}`, 303));
  }
  throw new ApiError("unauthorized", "Your dashboard session has ended: sign in again.");
}
