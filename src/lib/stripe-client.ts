import Stripe from "stripe";
import type { Config } from "./config";
import { BUDGET_SPENT_CODE, type BudgetSource, endpointOf, StripePermit } from "./stripe-budget";
import { HOUR_MS } from "./time";

const clients = new WeakMap<StripePermit, Stripe>();

/**
 * The official SDK on Workers' fetch, pointed at STRIPE_API_BASE (Stripe, stripe-mock or a test
 * double). Every HTTP request it sends takes a token from `permit` first (stripe-budget.ts); one
 * with no token never leaves and gets a 429 of ours that the SDK does not retry. A 429 from Stripe
 * itself is reported to the budget, which shrinks for a while.
 */
export function stripeClient(config: Config, permit: StripePermit): Stripe {
  let client = clients.get(permit);
  if (!client) {
    if (!config.STRIPE_SECRET_KEY) throw new Error("Stripe is not configured");
    const base = new URL(config.STRIPE_API_BASE);
    const protocol = base.protocol === "http:" ? "http" : "https";
    client = new Stripe(config.STRIPE_SECRET_KEY, {
      host: base.hostname,
      port: Number(base.port || (protocol === "http" ? 80 : 443)),
      protocol,
      httpClient: Stripe.createFetchHttpClient(budgetedFetch(permit)),
      maxNetworkRetries: 2,
      timeout: config.STRIPE_TIMEOUT_MS,
      appInfo: { name: "payg-edge-gateway" },
    });
    clients.set(permit, client);
  }
  return client;
}

function budgetedFetch(permit: StripePermit): typeof fetch {
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = init?.method ?? (input instanceof Request ? input.method : "GET");
    if (!(await permit.take(endpointOf(method, url.pathname)))) {
      const retryAfter = Math.max(1, Math.ceil(permit.retryAfterMs / 1000));
      return Response.json(
        { error: { type: "invalid_request_error", code: BUDGET_SPENT_CODE, message: `The gateway's Stripe call budget is spent; try again in ${retryAfter} s.` } },
        { status: 429, headers: { "stripe-should-retry": "false", "retry-after": String(retryAfter) } },
      );
    }
    const response = await fetch(input, init);
    if (response.status === 429 && response.headers.get("stripe-should-retry") !== "true") await permit.rateLimited();
    return response;
  };
}

const NO_CALLS: BudgetSource = { takeStripeCalls: () => ({ calls: {}, retryAfterMs: 0, batching: null }), stripeRateLimited: () => undefined };

/** The SDK for what needs no API call (webhook signatures): any call it tried would be refused here. */
export function stripeOffline(config: Config): Stripe {
  return stripeClient(config, offline.get(config) ?? offline.set(config, new StripePermit(NO_CALLS, "background")).get(config)!);
}
const offline = new WeakMap<Config, StripePermit>();

/** A call the budget kept back (it never reached Stripe): nothing happened, try in a later cycle. */
export function isBudgetSpent(error: unknown): boolean {
  return error instanceof Stripe.errors.StripeError && error.code === BUDGET_SPENT_CODE;
}

/** Whether Stripe may not have acted on the request (worth a retry under the same key). */
export function isTransientStripeError(error: unknown): boolean {
  if (!(error instanceof Stripe.errors.StripeError)) return true;
  if (error instanceof Stripe.errors.StripeConnectionError || error instanceof Stripe.errors.StripeRateLimitError) return true;
  return error.statusCode === undefined || error.statusCode >= 500 || error.statusCode === 409 || error.statusCode === 429;
}

export function describeError(error: unknown): string {
  if (error instanceof Stripe.errors.StripeError) return `${error.type}${error.statusCode ? ` ${error.statusCode}` : ""}: ${error.message}`;
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Stripe keeps idempotency keys at least 24 hours; a retry older than this looks its first attempt up before sending again. */
export const IDEMPOTENCY_SAFE_MS = 23 * HOUR_MS;
