import { shardOf } from "../durable-objects/directory/contract";
import { directoryShard } from "./env";
import type { Config } from "./lib/config";
import { ApiError } from "./lib/errors";
import { type BudgetSource, StripePermit } from "./lib/stripe-budget";

/** Checkout waits at most this long for a call before its customer hears 429. */
export const CHECKOUT_WAIT_MS = 1_000;

function permitOn(env: Env, shard: number, priority: "background" | "interactive"): StripePermit {
  return new StripePermit(directoryShard(env, shard) as unknown as BudgetSource, priority);
}

/**
 * The worker's Stripe calls take from the budget too. Checkout: from the customer's shard, in the
 * share background work leaves it; if no call is free within a second (another shard tried when
 * there are several), the customer gets 429 with Retry-After, never a silent wait.
 */
export async function checkoutPermit(env: Env, config: Config, customerId: string, endpoint: string): Promise<StripePermit> {
  const shards = config.DIRECTORY_SHARDS;
  const mine = shardOf(customerId, shards);
  const deadline = Date.now() + CHECKOUT_WAIT_MS;
  let permit: StripePermit | undefined;
  for (const shard of shards > 1 ? [mine, (mine + 1 + Math.floor(Math.random() * (shards - 1))) % shards] : [mine]) {
    permit = permitOn(env, shard, "interactive");
    if (await reserveUntil(permit, { [endpoint]: 1 }, deadline)) return permit;
  }
  const seconds = Math.max(1, Math.ceil(permit!.retryAfterMs / 1000));
  throw new ApiError(
    "rate_limited",
    `Stripe's rate limit is shared by every customer of this API and is in full use right now; try the top-up again in ${seconds} s.`,
    { retry_after_seconds: seconds },
    { "retry-after": String(seconds) },
  );
}

/** Webhook lookups wait at most this long for their calls, well inside the time Stripe waits for an answer. */
export const LOOKUP_WAIT_MS = 5_000;

/**
 * Webhook lookups: background calls from a shard picked by the event (spread across shards). One
 * refund sends Stripe's four events at once, each wanting two calls: they wait their turn for a few
 * seconds instead of failing the delivery, which Stripe would repeat only after minutes. Calls
 * still refused then fail the delivery, and Stripe repeats it.
 */
export async function lookupPermit(env: Env, config: Config, eventId: string, calls: Record<string, number>): Promise<StripePermit> {
  const permit = permitOn(env, shardOf(eventId, config.DIRECTORY_SHARDS), "background");
  await reserveUntil(permit, calls, Date.now() + LOOKUP_WAIT_MS);
  return permit;
}

/** Asks the permit's shard for `calls` until it holds them all, or the next try would come after `deadline`. */
async function reserveUntil(permit: StripePermit, calls: Record<string, number>, deadline: number): Promise<boolean> {
  for (;;) {
    const missing = permit.missing(calls);
    if (!Object.keys(missing).length) return true;
    await permit.reserve(missing);
    if (!Object.keys(permit.missing(calls)).length) return true;
    if (Date.now() + permit.retryAfterMs > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, Math.max(50, permit.retryAfterMs)));
  }
}
