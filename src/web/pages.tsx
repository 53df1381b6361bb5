import type { Context, ErrorHandler, MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { secureHeaders } from "hono/secure-headers";
import type { AppEnv } from "../env";
import { ConfigError } from "../lib/config";
import { ApiError } from "../lib/errors";
import { log } from "../lib/log";
import { jsonError } from "../on-error";
import { ErrorPage } from "./layout";
import { type AdminSession, csrfMatches, type PortalSession } from "./session";

export interface Area {
  product: string;
  home: string;
}

const TITLES: Record<number, string> = {
  400: "That did not work",
  401: "Please sign in",
  403: "That is not allowed here",
  404: "Page not found",
  409: "That could not be done",
  413: "That was too large",
};

/** Pages show a friendly page for any error; the live sockets' routes answer in the house JSON format. */
export function pageErrors(area: Area): ErrorHandler<AppEnv> {
  return function pageErrors(error, c) {
    // A redirect thrown by respondWith (to sign in, say).
    if (error instanceof HTTPException && error.status < 400) return error.getResponse();
    if (c.req.header("upgrade")?.toLowerCase() === "websocket") return jsonError(error, c);
    const requestId = c.get("requestId") ?? crypto.randomUUID();
    let status = 500;
    let message = "Something went wrong on our side. Try again in a moment.";
    if (error instanceof ApiError) {
      status = error.status;
      message = error.message;
    } else if (error instanceof HTTPException && error.status === 403) {
      status = 403;
      message = "The form came from another site or has expired. Go back, reload the page and try again.";
    } else if (error instanceof ConfigError) {
      log.error(error.message);
      message = "The gateway's configuration is invalid; its log names the field.";
    } else {
      log.error(`request ${requestId} failed`, error);
    }
    const page = <ErrorPage status={status} title={TITLES[status] ?? "Something went wrong"} message={message} requestId={requestId} {...area} />;
    return c.html(page, status as 400);
  };
}

/** Security headers for pages: scripts, styles and sockets from this origin only; never framed or cached. */
export function pageHeaders(): MiddlewareHandler<AppEnv> {
  const headers = secureHeaders({
    contentSecurityPolicy: {
      defaultSrc: ["'self'"],
      scriptSrc: ["'self'"],
      styleSrc: ["'self'"],
      imgSrc: ["'self'", "data:"],
      connectSrc: ["'self'"],
      objectSrc: ["'none'"],
      baseUri: ["'none'"],
      formAction: ["'self'"],
      frameAncestors: ["'none'"],
    },
    referrerPolicy: "no-referrer",
    crossOriginEmbedderPolicy: false,
    // HSTS is the host's decision (it would cover the proxied API and subdomains too), not the pages'.
    strictTransportSecurity: false,
  });
  return async function pageHeaders(c, next) {
    // A WebSocket upgrade's 101 response has immutable headers (and is no page).
    if (c.req.header("upgrade")?.toLowerCase() === "websocket") return next();
    await headers(c, next);
    if (!c.res.headers.has("cache-control")) c.res.headers.set("cache-control", "no-store");
  };
}

/** The static assets (script, styles, icon) built into public/dashboard/assets by scripts/build-assets.mjs. */
export function serveAssets(): MiddlewareHandler<AppEnv> {
  return async function serveAssets(c) {
    const response = await c.env.ASSETS.fetch(c.req.raw);
    if (response.status === 404) throw new ApiError("not_found", "No such asset.");
    return response;
  };
}

/** A posted form, after its CSRF token has been checked against the session's. */
export async function readForm(c: Context<AppEnv>, session: AdminSession | PortalSession): Promise<Record<string, string>> {
  const body = await c.req.parseBody();
  if (!(await csrfMatches(session, body._csrf))) throw new HTTPException(403, { message: "csrf token mismatch" });
  return Object.fromEntries(Object.entries(body).filter((e): e is [string, string] => typeof e[1] === "string"));
}

/** Ends the request with a response (a redirect to sign in, say) from anywhere in a handler. */
export function respondWith(response: Response): never {
  throw new HTTPException(response.status as 401, { res: response });
}

/** A live socket's upgrade: only from a page of this origin (a cross-site page cannot open it). */
export function sameOriginUpgrade(c: Context<AppEnv>): boolean {
  return c.req.header("upgrade")?.toLowerCase() === "websocket" && c.req.header("origin") === new URL(c.req.url).origin;
}

/** Where to go after signing in: only a path on this area, never another site. */
export function safeNext(next: string | undefined, area: string): string {
  return next?.startsWith(area) && !next.startsWith("//") && !/[\\\s]/.test(next) ? next : area;
}
