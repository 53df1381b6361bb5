import {
  createExecutionContext,
  createScheduledController,
  evictDurableObject,
  listDurableObjectIds,
  runDurableObjectAlarm,
  runInDurableObject,
  waitOnExecutionContext,
} from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { expect } from "vitest";
import type { CustomerAccount } from "../../durable-objects/customer-account";
import { KeyStore } from "../../durable-objects/customer-account/access/key-store";
import worker from "../../src/index";
import { ConfigError, parseConfig } from "../../src/lib/config";
import { server } from "./setup";

export const ADMIN_TOKEN = "test-admin-token-0123456789";
export const ORIGIN = "http://origin.test";

let counter = 0;
/** Every test gets its own customer, so its Durable Object is its own. */
export function uniqueId(prefix = "cus_t"): string {
  return `${prefix}${Date.now().toString(36)}${(counter++).toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

export function gateway(path: string, init?: RequestInit): Promise<Response> {
  return exports.default.fetch(new Request(`http://gateway.test${path}`, init));
}

/**
 * The same worker and Durable Objects under another configuration: the worker reads these
 * bindings instead of the project's (the objects keep their own).
 */
export async function gatewayWith(bindings: Record<string, unknown>, path: string, init?: RequestInit): Promise<Response> {
  const ctx = createExecutionContext();
  const response = await worker.fetch(new Request(`http://gateway.test${path}`, init), { ...env, ...bindings } as never, ctx);
  await waitOnExecutionContext(ctx);
  return response;
}

export async function admin(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const response = await gateway(`/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? (JSON.parse(text) as any) : null };
}

export function withKey(key: string, init: RequestInit = {}): RequestInit {
  return { ...init, headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${key}` } };
}

/** Creates a customer with one API key and an optional grant; returns the key. */
export async function customerWithCredit(cents: number, profile: Record<string, unknown> = {}, id = uniqueId()) {
  const created = await admin("PUT", `/customers/${id}`, { email: `${id}@example.com`, name: "Test Customer", ...profile });
  expect(created.status).toBe(201);
  const key = await admin("POST", `/customers/${id}/keys`, {});
  expect(key.status).toBe(201);
  if (cents !== 0) {
    const grant = await admin("POST", `/customers/${id}/credits`, { amount: cents, reason: "test grant" });
    expect(grant.status).toBe(201);
  }
  return { id, key: key.body.key as string, keyId: key.body.id as string };
}

export function customerStub(id: string): DurableObjectStub<CustomerAccount> {
  const ns = env.CUSTOMERS as DurableObjectNamespace<CustomerAccount>;
  return ns.get(ns.idFromName(id));
}

/** The demo origin: echoes what it received, so tests can see what the gateway forwarded. */
export function echoOrigin(overrides: Partial<Record<"status", number>> = {}) {
  const seen: Request[] = [];
  server.use(
    http.all(`${ORIGIN}/*`, async ({ request }) => {
      seen.push(request.clone() as unknown as Request);
      const body = request.method === "GET" || request.method === "HEAD" ? null : await request.text();
      return HttpResponse.json(
        {
          method: request.method,
          path: new URL(request.url).pathname,
          query: new URL(request.url).search,
          customer: request.headers.get("x-payg-customer-id"),
          authorization: request.headers.get("authorization"),
          apiKey: request.headers.get("x-api-key"),
          body,
        },
        { status: overrides.status ?? 200 },
      );
    }),
  );
  return seen;
}

/**
 * Lets the customer object push its pending directory update (normally its alarm, a few ms
 * later): runs the alarm until no directory push is pending, since the alarm may already be
 * running on its own when the test asks.
 */
export async function settle(customerId: string) {
  const stub = customerStub(customerId);
  for (let i = 0; i < 5; i++) {
    await runDurableObjectAlarm(stub);
    // Work due now is left (the alarm was already running, or a handler queued more): run it again.
    const pending = await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      if (!sql.exec("SELECT 1 FROM sqlite_master WHERE name = 'timers'").toArray().length) return false;
      return sql.exec("SELECT 1 FROM timers WHERE due_at <= ?", Date.now()).toArray().length > 0;
    });
    if (!pending) return;
  }
}

/** Runs the cron trigger as Cloudflare would at `time`. */
export async function cron(time = Date.now()) {
  const ctx = createExecutionContext();
  await worker.scheduled(createScheduledController({ scheduledTime: time, cron: "* * * * *" }), env as never, ctx);
  await waitOnExecutionContext(ctx);
}

/** The query plan SQLite picks for `query` in an object's database, as one string (`EXPLAIN QUERY PLAN`). */
export function queryPlan(state: DurableObjectState, query: string, ...args: SqlStorageValue[]): string {
  return state.storage.sql
    .exec(`EXPLAIN QUERY PLAN ${query}`, ...args)
    .toArray()
    .map((r) => String(r.detail))
    .join(" | ");
}

