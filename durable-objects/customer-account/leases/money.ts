import type { AccountContext } from "../core/context";
import { planDrain } from "../credit/grants";
import type { LeaseRow } from "./lease-store";
import type { BucketCounter } from "./protocol";

/**
 * No grant lists this meter, so a reserve drains only grants every meter may use: whatever meter
 * the lease then pays for, the credit was that meter's to spend.
 */
export const LEASE_METER = "\u0000lease";

const ref = (kind: "lease" | "lease_expired" | "lease_refund", id: string) => `${kind}_${id}`;

/**
 * Credit that may still be granted or debited directly: B − m − R in the design's terms. The
 * reserves are already out of the grants (a reserve is drained like a hold), so it is what the
 * universal grants still hold, less debt and the minimum.
 */
export function freeMicros(context: AccountContext, now: number): number {
  return context.wallet.available(LEASE_METER, now) - context.minimumMicros();
}

/** Sets `micros` more aside for a lease: drained from the grants, one `lease` row per lease. */
export function reserve(context: AccountContext, row: LeaseRow, micros: number, now: number): void {
  const receipt = planDrain(context.grants.all, LEASE_METER, micros, now);
  if (receipt.debt > 0) throw new Error(`lease ${row.id}: a reserve of ${micros} would overdraw`);
  for (const [id, part] of receipt.parts) {
    context.grants.adjust(context.grants.get(id)!, -part);
    const last = row.receipt[row.receipt.length - 1];
    if (last && last[0] === id) last[1] += part;
    else row.receipt.push([id, part]);
  }
  const plan = context.account.row.plan;
  // Counted as spent for Stripe from now on (as a hold is), and given back when it is returned.
  context.ledger.aggregate(
    { kind: "lease", amount: -micros, reference: ref("lease", row.id), reason: `credit lease ${row.id} (isolate ${row.isolate})`, now },
    context.reports.accrue(plan, LEASE_METER, -micros, 0),
  );
  row.granted += micros;
}

const key = (c: { meter: string; bucket: number }) => `${c.meter}\t${c.bucket}`;

/**
 * Applies what an isolate reports beyond what is already settled: usage rows per meter and
 * bucket, as authorize writes them, paid from the reserve. Counters are cumulative, so an older
 * or repeated report adds nothing. Returns the net micro-cents newly settled.
 */
export function settle(context: AccountContext, row: LeaseRow, counters: readonly BucketCounter[], now: number): number {
  let net = 0;
  let newRequests = 0;
  for (const c of counters) {
    const k = key(c);
    const had = row.counters[k] ?? { meter: c.meter, bucket: c.bucket, count: 0, micros: 0, refunds: 0, refundMicros: 0 };
    const d = {
      count: Math.max(0, c.count - had.count),
      micros: Math.max(0, c.micros - had.micros),
      refunds: Math.max(0, c.refunds - had.refunds),
      refundMicros: Math.max(0, c.refundMicros - had.refundMicros),
    };
    if (d.count > 0 || d.micros > 0) context.ledger.usage({ meter: c.meter, bucket: c.bucket, amount: -d.micros, count: d.count, now });
    if (d.refunds > 0 || d.refundMicros > 0) context.ledger.usage({ meter: c.meter, bucket: c.bucket, amount: d.refundMicros, count: -d.refunds, now });
    net += d.micros - d.refundMicros;
    newRequests += d.count;
    row.counters[k] = {
      meter: c.meter,
      bucket: c.bucket,
      count: had.count + d.count,
      micros: had.micros + d.micros,
      refunds: had.refunds + d.refunds,
      refundMicros: had.refundMicros + d.refundMicros,
    };
  }
  if (net !== 0) {
    // The usage rows took it from the balance; it was already out of it, in the reserve (or, once
    // expired, in what was settled as spent).
    const kind = row.status === "live" ? "lease" : "lease_expired";
    context.ledger.aggregate({ kind, amount: net, reference: ref(kind, row.id), reason: `credit lease ${row.id}: settled usage`, now });
  }
  row.spent += net;
  if (row.spent > row.granted) throw new Error(`lease ${row.id}: reported ${row.spent} of ${row.granted} granted`);
  void newRequests;
  return net;
}

/**
 * Gives `micros` of a lease's receipt back, last drained first: into each grant still open, and
 * for a grant closed meanwhile as its void or expiry (as if it had stayed in the grant).
 */
export function giveBack(context: AccountContext, row: LeaseRow, micros: number, kind: "lease" | "lease_refund", now: number): void {
  if (micros <= 0) return;
  let left = micros;
  const closed: [string, number][] = [];
  for (let i = row.receipt.length - 1; i >= 0 && left > 0; i--) {
    const part = row.receipt[i]!;
    const amount = Math.min(left, part[1]);
    left -= amount;
    part[1] -= amount;
    const open = context.grants.all.find((g) => g.id === part[0]);
    if (open) context.grants.adjust(open, amount);
    else closed.push([part[0], amount]);
  }
  row.receipt = row.receipt.filter((p) => p[1] > 0);
  const given = micros - left;
  const plan = context.account.row.plan;
  context.ledger.aggregate(
    {
      kind,
      amount: given,
      reference: ref(kind, row.id),
      reason: kind === "lease" ? `credit lease ${row.id}` : `credit lease ${row.id}: unspent part given back after it expired`,
      now,
    },
    context.reports.accrue(plan, LEASE_METER, given, 0),
  );
  for (const [id, amount] of closed) {
    const grant = context.grants.get(id)!;
    const entry = grant.closed_reason === "voided" ? "void" : "expiry";
    context.ledger.entry(
      { kind: entry, amount: -amount, reason: `${entry === "void" ? "voided" : "expired"} ${id}: the part of a lease returned after it closed`, now, grant: id },
      context.closedGrantDebit(`lease_${row.id}`)(entry, grant, amount),
    );
  }
}

/** The alarm: a lease nobody returned in time is settled as spent (its isolate can no longer spend from it). */
export function expire(context: AccountContext, row: LeaseRow, now: number): void {
  const reserve = row.granted - row.spent;
  if (reserve > 0) {
    context.ledger.aggregate({ kind: "lease", amount: reserve, reference: ref("lease", row.id), reason: `credit lease ${row.id}`, now });
    context.ledger.aggregate({
      kind: "lease_expired",
      amount: -reserve,
      reference: ref("lease_expired", row.id),
      reason: `credit lease ${row.id} expired: its reserve settled as spent`,
      now,
    });
  }
  row.status = "expired";
}
