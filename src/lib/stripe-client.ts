import Stripe from "stripe";
import type { Config } from "./config";
import { HOUR_MS } from "./time";

const clients = new WeakMap<Config, Stripe>();

/** The official SDK on Workers' fetch, pointed at STRIPE_API_BASE (Stripe, stripe-mock or a test double). */
export function stripeClient(config: Config): Stripe {
  let client = clients.get(config);
  if (!client) {
    if (!config.STRIPE_SECRET_KEY) throw new Error("Stripe is not configured");
    const base = new URL(config.STRIPE_API_BASE);
    const protocol = base.protocol === "http:" ? "http" : "https";
    client = new Stripe(config.STRIPE_SECRET_KEY, {
      host: base.hostname,
      port: Number(base.port || (protocol === "http" ? 80 : 443)),
      protocol,
      httpClient: Stripe.createFetchHttpClient(),
      maxNetworkRetries: 2,
      timeout: config.STRIPE_TIMEOUT_MS,
      appInfo: { name: "payg-edge-gateway" },
    });
    clients.set(config, client);
  }
  return client;
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
