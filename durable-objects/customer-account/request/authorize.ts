import { formatCents } from "../../../src/lib/money";
import { HOUR_MS } from "../../../src/lib/time";
import { type KeyRecord, periodEnd, periodStart, spentThisPeriod, withinCap } from "../access/key-store";
import type { AuthorizeResult, KeyCapState } from "../contract";
import type { AccountContext } from "../core/context";
import { mainGrant, planDrain, type Receipt } from "../credit/grants";
import { bucketOf } from "../credit/ledger";
import { decide } from "./governance";
import { holdTaken } from "./hold-journal";
import { HOLD_MARGIN_MS, HOLDS_TIMER } from "./holds";
import { IDEMPOTENCY_TIMER, type StoredResponse, scopedKey } from "./idempotency";

export const CHARGES_TIMER = "charges";
/** How long after a charge a refund may still come: the origin timeout plus this margin. */
const REFUND_WINDOW_MARGIN_MS = 60_000;

export interface AuthorizeInput {
  keyHash: string;
  meter: string;
  /** Per request; per unit when `hold` is given. */
  priceMicros: number;
  /** The gateway's request id: a retry with the same id replays the first result. */
  requestId: string;
  /**
   * This is a retry of a call whose reply may have been lost: look for the request id's first
   * result. A first attempt cannot have one (request ids are fresh), and a repeated id without
   * this flag still gets the first result (the charge log's key refuses a second charge).
   */
  retry?: boolean;
  /** A request billed from its response: reserve this many units first. */
  hold?: { units: number; onMissing: "hold" | "zero"; model?: string };
  /** The client's Idempotency-Key, with the fingerprint of its method, path and body. */
  idempotency?: { key: string; fingerprint: string };
  now?: number;
}

/**
 * The request path, in one synchronous step: the key, the client's Idempotency-Key, the
 * governance rule, the key's cap, then the debit across grants (or the hold, for a request billed
 * from its response). Nothing here awaits, so concurrent requests never spend the same cent.
 */
export function authorize(context: AccountContext, input: AuthorizeInput): AuthorizeResult {
  const { account, keys, wallet, config } = context;
  if (!account.exists) return { outcome: "invalid_key" };
  const key = keys.active(input.keyHash);
  if (!key) return { outcome: "invalid_key" };
  const a = account.row;
  if (a.deleted_at !== null) return { outcome: "customer_deleted" };
  const now = input.now ?? Date.now();

  const prior = input.retry ? replayOfRequest(context, input, key, now) : null;
  if (prior) return prior;
  if (input.idempotency) {
    const seen = context.idempotency.check(scopedKey(key.id, input.idempotency.key), input.idempotency.fingerprint, now, holdExpiry(context, 0));
    if (seen.state === "replay") return { outcome: "replay", response: seen.response };
    if (seen.state !== "new") return { outcome: `idempotency_${seen.state}` };
  }

  const mismatch = context.currencyMismatch();
  if (mismatch && a.plan === "prepaid") {
    return { outcome: "currency_mismatch", customer: account.profile(), stripeCurrency: mismatch, currency: config.PRICING.currency };
  }
  const amount = input.hold ? input.hold.units * input.priceMicros : input.priceMicros;
  const minimumMicros = context.minimumMicros();
  const available = wallet.available(input.meter, now);
  const verdict = decide({
    plan: a.plan,
    balanceMicros: available,
    minimumMicros,
    priceMicros: amount,
    overdue: a.plan === "postpaid" && config.GOVERNANCE.block_postpaid_when_unpaid && context.invoices.unpaid(),
  });
  if (verdict !== "ok") {
    return {
      outcome: verdict,
      customer: account.profile(),
      balanceMicros: available,
      minimumMicros,
      priceMicros: amount,
      expiringSoonMicros: context.expiringSoonMicros(now),
      keyCapCents: key.spend_cap_cents,
      ...withCap(key, now),
    };
  }
  if (!withinCap(key, amount, now)) return capReached(context, key, now);

  const bucket = bucketOf(now, config.PRICING.usage_bucket_seconds);
  let receipt: Receipt;
  try {
    receipt = chargeOrHold(context, input, key, amount, bucket, now);
  } catch (error) {
    // The request id was already charged (a retry that did not say so): its first result, never a second charge.
    const prior = /UNIQUE constraint failed: (charges|holds)\.request_id/.test(String(error)) ? replayOfRequest(context, input, key, now) : null;
    if (prior) return prior;
    throw error;
  }
  return {
    outcome: "ok",
    customerId: a.customer_id,
    chargedMicros: amount,
    balanceMicros: wallet.available(input.meter, now),
    bucket,
    grantId: mainGrant(receipt),
    ...(input.hold ? { heldUnits: input.hold.units } : {}),
    ...withCap(key, now),
  };
}

