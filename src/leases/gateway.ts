import type { AuthorizeResult, CustomerStub } from "../../durable-objects/customer-account/contract";
import type { CompiledMeter, Config } from "../lib/config";
import { log } from "../lib/log";
import { centsToMicros } from "../lib/money";
import { type Attempt, LeaseHolder, type LeaseSpend } from "./holder";

/** This isolate, as lease rows name it: drawn on first use (Workers refuse random values at global scope). */
let isolate: string | undefined;
function isolateId(): string {
  isolate ??= crypto.randomUUID();
  return isolate;
}
const holders = new Map<string, LeaseHolder>();
/** Requests paid from a lease, so the refund of an origin failure goes back to it. */
const spends = new WeakMap<object, { holder: LeaseHolder; spend: LeaseSpend }>();
/** Past this many customers an isolate holds leases for, the least recently used is returned and dropped. */
const MAX_HOLDERS = 1_000;

/**
 * Whether a request may be paid from a lease at all: leases configured, a meter priced per
 * request, no Idempotency-Key. Everything else (holds, response-metered, MCP and tokens meters,
 * free requests) keeps today's path, whose rules live in the object.
 */
export function leaseEligible(config: Config, meter: CompiledMeter, idempotencyKey: string | null): boolean {
  return config.LEASES !== undefined && meter.units.kind === "request" && meter.priceMicros > 0 && idempotencyKey === null;
}

const bucketOf = (now: number, seconds: number) => Math.floor(now / (seconds * 1000)) * (seconds * 1000);

function holderFor(config: Config, customerId: string): LeaseHolder {
  let holder = holders.get(customerId);
  if (holder) {
    holders.delete(customerId);
    holders.set(customerId, holder);
    return holder;
  }
  holder = new LeaseHolder({
    isolate: isolateId(),
    newId: () => `lse_${crypto.randomUUID()}`,
    maxLeaseMicros: centsToMicros(config.LEASES!.max_lease_cents),
  });
  holders.set(customerId, holder);
  if (holders.size > MAX_HOLDERS) holders.delete(holders.keys().next().value as string);
  return holder;
}

type WaitUntil = (promise: Promise<unknown>) => void;

/**
 * Pays a request from the customer's lease in this isolate, synchronously (no await), or returns
 * null: the request goes to the object. A sync due (low-water mark, heartbeat) runs in waitUntil.
 */
export function payFromLease(
  config: Config,
  input: { customerId: string; keyHash: string; meter: CompiledMeter; stub: CustomerStub; waitUntil: WaitUntil },
): AuthorizeResult | null {
  const now = Date.now();
  const holder = holderFor(config, input.customerId);
  const bucket = bucketOf(now, config.PRICING.usage_bucket_seconds);
  const spend = holder.spend(input.keyHash, input.meter.name, bucket, input.meter.priceMicros, now);
  background(holder, input.stub, input.keyHash, input.waitUntil, now);
  if (!spend) return null;
  const decision: AuthorizeResult = { outcome: "ok", customerId: input.customerId, chargedMicros: spend.priceMicros, balanceMicros: spend.balanceMicros, bucket, grantId: null };
  spends.set(decision, { holder, spend });
  return decision;
}

/** Today's direct debit, sent as a lease sync: the first such request also asks for a lease. */
export async function directWithLease(
  config: Config,
  input: { customerId: string; keyHash: string; stub: CustomerStub; direct: { meter: string; priceMicros: number; requestId: string }; retry: boolean },
): Promise<AuthorizeResult> {
  const holder = holderFor(config, input.customerId);
  const attempt = holder.message(Date.now(), input.keyHash, input.retry ? { ...input.direct, retry: true } : input.direct);
  const reply = await send(holder, input.stub, attempt);
  if (!reply) throw Object.assign(new Error("lease sync failed"), { retryable: true });
  return reply.decision!;
}

/** The origin failed a request a lease paid: its charge goes back to the lease (null: not a leased request). */
export function refundToLease(decision: AuthorizeResult): { refunded: boolean; balanceMicros: number } | null {
  const paid = spends.get(decision);
  if (!paid) return null;
  return { refunded: paid.holder.refund(paid.spend), balanceMicros: paid.spend.balanceMicros + paid.spend.priceMicros };
}

async function send(holder: LeaseHolder, stub: CustomerStub, attempt: Attempt) {
  try {
    const reply = await stub.leaseSync(attempt.message);
    holder.onReply(attempt, reply, Date.now());
    return reply;
  } catch (error) {
    holder.onLost(attempt);
    if (!attempt.message.direct) log.debug("lease sync failed; the next request reports again", error);
    if (attempt.message.direct) throw error;
    return null;
  }
}

/** How long one watcher runs (a request's waitUntil lasts up to 30 s after its response). */
const WATCH_MS = 20_000;
/** A request arriving when its holder's watcher is older than this arms a fresh one. */
const REARM_MS = WATCH_MS / 2;

/**
 * A sync when one is due, and the idle return: both from waitUntil, never in a request's way. A
 * watcher is re-armed by any request that finds it half through its window, so the last request
 * before a pause always leaves at least WATCH_MS / 2 of watching: the isolate's lease is returned
 * once idle, never left to expire at the object (which would charge its unspent reserve).
 */
function background(holder: LeaseHolder, stub: CustomerStub, keyHash: string, waitUntil: WaitUntil, now: number): void {
  if (holder.wantsSync(now)) waitUntil(send(holder, stub, holder.message(now, keyHash, null)));
  const watching = watchers.get(holder);
  if (watching !== undefined && now - watching < REARM_MS) return;
  const armed = now;
  watchers.set(holder, armed);
  waitUntil(
    (async () => {
      // Until a newer watcher takes over, or the window ends.
      while (Date.now() - armed < WATCH_MS && watchers.get(holder) === armed) {
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        if (holder.idle(Date.now()) && holder.wantsSync(Date.now())) await send(holder, stub, holder.message(Date.now(), keyHash, null));
        // Nothing to watch: no lease, no return to send, and no sync on its way that could grant one.
        if (!holder.current && !holder.wantsSync(Date.now()) && !holder.syncInFlight) break;
      }
      if (watchers.get(holder) === armed) watchers.delete(holder);
    })(),
  );
}
/** Each holder's watcher, by the time it was armed. */
const watchers = new WeakMap<LeaseHolder, number>();
