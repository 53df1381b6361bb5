import type { AuthorizeResult } from "../../src/types";
import { mainGrant } from "./grants";
import { decide } from "./governance";
import { periodEnd, periodStart, spentThisPeriod, withinCap } from "./keys";
import { bucketOf } from "./ledger";
import type { Room } from "./room";

export const CHARGES_TIMER = "charges";
/** How long after a charge a refund may still come: the origin timeout plus this margin. */
const REFUND_WINDOW_MARGIN_MS = 60_000;

export interface AuthorizeInput {
  keyHash: string;
  meter: string;
  priceMicros: number;
  /** The gateway's request id: a retry with the same id replays the first result. */
  requestId: string;
  now?: number;
}

/**
 * The request path, in one synchronous step: the key, the governance rule, the key's cap, then
 * the debit across grants. Nothing here awaits, so concurrent requests never spend the same cent.
 */
export function authorize(room: Room, input: AuthorizeInput): AuthorizeResult {
  const { account, keys, wallet, charges, config } = room;
  if (!account.exists) return { outcome: "invalid_key" };
  const key = keys.active(input.keyHash);
  if (!key) return { outcome: "invalid_key" };
  const a = account.row;
  if (a.deleted_at !== null) return { outcome: "customer_deleted" };
  const now = input.now ?? Date.now();

  const prior = input.priceMicros > 0 ? charges.get(input.requestId) : undefined;
  if (prior) {
    return {
      outcome: "ok",
      customerId: a.customer_id,
      chargedMicros: prior.status === "charged" ? prior.amount : 0,
      balanceMicros: wallet.available(prior.meter, now),
      bucket: prior.bucket,
      grantId: mainGrant(prior.receipt),
      replayed: true,
    };
  }

  const mismatch = room.currencyMismatch();
  if (mismatch && a.plan === "prepaid") {
    return { outcome: "currency_mismatch", customer: account.profile(), stripeCurrency: mismatch, currency: config.PRICING.currency };
  }
  const minimumMicros = room.minimumMicros();
  const available = wallet.available(input.meter, now);
  const verdict = decide({
    plan: a.plan,
    balanceMicros: available,
    minimumMicros,
    priceMicros: input.priceMicros,
    overdue: a.plan === "postpaid" && config.GOVERNANCE.block_postpaid_when_unpaid && room.invoices.unpaid(),
  });
  if (verdict !== "ok") {
    return {
      outcome: verdict,
      customer: account.profile(),
      balanceMicros: available,
      minimumMicros,
      priceMicros: input.priceMicros,
      expiringSoonMicros: room.expiringSoonMicros(now),
      keyCapCents: key.spend_cap_cents,
    };
  }
  if (!withinCap(key, input.priceMicros, now)) {
    const start = periodStart(key.cap_period!, now);
    return {
      outcome: "key_cap_reached",
      customer: account.profile(),
      keyId: key.id,
      capCents: key.spend_cap_cents!,
      period: key.cap_period!,
      spentMicros: spentThisPeriod(key, now),
      resetsAt: periodEnd(key.cap_period!, start),
    };
  }

  const bucket = bucketOf(now, config.PRICING.usage_bucket_seconds);
  const receipt = room.atomically(() => {
    const receipt = wallet.charge({ meter: input.meter, bucket, now }, input.priceMicros, room.reports.accrue(a.plan, input.meter, -input.priceMicros, 1));
    if (input.priceMicros > 0) {
      keys.spend(key.id, input.priceMicros, now);
      charges.insert({ request_id: input.requestId, meter: input.meter, bucket, plan: a.plan, amount: input.priceMicros, receipt, key_id: key.id, created_at: now });
      room.timers.at(CHARGES_TIMER, now + chargeRetentionMs(room));
      // The charge that fills the cap is the crossing: its event is written in this same step.
      if (key.spend_cap_cents !== null && !withinCap(key, input.priceMicros, now)) room.keyCapReached(key.id, key.spend_cap_cents);
    }
    room.changed();
    return receipt;
  });
  return {
    outcome: "ok",
    customerId: a.customer_id,
    chargedMicros: input.priceMicros,
    balanceMicros: wallet.available(input.meter, now),
    bucket,
    grantId: mainGrant(receipt),
  };
}

export type RefundResult =
  | { refunded: true; balanceMicros: number; restoredMicros: number }
  | { refunded: false; reason: "unknown_request" | "already_refunded" | "refund_limit"; balanceMicros: number };

/**
 * Gives back a charge whose request the origin failed, at most once per request id, into the
 * grants it came from. Refunds are bounded per customer (GOVERNANCE.refund_limit_per_hour): past
 * the limit a failed request stays charged, so a client cannot get work free by making the
 * origin fail after the expensive part.
 */
export function refund(room: Room, input: { requestId: string; now?: number }): RefundResult {
  const { wallet, charges, keys, config } = room;
  const now = input.now ?? Date.now();
  const row = charges.get(input.requestId);
  const balanceOf = (meter: string) => wallet.available(meter, now);
  if (!row) return { refunded: false, reason: "unknown_request", balanceMicros: balanceOf(config.PRICING.default_meter) };
  if (row.status === "refunded") return { refunded: false, reason: "already_refunded", balanceMicros: balanceOf(row.meter) };
  if (charges.refundsSince(now - 3_600_000) >= config.GOVERNANCE.refund_limit_per_hour) {
    room.refundDenied(row.request_id, now);
    return { refunded: false, reason: "refund_limit", balanceMicros: balanceOf(row.meter) };
  }
  const restoredMicros = room.atomically(() => {
    const restored = wallet.refund({ meter: row.meter, bucket: row.bucket, now }, row.receipt, (micros) =>
      room.reports.accrue(row.plan, row.meter, micros, -1),
    );
    if (row.key_id) keys.spend(row.key_id, -row.amount, now, row.created_at);
    charges.markRefunded(row.request_id, now);
    room.changed();
    return restored;
  });
  return { refunded: true, balanceMicros: balanceOf(row.meter), restoredMicros };
}

function chargeRetentionMs(room: Room): number {
  return room.config.GOVERNANCE.origin_timeout_ms + REFUND_WINDOW_MARGIN_MS;
}

/** The charges timer: drops rows no refund can need any more. */
export function pruneCharges(room: Room, now: number): void {
  if (room.charges.prune(now, chargeRetentionMs(room))) room.timers.at(CHARGES_TIMER, now + 60_000);
}