/** The key's cap as it stands now, for a key with one. */
function capState(key: KeyRecord, now: number): KeyCapState {
  return {
    capCents: key.spend_cap_cents!,
    period: key.cap_period!,
    spentMicros: spentThisPeriod(key, now),
    resetsAt: periodEnd(key.cap_period!, periodStart(key.cap_period!, now)),
  };
}

function withCap(key: KeyRecord, now: number): { keyCap?: KeyCapState } {
  return key.spend_cap_cents !== null && key.cap_period ? { keyCap: capState(key, now) } : {};
}

/**
 * A plain charge, prepaid or post-paid, within the cohort slack, writes one row, its charge row, and nothing
 * else: the journal keeps the rest in memory and folds it in later (journal.ts). On a capped key
 * too, while the cap keeps room for one more charge at this price after it: the key's period spend
 * is replayed from the charge rows like the grants, and the charge that fills the cap (its
 * key.cap_reached event is written with it) is not journaled. With an Idempotency-Key too: the
 * key in flight is held by the charge row itself (idempotency.ts). A hold likewise writes its hold
 * row only (hold-journal.ts), unless it has an Idempotency-Key. Anything more (a charge that may
 * move a cohort) is written with its effects, in one transaction.
 */
function journaled(context: AccountContext, input: AuthorizeInput, key: KeyRecord, amount: number, now: number): boolean {
  return (
    amount > 0 &&
    !(input.hold && input.idempotency) &&
    ((key.spend_cap_cents === null && key.cap_period === null) || withinCap(key, 2 * amount, now)) &&
    context.withinSlack(now, amount)
  );
}

/** The debit (or the hold) and everything written with it. */
function chargeOrHold(context: AccountContext, input: AuthorizeInput, key: KeyRecord, amount: number, bucket: number, now: number): Receipt {
  const { account, keys, wallet, charges } = context;
  const a = account.row;
  // A charge's Idempotency-Key is taken in its charge row, the charge's durable record either way.
  const idem = input.idempotency && !input.hold && amount > 0 ? { ...input.idempotency, key: scopedKey(key.id, input.idempotency.key) } : null;
  const keyColumns = idem ? { idem_key: idem.key, idem_fingerprint: idem.fingerprint } : {};
  if (input.hold && !input.idempotency) context.placeFirst(now);
  if (journaled(context, input, key, amount, now)) {
    // Every write that can fail comes before the charge row, with no transaction around them: a
    // failure there leaves nothing charged. After the row only memory changes.
    context.journal.makeRoom();
    if (input.hold) context.timers.at(HOLDS_TIMER, holdExpiry(context, now));
    else context.timers.at(CHARGES_TIMER, now + chargeRetentionMs(context));
    context.rollup.changed();
    const receipt = planDrain(context.grants.all, input.meter, amount, now);
    if (input.hold) {
      const hold = newHold(context, input, input.hold, key, receipt, bucket, now);
      context.journal.recordHold(
        (seq) => context.holds.insert(hold, seq),
        () => holdTaken(context, hold),
      );
      context.holds.takenWithin(input.requestId, context.epoch);
      context.spendSlack(amount);
      return receipt;
    }
    // What the charge owes Stripe (as reports.accrue counts it), decided now and kept in its row, so
    // a replay after a deploy that turned Stripe on or off owes what this charge owed: prepaid, its
    // amount of usage; post-paid, one request on the meter's quantity; nothing with Stripe off.
    const pendingUsage = !context.config.stripeEnabled ? 0 : a.plan === "prepaid" ? amount : 1;
    context.journal.record({
      request_id: input.requestId,
      meter: input.meter,
      bucket,
      plan: a.plan,
      amount,
      receipt,
      key_id: key.id,
      created_at: now,
      pendingUsage,
      ...keyColumns,
    });
    if (idem) context.idempotency.charged(idem.key, idem.fingerprint, input.requestId, now);
    context.spendSlack(amount);
    return receipt;
  }
  const epoch = context.epoch;
  return context.atomically(() => {
    // The request's own row first: a request id already charged fails right here, before anything
    // has moved.
    const receipt = planDrain(context.grants.all, input.meter, amount, now);
    if (input.hold) {
      context.holds.insert(newHold(context, input, input.hold, key, receipt, bucket, now));
      context.timers.at(HOLDS_TIMER, holdExpiry(context, now));
    } else if (amount > 0) {
      charges.insert({ request_id: input.requestId, meter: input.meter, bucket, plan: a.plan, amount, receipt, key_id: key.id, created_at: now, ...keyColumns });
      context.timers.at(CHARGES_TIMER, now + chargeRetentionMs(context));
      if (idem) context.idempotency.charged(idem.key, idem.fingerprint, input.requestId, now);
    }
    // A hold is counted as the request (quantity 0 for post-paid: its units are reported when it settles).
    const quantity = input.hold ? 0 : amount > 0 ? 1 : 0;
    wallet.charge({ meter: input.meter, bucket, now }, amount, context.reports.accrue(a.plan, input.meter, -amount, quantity), 1, receipt);
    if (amount > 0) keys.spend(key.id, amount, now);
    if (input.idempotency && !idem) context.idempotency.begin(scopedKey(key.id, input.idempotency.key), input.idempotency.fingerprint, input.requestId, now);
    // The charge that fills the cap is the crossing: its event is written in this same step.
    if (amount > 0 && key.spend_cap_cents !== null && !withinCap(key, amount, now)) context.keyCapReached(key.id, key.spend_cap_cents);
    context.charged(now, amount);
    // Taken within the slack (charged() placed no cohorts): its settlement may be journaled.
    if (input.hold && !input.idempotency && amount > 0 && context.epoch === epoch) context.holds.takenWithin(input.requestId, epoch);
    return receipt;
  });
}