/** A form POST as the gateway's own pages send it (same origin, url-encoded, not following redirects). */
export function formPost(fields: Record<string, string>, cookie?: string, headers: Record<string, string> = {}): RequestInit {
  return {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: "http://gateway.test", ...(cookie ? { cookie } : {}), ...headers },
    body: new URLSearchParams(fields).toString(),
  };
}

/**
 * A portal session with the owner's authority, as a customer gets one: the provider's link,
 * opened (a confirmation page) and confirmed (its same-origin form). Returns the cookie.
 */
export async function portalLinkSession(customerId: string): Promise<string> {
  const { url } = (await admin("POST", `/customers/${customerId}/portal-sessions`, {})).body as { url: string };
  const token = new URL(url).searchParams.get("token")!;
  expect((await gateway(`/portal/enter?token=${token}`)).status).toBe(200);
  const entered = await gateway("/portal/enter", formPost({ token }));
  expect(entered.status).toBe(303);
  return cookieOf(entered);
}

/** A portal session signed in with an API key (PORTAL.api_key_sign_in is on in these projects): a key's authority. */
export async function portalKeySession(key: string): Promise<string> {
  const signedIn = await gateway("/portal/sign-in", formPost({ key }));
  expect(signedIn.status).toBe(303);
  return cookieOf(signedIn);
}

/** The CSRF token of the session's portal page. */
export async function portalCsrf(cookie: string): Promise<string> {
  return /name="_csrf" value="([0-9a-f]+)"/.exec(await (await gateway("/portal", { headers: { cookie } })).text())![1]!;
}

/** The `name=value` of a Set-Cookie header. */
export function cookieOf(response: Response): string {
  return response.headers.get("set-cookie")!.split(";")[0]!;
}

/** Waits (polling) until `condition` holds, or fails after `timeout` ms. */
export async function waitFor(condition: () => boolean, timeout = 5000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await scheduler.wait(20);
  }
}

/** Whether a Durable Object was ever started for this customer id (it leaves its SQLite file). */
export async function objectExists(customerId: string): Promise<boolean> {
  const id = env.CUSTOMERS.idFromName(customerId).toString();
  return (await listDurableObjectIds(env.CUSTOMERS)).some((existing) => existing.toString() === id);
}

/**
 * A key as the gateway issued them before keys were signed (the same code, with no signing secret),
 * written straight to storage; the object is then restarted so it reads its keys afresh.
 */
export async function legacyKey(customerId: string) {
  const stub = customerStub(customerId);
  const key = await runInDurableObject(stub, (_instance, state) => new KeyStore(state.storage.sql, () => undefined).create(customerId, { name: "legacy" }));
  await evictDurableObject(stub);
  return key;
}

/** A documentation-range address no other test uses, so each test has its own failure budget. */
export function clientIp(): string {
  return `2001:db8::${Math.floor(Math.random() * 0xffff).toString(16)}:${Math.floor(Math.random() * 0xffff).toString(16)}`;
}

/**
 * Starts a burst early in a rate-limit window: the local simulation counts in windows aligned to
 * the wall clock, and a burst across a boundary would be split between two.
 */
export async function freshWindow(periodSeconds = 60) {
  const left = periodSeconds * 1000 - (Date.now() % (periodSeconds * 1000));
  if (left < 15_000) await new Promise((resolve) => setTimeout(resolve, left + 50));
}

/**
 * A response-metered request's charge once it has settled: a stream settles just after its last
 * event passed the client, so this waits for it (2 s at most) and fails the test when it never does.
 */
export async function settledCharge(customerId: string, requestId: string) {
  for (let i = 0; i < 100; i++) {
    const charge = (await customerStub(customerId).requestCharge(requestId)) as Record<string, unknown> | null;
    if (charge?.status === "settled") return charge;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`request ${requestId} never settled`);
}

/** The problems the worker would refuse to start with, for these vars (none: an empty list). */
export function configProblems(vars: Record<string, unknown>): string[] {
  try {
    parseConfig(vars);
    return [];
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
}

/** The same, for this test project's vars with `overrides`. */
export const envProblems = (overrides: Record<string, unknown>): string[] => configProblems({ ...(env as unknown as Record<string, unknown>), ...overrides });

/** A property test's pick among the holds still open: the `pick`-th, wrapping; undefined when none is. */
export function openHold<T extends { open: boolean }>(holds: T[], pick: number): T | undefined {
  const open = holds.filter((h) => h.open);
  return open[pick % Math.max(1, open.length)];
}
