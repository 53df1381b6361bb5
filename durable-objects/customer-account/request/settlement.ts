import { meterByName } from "../../../src/lib/config";
import type { TokenCounts } from "../../../src/lib/meters";
import { capHeadroom } from "../access/key-store";
import type { AuthorizeResult } from "../contract";
import type { AccountContext } from "../core/context";
import type { Receipt } from "../credit/grants";
import { planDrain } from "../credit/grants";
import { holdExpiry, refundAllowed } from "./authorize";
import { extendsJournaled, extensionBase, holdExtended, holdSettled, settlesJournaled } from "./hold-journal";

/** How the journal replays a hold event; handed to the context by the object (core/ imports nothing of request/ that imports it). */
export { replayHold } from "./hold-journal";

import { HOLDS_TIMER, type HoldRow, type SettleReason, settlement } from "./holds";

/*
 * A request billed from its response, after authorize took its hold (authorize.ts): the hold grows
 * as a stream's events arrive, is kept while the response is still arriving, and is settled by
 * the units read; one whose worker went away is released by the alarm.
 */

const NO_TOKENS: TokenCounts = { input: 0, cached_input: 0, cache_write: 0, output: 0, reasoning: 0 };

export interface ExtendResult {
  grantedUnits: number;
  heldUnits: number;
  /** When nothing more could be held: what the 402 template needs to tell the client why. */
  refusal?: Extract<AuthorizeResult, { outcome: "insufficient_credit" | "payment_overdue" }>;
}

/**
 * Takes up to `units` more units into a streaming request's hold: as many as the meter's credit
 * (above the minimum) and the key's cap allow. 0 means the next event cannot be paid for.
 */
export function extendHold(context: AccountContext, input: { requestId: string; units: number; now?: number }): ExtendResult {
  const now = input.now ?? Date.now();
  const hold = context.holds.get(input.requestId);
  if (hold?.status !== "open") return { grantedUnits: 0, heldUnits: hold?.held_units ?? 0 };
  const granted = affordableUnits(context, hold, input.units, now);
  if (granted === 0) {
    const key = hold.key_id ? context.keys.byKeyId(hold.key_id) : undefined;
    return {
      grantedUnits: 0,
      heldUnits: hold.held_units,
      refusal: {
        outcome: "insufficient_credit" as const,
        customer: context.account.profile(),
        balanceMicros: context.wallet.available(hold.meter, now),
        minimumMicros: context.minimumMicros(),
        priceMicros: hold.unit_price,
        expiringSoonMicros: context.expiringSoonMicros(now),
        keyCapCents: key?.spend_cap_cents ?? null,
      },
    };
  }
  const amount = granted * hold.unit_price;
  const drain = planDrain(context.grants.all, hold.meter, amount, now);
  if (extendsJournaled(context, hold, amount, drain, now)) {
    // Its row is the one write (hold-journal.ts): the fallible ones first, memory after.
    context.journal.makeRoom();
    context.timers.at(HOLDS_TIMER, holdExpiry(context, now));
    const base = extensionBase(context, hold);
    const receipt: Receipt = { parts: [...hold.receipt.parts, ...drain.parts], debt: hold.receipt.debt };
    context.journal.recordHold(
      (seq) => context.holds.extended(hold.request_id, hold.held_units + granted, receipt, holdExpiry(context, now), { seq, base }),
      () => holdExtended(context, hold, amount, drain, now),
    );
    context.spendSlack(amount);
    return { grantedUnits: granted, heldUnits: hold.held_units + granted };
  }
  context.atomically(() => {
    const more = context.wallet.charge({ meter: hold.meter, bucket: hold.bucket, now }, amount, context.reports.accrue(hold.plan, hold.meter, -amount, 0), 0);
    // Counted today even for a hold opened in an earlier period: affordableUnits checked today's context.
    if (hold.key_id) context.keys.spend(hold.key_id, amount, now);
    const receipt: Receipt = { parts: [...hold.receipt.parts, ...more.parts], debt: hold.receipt.debt + more.debt };
    context.holds.extended(hold.request_id, hold.held_units + granted, receipt, holdExpiry(context, now));
    context.timers.at(HOLDS_TIMER, holdExpiry(context, now));
    context.charged(now, amount);
  });
  return { grantedUnits: granted, heldUnits: hold.held_units + granted };
}

/**
 * A response still arriving keeps its hold: the origin timeout bounds only the response headers,
 * so a long stream or body is a live request, not an abandoned one. Its expiry moves to now plus
 * the origin timeout and the margin. False when the hold is settled or unknown.
 */
export function keepHold(context: AccountContext, input: { requestId: string; now?: number }): boolean {
  const now = input.now ?? Date.now();
  const hold = context.holds.get(input.requestId);
  if (hold?.status !== "open") return false;
  context.atomically(() => {
    context.holds.kept(hold.request_id, holdExpiry(context, now));
    context.timers.at(HOLDS_TIMER, holdExpiry(context, now));
  });
  return true;
}

export interface SettleInput {
  requestId: string;
  /** Units read (null: unreadable); for a tokens meter, its cost in micro-cents. */
  units: number | null;
  reason: SettleReason;
  /** A tokens meter's tokens per kind, as the response reported them. */
  tokens?: TokenCounts | null;
  now?: number;
}

export interface SettleResult {
  chargedMicros: number;
  chargedUnits: number;
  overHoldUnits: number;
  balanceMicros: number;
  settled: boolean;
}