function newHold(context: AccountContext, input: AuthorizeInput, hold: NonNullable<AuthorizeInput["hold"]>, key: KeyRecord, receipt: Receipt, bucket: number, now: number) {
  return {
    request_id: input.requestId,
    meter: input.meter,
    bucket,
    plan: context.account.row.plan,
    key_id: key.id,
    unit_price: input.priceMicros,
    held_units: hold.units,
    receipt,
    on_missing: hold.onMissing,
    created_at: now,
    expires_at: holdExpiry(context, now),
    ...(hold.model !== undefined ? { model: hold.model } : {}),
  };
}

/** The same gateway request id again (its reply was lost): the first result, nothing charged twice. */
function replayOfRequest(context: AccountContext, input: AuthorizeInput, key: KeyRecord, now: number): AuthorizeResult | null {
  const a = context.account.row;
  if (input.hold) {
    const hold = context.holds.get(input.requestId);
    if (!hold) return null;
    return {
      outcome: "ok",
      customerId: a.customer_id,
      chargedMicros: hold.held_units * hold.unit_price,
      balanceMicros: context.wallet.available(hold.meter, now),
      bucket: hold.bucket,
      grantId: mainGrant(hold.receipt),
      heldUnits: hold.held_units,
      replayed: true,
      ...withCap(key, now),
    };
  }
  if (input.priceMicros === 0) return null;
  const prior = context.charges.get(input.requestId);
  if (!prior) return null;
  return {
    outcome: "ok",
    customerId: a.customer_id,
    chargedMicros: prior.status === "charged" ? prior.amount : 0,
    balanceMicros: context.wallet.available(prior.meter, now),
    bucket: prior.bucket,
    grantId: mainGrant(prior.receipt),
    replayed: true,
    ...withCap(key, now),
  };
}

function capReached(context: AccountContext, key: KeyRecord, now: number): AuthorizeResult {
  return { outcome: "key_cap_reached", customer: context.account.profile(), keyId: key.id, ...capState(key, now) };
}

export type RefundResult =
  | { refunded: true; balanceMicros: number; restoredMicros: number }
  | { refunded: false; reason: "unknown_request" | "already_refunded" | "refund_limit"; balanceMicros: number };

/** Refunds of failed requests (charges and holds) in the last hour, against GOVERNANCE.refund_limit_per_hour. */
export function refundAllowed(context: AccountContext, requestId: string, now: number): boolean {
  const since = now - HOUR_MS;
  if (context.charges.refundsSince(since) + context.holds.refundsSince(since) < context.config.GOVERNANCE.refund_limit_per_hour) return true;
  context.refundDenied(requestId, now);
  return false;
}

