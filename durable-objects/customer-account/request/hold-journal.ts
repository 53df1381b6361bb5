import { meterByName } from "../../../src/lib/config";
import type { AccountContext } from "../core/context";
import type { Receipt } from "../credit/grants";
import type { HoldBase, HoldRow, SettleReason } from "./holds";
import { settlement } from "./holds";

/*
 * Journaled holds (docs/design/journaled-holds.md): a hold taken within the cohort slack writes its
 * hold row only, and its settlement, when it gives back within the same slack, only the UPDATE of
 * that row, and a stream's extension within the slack only its UPDATE. What they move changes in memory, as a journaled charge's does (core/journal.ts), is
 * written by the fold, and is replayed from the row (`taken_seq`, `extended_seq`, `settled_seq` past `folded_seq`)
 * after a restart. The functions here are that movement, the same live and in a replay.
 */

type Taken = Pick<HoldRow, "meter" | "bucket" | "plan" | "key_id" | "unit_price" | "held_units" | "receipt" | "created_at">;
type Settled = Taken & Pick<HoldRow, "on_missing" | "units" | "reason" | "settled_at">;

/** What taking a hold moves: the drain its receipt names, the request counted in its usage row, its key's period spend. */
export function holdTaken(context: AccountContext, hold: Taken): void {
  const amount = hold.held_units * hold.unit_price;
  const usage = { meter: hold.meter, bucket: hold.bucket, now: hold.created_at };
  context.wallet.charge(usage, amount, context.reports.accrue(hold.plan, hold.meter, -amount, 0), 1, hold.receipt);
  if (hold.key_id) context.keys.spend(hold.key_id, amount, hold.created_at);
}

/**
 * What extending a hold moves: `micros` more drained as `receipt` says (no debt, see
 * extendsJournaled), in the hold's usage row without counting the request again.
 */
export function holdExtended(context: AccountContext, hold: Pick<HoldRow, "meter" | "bucket" | "plan" | "key_id">, micros: number, receipt: Receipt, now: number): void {
  context.wallet.charge({ meter: hold.meter, bucket: hold.bucket, now }, micros, context.reports.accrue(hold.plan, hold.meter, -micros, 0), 0, receipt);
  if (hold.key_id) context.keys.spend(hold.key_id, micros, now);
}

/** The hold before its unfolded extensions: the units and receipt parts `base` says. */
function before(hold: HoldRow, base: HoldBase): HoldRow {
  return { ...hold, held_units: base.held_units, receipt: { parts: hold.receipt.parts.slice(0, base.parts), debt: base.debt } };
}

/**
 * What a journaled settlement moves (settleHold's, for one that settlesJournaled allows): the
 * unused part of the hold back into the grants it came from, a post-paid request's units owed to
 * Stripe, the key's period spend given back.
 */
export function holdSettled(context: AccountContext, hold: Settled): void {
  const s = settlement({ heldUnits: hold.held_units, unitPrice: hold.unit_price, onMissing: hold.on_missing }, hold.units, hold.reason as SettleReason);
  const now = hold.settled_at!;
  const usage = { meter: hold.meter, bucket: hold.bucket, now };
  if (s.released > 0) context.wallet.release(usage, hold.receipt, s.released, { usage: (micros) => context.reports.accrue(hold.plan, hold.meter, micros, 0) });
  if (hold.plan === "postpaid") context.reports.accrue(hold.plan, hold.meter, 0, s.chargedUnits);
  if (hold.key_id && s.released > 0) context.keys.spend(hold.key_id, -s.released, now, hold.created_at);
}

/** A journaled event of a hold, applied again after a restart (journal.replay). */
export function replayHold(context: AccountContext, hold: HoldRow, event: "take" | "extend" | "settle"): void {
  const folded = context.account.row.folded_seq;
  // Extensions unfolded too: the take was the hold as it stood before them.
  const base = hold.extended_seq !== null && hold.extended_seq > folded ? hold.base : null;
  if (event === "take") holdTaken(context, base ? before(hold, base) : hold);
  else if (event === "settle") holdSettled(context, hold);
  else if (base) {
    // Every unfolded extension at once, from the hold before them to the row: sums of recorded drains.
    const receipt = { parts: hold.receipt.parts.slice(base.parts), debt: hold.receipt.debt - base.debt };
    holdExtended(context, hold, (hold.held_units - base.held_units) * hold.unit_price, receipt, hold.created_at);
  }
}

/**
 * Whether a stream's extension may be journaled: taken within the current epoch's slack (as the
 * hold itself), from credit (no debt: a post-paid hold's is), on a key without a cap period
 * (the key's period spend would need each extension's time to replay exactly).
 */
export function extendsJournaled(context: AccountContext, hold: HoldRow, micros: number, more: Receipt, now: number): boolean {
  const key = hold.key_id ? context.keys.byKeyId(hold.key_id) : undefined;
  return hold.plan === "prepaid" && more.debt === 0 && !key?.cap_period && context.holds.epochOf(hold.request_id) === context.epoch && context.withinSlack(now, micros);
}

/** The hold before its first unfolded extension: kept from the row while its last extension is unfolded, else the hold as it stands. */
export function extensionBase(context: AccountContext, hold: HoldRow): HoldBase {
  if (hold.base && hold.extended_seq !== null && hold.extended_seq > context.account.row.folded_seq) return hold.base;
  return { held_units: hold.held_units, parts: hold.receipt.parts.length, debt: hold.receipt.debt };
}

/**
 * Whether a settlement may be journaled: it gives back only what the hold took within the current
 * cohort epoch's slack (so the balance stays where changed() last placed it or below, and no
 * cohort can move), and writes nothing but the hold's row. Written with its effects, as before: a
 * failed origin's refund (the refund limit), units past the hold (charged into debt, the cap's
 * crossing, the over_hold row), a tokens meter's model usage or a cost meter's, a give-back into a
 * grant closed since (its void or expiry entry) or past the debt still owed (a refund grant).
 */
export function settlesJournaled(context: AccountContext, hold: HoldRow, s: { overHold: number; released: number; charged: number }, reason: SettleReason, now: number): boolean {
  if (reason === "origin_failed" || s.overHold > 0 || hold.usage !== null || meterByName(context.config, hold.meter)?.reportsCost) return false;
  const epoch = context.holds.epochOf(hold.request_id);
  if (epoch === null || epoch !== context.epoch || !context.quiet(now, s.charged)) return false;
  const open = (id: string) => context.grants.all.some((g) => g.id === id);
  return hold.receipt.parts.every(([id]) => open(id)) && Math.min(s.released, hold.receipt.debt) <= context.wallet.debt;
}