/**
 * Settles a hold when its response ends: the units read are charged (null when they could not be
 * read: the meter's on_missing_units applies), the unused part of the hold goes back, and units
 * past the hold are charged on top, into debt if credit is short (the request record keeps them
 * as over_hold). A failed origin releases the whole hold, within the refund limit. Idempotent: a
 * settled hold answers what it was charged.
 */
export function settleHold(context: AccountContext, input: SettleInput): SettleResult {
  const now = input.now ?? Date.now();
  const hold = context.holds.get(input.requestId);
  if (!hold) return { chargedMicros: 0, chargedUnits: 0, overHoldUnits: 0, balanceMicros: 0, settled: false };
  if (hold.status === "settled") {
    return {
      chargedMicros: hold.charged ?? 0,
      chargedUnits: hold.units ?? 0,
      overHoldUnits: hold.over_hold,
      balanceMicros: context.wallet.available(hold.meter, now),
      settled: false,
    };
  }
  const failed = input.reason === "origin_failed" && refundAllowed(context, hold.request_id, now);
  const { chargedUnits, overHold, charged, released, extra } = failed
    ? { chargedUnits: 0, overHold: 0, charged: 0, released: hold.held_units * hold.unit_price, extra: 0 }
    : settlement({ heldUnits: hold.held_units, unitPrice: hold.unit_price, onMissing: hold.on_missing }, input.units, input.reason);
  if (!failed && settlesJournaled(context, hold, { overHold, released, charged }, input.reason, now)) {
    // Its row is the one write (hold-journal.ts); what it gives back moves in memory.
    context.journal.makeRoom();
    const fields = { units: input.units, charged, overHold, reason: input.reason, now, usage: null };
    context.journal.recordHold(
      (seq) => context.holds.settled(hold.request_id, fields, seq),
      () => holdSettled(context, { ...hold, units: input.units, reason: input.reason, settled_at: now }),
    );
    context.giveBackSlack(released);
    return { chargedMicros: charged, chargedUnits, overHoldUnits: overHold, balanceMicros: context.wallet.available(hold.meter, now), settled: true };
  }
  context.atomically(() => {
    const usage = { meter: hold.meter, bucket: hold.bucket, now };
    // Prepaid usage owed to Stripe moves with the money; post-paid usage is reported in units, below.
    const accrue = (micros: number) => context.reports.accrue(hold.plan, hold.meter, micros, 0);
    if (released > 0) context.wallet.release(usage, hold.receipt, released, { usage: accrue, closed: context.closedGrantDebit(hold.request_id) });
    if (extra > 0) context.wallet.charge(usage, extra, accrue(-extra), 0);
    // A meter priced per tool or per model reports its cost in cents; any other, its units.
    if (meterByName(context.config, hold.meter)?.reportsCost) context.reports.accrueCost(hold.plan, hold.meter, hold.usage?.model ?? null, charged);
    else if (hold.plan === "postpaid") context.reports.accrue(hold.plan, hold.meter, 0, chargedUnits);
    if (hold.key_id && released > 0) context.keys.spend(hold.key_id, -released, now, hold.created_at);
    if (hold.key_id && extra > 0) overCap(context, hold.key_id, extra, now);
    if (overHold > 0) context.holds.recordOverHold(hold.meter, hold.bucket, overHold);
    const settledUsage = hold.usage ? { model: hold.usage.model, tokens: input.tokens ?? null } : null;
    if (settledUsage && !failed) context.modelUsage.record(hold.meter, settledUsage.model, hold.bucket, settledUsage.tokens ?? NO_TOKENS, charged);
    context.holds.settled(hold.request_id, { units: input.units, charged, overHold, reason: failed ? "refunded" : input.reason, now, usage: settledUsage });
    context.changed(now);
  });
  return { chargedMicros: charged, chargedUnits, overHoldUnits: overHold, balanceMicros: context.wallet.available(hold.meter, now), settled: true };
}

/** Units past a hold count against the key's cap as they are charged: the charge that fills it is the crossing. */
function overCap(context: AccountContext, keyId: string, micros: number, now: number): void {
  const key = context.keys.byKeyId(keyId);
  const before = key ? capHeadroom(key, now) : Infinity;
  context.keys.spend(keyId, micros, now);
  if (key && key.spend_cap_cents !== null && before > 0 && capHeadroom(key, now) === 0) context.keyCapReached(key.id, key.spend_cap_cents);
}

/**
 * The holds timer: a hold whose request went silent past the origin timeout (its worker went away,
 * or its client stopped reading) is settled as charged in full; a stream that resumes after that
 * is cut (keepHold and extendHold answer that it is settled).
 */
export function expireHolds(context: AccountContext, now: number): void {
  for (const requestId of context.holds.openExpired(now)) settleHold(context, { requestId, units: null, reason: "expired", now });
  const next = context.holds.prune(now);
  context.timers.set(HOLDS_TIMER, next);
}

/** How many more units a hold may take now (up to `wanted`): what the meter's credit and the key's cap allow. */
function affordableUnits(context: AccountContext, hold: HoldRow, wanted: number, now: number): number {
  if (hold.plan === "postpaid") return wanted;
  const headroom = context.wallet.available(hold.meter, now) - context.minimumMicros();
  const key = hold.key_id ? context.keys.byKeyId(hold.key_id) : undefined;
  const cap = key ? capHeadroom(key, now) : Infinity;
  return Math.max(0, Math.min(wanted, Math.floor(headroom / hold.unit_price), Math.floor(cap / hold.unit_price)));
}
