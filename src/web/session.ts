import type { Context } from "hono";
import { deleteCookie, getSignedCookie, setSignedCookie } from "hono/cookie";
import type { AppEnv } from "../env";
import { timingSafeEqualStrings } from "../lib/api-key-format";
import type { Config } from "../lib/config";
import { derivedKey, type KeyPurpose } from "../lib/derived-keys";

export const ADMIN_SESSION_SECONDS = 8 * 3600;
export const PORTAL_SESSION_SECONDS = 2 * 3600;

interface Common {
  /** This session's id: signing out records it as ended (the directory or the customer's object). */
  sid: string;
  /** Expiry, ms since the epoch: checked on every request (the cookie's Max-Age is only a hint). */
  exp: number;
  /** The per-session CSRF token every form of this session carries. */
  csrf: string;
}
export interface AdminSession extends Common {
  kind: "admin";
}
export interface PortalSession extends Common {
  kind: "portal";
  customerId: string;
  /**
   * Signed in with an API key: its hash (revoking the key ends the session too) and id. Such a
   * session has a key's authority only; without them it came from a provider's link, the owner's.
   */
  keyHash?: string;
  keyId?: string;
}
type Session = AdminSession | PortalSession;

const COOKIES = { admin: { name: "payg_dashboard", path: "/dashboard" }, portal: { name: "payg_portal", path: "/portal" } } as const;
/** Each kind of session is signed with a key of its own: one kind's cookie never verifies as the other's. */
const PURPOSES = { admin: "dashboard-session", portal: "portal-session" } as const satisfies Record<Session["kind"], KeyPurpose>;

function hex(bytes: ArrayBuffer): string {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The key a kind of session is signed with (HMAC-SHA256): derived for that kind from
 * SESSION_SECRET or, when it is unset, from ADMIN_TOKEN (so a rotated admin token then also signs
 * everyone out). Null when neither is set.
 */
export async function sessionSecret(config: Config, kind: Session["kind"]): Promise<string | null> {
  const secret = config.SESSION_SECRET ?? config.ADMIN_TOKEN;
  return secret ? derivedKey(secret, PURPOSES[kind]) : null;
}

function randomToken(): string {
  return hex(crypto.getRandomValues(new Uint8Array(24)).buffer as ArrayBuffer);
}

function isLocalhost(url: string): boolean {
  const host = new URL(url).hostname;
  return host === "localhost" || host.endsWith(".localhost") || host === "127.0.0.1" || host === "[::1]";
}

function encode(session: Session): string {
  return btoa(JSON.stringify(session)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function decode(value: string): Session | null {
  try {
    return JSON.parse(atob(value.replace(/-/g, "+").replace(/_/g, "/"))) as Session;
  } catch {
    return null;
  }
}

/** Sets the session cookie: signed, expiring, HttpOnly, SameSite=Strict, Secure except on localhost. */
export async function startSession(c: Context<AppEnv>, session: Session): Promise<void> {
  const secret = await sessionSecret(c.var.config, session.kind);
  if (!secret) throw new Error("no session secret");
  const cookie = COOKIES[session.kind];
  await setSignedCookie(c, cookie.name, encode(session), secret, {
    path: cookie.path,
    httpOnly: true,
    sameSite: "Strict",
    secure: !isLocalhost(c.req.url),
    maxAge: Math.round((session.exp - Date.now()) / 1000),
  });
}

/** The verified, unexpired session of this kind, or null (a bad signature is just no session). */
export async function readSession<K extends Session["kind"]>(c: Context<AppEnv>, kind: K): Promise<Extract<Session, { kind: K }> | null> {
  const secret = await sessionSecret(c.var.config, kind);
  if (!secret) return null;
  const value = await getSignedCookie(c, secret, COOKIES[kind].name);
  const session = value ? decode(value) : null;
  if (!session || session.kind !== kind || typeof session.sid !== "string" || !session.sid || typeof session.exp !== "number" || session.exp <= Date.now()) {
    return null;
  }
  return session as Extract<Session, { kind: K }>;
}

/** A new session's id and CSRF token, both random. */
export function freshSession(): Pick<Common, "sid" | "csrf"> {
  return { sid: randomToken(), csrf: randomToken() };
}

/** Clears the cookie. The sign-out routes also record the session as ended, where its kind is checked. */
export function endSession(c: Context<AppEnv>, kind: Session["kind"]): void {
  const cookie = COOKIES[kind];
  deleteCookie(c, cookie.name, { path: cookie.path, secure: !isLocalhost(c.req.url), httpOnly: true, sameSite: "Strict" });
}

/** A form's CSRF token against the session's, in constant time. */
export async function csrfMatches(session: Session, token: unknown): Promise<boolean> {
  return typeof token === "string" && token.length > 0 && (await timingSafeEqualStrings(token, session.csrf));
}