/**
 * Gives back a charge whose request the origin failed, at most once per request id, into the
 * grants it came from. Refunds are bounded per customer (GOVERNANCE.refund_limit_per_hour): past
 * the limit a failed request stays charged, so a client cannot get work free by making the
 * origin fail after the expensive part.
 */
export function refund(context: AccountContext, input: { requestId: string; now?: number }): RefundResult {
  const { wallet, charges, keys, config } = context;
  const now = input.now ?? Date.now();
  const row = charges.get(input.requestId);
  const balanceOf = (meter: string) => wallet.available(meter, now);
  if (!row) return { refunded: false, reason: "unknown_request", balanceMicros: balanceOf(config.PRICING.default_meter) };
  if (row.status === "refunded") return { refunded: false, reason: "already_refunded", balanceMicros: balanceOf(row.meter) };
  if (!refundAllowed(context, row.request_id, now)) return { refunded: false, reason: "refund_limit", balanceMicros: balanceOf(row.meter) };
  const restoredMicros = context.atomically(() => {
    const restored = wallet.refund({ meter: row.meter, bucket: row.bucket, now }, row.receipt, {
      usage: (micros) => context.reports.accrue(row.plan, row.meter, micros, -1),
      closed: context.closedGrantDebit(row.request_id),
    });
    if (row.key_id) keys.spend(row.key_id, -row.amount, now, row.created_at);
    charges.markRefunded(row.request_id, now);
    if (row.idem_key) context.idempotency.refunded(row.idem_key, row.request_id);
    context.changed(now);
    return restored;
  });
  return { refunded: true, balanceMicros: balanceOf(row.meter), restoredMicros };
}

/** The first request with an Idempotency-Key finished: keep its response for replays, or not. */
export function finishIdempotent(context: AccountContext, input: { key: string; keyHash: string; requestId: string; outcome: StoredResponse | "not_replayable" | "forget" }): void {
  // The key that made the request, revoked since or not.
  const key = context.keys.byHash(input.keyHash);
  if (key) context.idempotency.finish(scopedKey(key.id, input.key), input.requestId, input.outcome);
}

function chargeRetentionMs(context: AccountContext): number {
  return context.config.GOVERNANCE.origin_timeout_ms + REFUND_WINDOW_MARGIN_MS;
}

/** The charges timer: drops rows no refund can need any more (a key their request never finished is kept, not replayable). */
export function pruneCharges(context: AccountContext, now: number): void {
  context.idempotency.abandon(now - chargeRetentionMs(context));
  if (context.charges.prune(now, chargeRetentionMs(context))) context.timers.at(CHARGES_TIMER, now + 60_000);
}

/** The idempotency timer: keys past their 24 hours are forgotten. */
export function pruneIdempotency(context: AccountContext, now: number): void {
  context.timers.set(IDEMPOTENCY_TIMER, context.idempotency.prune(now));
}

/** When an unsettled hold is released: the origin timeout plus a margin. */
export function holdExpiry(context: AccountContext, now: number): number {
  return now + context.config.GOVERNANCE.origin_timeout_ms + HOLD_MARGIN_MS;
}

/** What a request was held and charged, by its request id (for the admin API); null when unknown. */
export function requestCharge(context: AccountContext, requestId: string) {
  const hold = context.holds.get(requestId);
  if (hold) {
    return {
      request_id: hold.request_id,
      meter: hold.meter,
      status: hold.status,
      held_units: hold.held_units,
      units: hold.units,
      over_hold_units: hold.over_hold,
      charged_exact_cents: hold.charged === null ? null : formatCents(hold.charged),
      reason: hold.reason,
      // A tokens meter's: its model row and tokens per kind (null for other meters).
      model: hold.usage?.model ?? null,
      tokens: hold.usage?.tokens ?? null,
      created_at: hold.created_at,
      settled_at: hold.settled_at,
    };
  }
  const charge = context.charges.get(requestId);
  return charge
    ? {
        request_id: charge.request_id,
        meter: charge.meter,
        status: charge.status,
        charged_exact_cents: charge.status === "charged" ? formatCents(charge.amount) : "0",
        created_at: charge.created_at,
      }
    : null;
}
