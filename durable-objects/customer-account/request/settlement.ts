import type { AuthorizeResult } from "../contract";
import type { Receipt } from "../credit/grants";
import { HOLDS_TIMER, settlement, type HoldRow, type SettleReason } from "./holds";
import { capHeadroom } from "../access/key-store";
import { holdExpiry, refundAllowed } from "./authorize";
import type { Room } from "../core/context";

/*
 * A request billed from its response, after authorize took its hold (requests.ts): the hold grows
 * as a stream's events arrive, is kept while the response is still arriving, and is settled by
 * the units read; one whose worker went away is released by the alarm.
 */

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
export function extendHold(room: Room, input: { requestId: string; units: number; now?: number }): ExtendResult {
  const now = input.now ?? Date.now();
  const hold = room.holds.get(input.requestId);
  if (!hold || hold.status !== "open") return { grantedUnits: 0, heldUnits: hold?.held_units ?? 0 };
  const granted = affordableUnits(room, hold, input.units, now);
  if (granted === 0) {
    const key = hold.key_id ? room.keys.byKeyId(hold.key_id) : undefined;
    return {
      grantedUnits: 0,
      heldUnits: hold.held_units,
      refusal: {
        outcome: "insufficient_credit" as const,
        customer: room.account.profile(),
        balanceMicros: room.wallet.available(hold.meter, now),
        minimumMicros: room.minimumMicros(),
        priceMicros: hold.unit_price,
        expiringSoonMicros: room.expiringSoonMicros(now),
        keyCapCents: key?.spend_cap_cents ?? null,
      },
    };
  }
  const amount = granted * hold.unit_price;
  room.atomically(() => {
    const more = room.wallet.charge({ meter: hold.meter, bucket: hold.bucket, now }, amount, room.reports.accrue(hold.plan, hold.meter, -amount, 0), 0);
    // Counted today even for a hold opened in an earlier period: affordableUnits checked today's room.
    if (hold.key_id) room.keys.spend(hold.key_id, amount, now);
    const receipt: Receipt = { parts: [...hold.receipt.parts, ...more.parts], debt: hold.receipt.debt + more.debt };
    room.holds.extended(hold.request_id, hold.held_units + granted, receipt, holdExpiry(room, now));
    room.timers.at(HOLDS_TIMER, holdExpiry(room, now));
    room.charged(now, amount);
  });
  return { grantedUnits: granted, heldUnits: hold.held_units + granted };
}

/**
 * A response still arriving keeps its hold: the origin timeout bounds only the response headers,
 * so a long stream or body is a live request, not an abandoned one. Its expiry moves to now plus
 * the origin timeout and the margin. False when the hold is settled or unknown.
 */
export function keepHold(room: Room, input: { requestId: string; now?: number }): boolean {
  const now = input.now ?? Date.now();
  const hold = room.holds.get(input.requestId);
  if (!hold || hold.status !== "open") return false;
  room.atomically(() => {
    room.holds.kept(hold.request_id, holdExpiry(room, now));
    room.timers.at(HOLDS_TIMER, holdExpiry(room, now));
  });
  return true;
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
export function settleHold(room: Room, input: { requestId: string; units: number | null; reason: SettleReason; now?: number }): SettleResult {
  const now = input.now ?? Date.now();
  const hold = room.holds.get(input.requestId);
  if (!hold) return { chargedMicros: 0, chargedUnits: 0, overHoldUnits: 0, balanceMicros: 0, settled: false };
  if (hold.status === "settled") {
    return { chargedMicros: hold.charged ?? 0, chargedUnits: hold.units ?? 0, overHoldUnits: hold.over_hold, balanceMicros: room.wallet.available(hold.meter, now), settled: false };
  }
  const failed = input.reason === "origin_failed" && refundAllowed(room, hold.request_id, now);
  const { chargedUnits, overHold, charged, released, extra } = failed
    ? { chargedUnits: 0, overHold: 0, charged: 0, released: hold.held_units * hold.unit_price, extra: 0 }
    : settlement({ heldUnits: hold.held_units, unitPrice: hold.unit_price, onMissing: hold.on_missing }, input.units, input.reason);
  room.atomically(() => {
    const usage = { meter: hold.meter, bucket: hold.bucket, now };
    // Prepaid usage owed to Stripe moves with the money; post-paid usage is reported in units, below.
    const accrue = (micros: number) => room.reports.accrue(hold.plan, hold.meter, micros, 0);
    if (released > 0) room.wallet.release(usage, hold.receipt, released, { usage: accrue, closed: room.closedGrantDebit(hold.request_id) });
    if (extra > 0) room.wallet.charge(usage, extra, accrue(-extra), 0);
    if (hold.plan === "postpaid") room.reports.accrue(hold.plan, hold.meter, 0, chargedUnits);
    if (hold.key_id && released > 0) room.keys.spend(hold.key_id, -released, now, hold.created_at);
    if (hold.key_id && extra > 0) overCap(room, hold.key_id, extra, now);
    if (overHold > 0) room.holds.recordOverHold(hold.meter, hold.bucket, overHold);
    room.holds.settled(hold.request_id, { units: input.units, charged, overHold, reason: failed ? "refunded" : input.reason, now });
    room.changed(now);
  });
  return { chargedMicros: charged, chargedUnits, overHoldUnits: overHold, balanceMicros: room.wallet.available(hold.meter, now), settled: true };
}

/** Units past a hold count against the key's cap as they are charged: the charge that fills it is the crossing. */
function overCap(room: Room, keyId: string, micros: number, now: number): void {
  const key = room.keys.byKeyId(keyId);
  const before = key ? capHeadroom(key, now) : Infinity;
  room.keys.spend(keyId, micros, now);
  if (key && key.spend_cap_cents !== null && before > 0 && capHeadroom(key, now) === 0) room.keyCapReached(key.id, key.spend_cap_cents);
}

/**
 * The holds timer: a hold whose request went silent past the origin timeout (its worker went away,
 * or its client stopped reading) is settled as charged in full; a stream that resumes after that
 * is cut (keepHold and extendHold answer that it is settled).
 */
export function expireHolds(room: Room, now: number): void {
  for (const requestId of room.holds.openExpired(now)) settleHold(room, { requestId, units: null, reason: "expired", now });
  const next = room.holds.prune(now);
  room.timers.set(HOLDS_TIMER, next);
}

/** How many more units a hold may take now (up to `wanted`): what the meter's credit and the key's cap allow. */
function affordableUnits(room: Room, hold: HoldRow, wanted: number, now: number): number {
  if (hold.plan === "postpaid") return wanted;
  const headroom = room.wallet.available(hold.meter, now) - room.minimumMicros();
  const key = hold.key_id ? room.keys.byKeyId(hold.key_id) : undefined;
  const cap = key ? capHeadroom(key, now) : Infinity;
  return Math.max(0, Math.min(wanted, Math.floor(headroom / hold.unit_price), Math.floor(cap / hold.unit_price)));
}
