/**
 * Credit leases' protocol (docs/scaling.md): simulated isolates, each a real LeaseHolder (src/leases/holder.ts),
 * against one real CustomerAccount object over RPC (leaseSync). The network between them loses,
 * duplicates, reorders and delays messages; isolates die holding leases; their clocks run slow;
 * keys are revoked, credit granted and deducted at any point. After every step: what the isolates
 * served never exceeds what left the balance (overspend 0), no debt, ledger sum = balance, and no
 * revoked key is served from a lease past the bound. After quiescence every reserve is settled.
 */
import { runInDurableObject } from "cloudflare:test";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { LeaseSyncReply } from "../../../durable-objects/customer-account/contract";
import { type Attempt, LeaseHolder } from "../../../src/leases/holder";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { admin, customerStub, uniqueId } from "../helpers";

const H = 1_000; // heartbeat_ms in vitest.config.ts
const TTL = 10_000;
const PRICE = 10_000; // 1 cent, the default meter's price
const MAX_DELAY = 300; // no message is in flight longer than this (then delivered or lost)
const SLOWEST_CLOCK = 0.95; // an isolate's clock runs at least this fast (Workers' clocks only lag)

type Step =
  | { kind: "request"; isolate: number; key: number; fails: boolean }
  | { kind: "deliver"; pick: number; fate: "ok" | "lose" | "duplicate" }
  | { kind: "advance"; ms: number }
  | { kind: "crash"; isolate: number }
  | { kind: "idle"; isolate: number }
  | { kind: "revoke"; key: number }
  | { kind: "grant"; cents: number }
  | { kind: "deduct"; cents: number }
  | { kind: "topup"; cents: number }
  | { kind: "refund"; pick: number; cents: number }
  | { kind: "dispute"; pick: number }
  | { kind: "won" };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 14,
    arbitrary: fc.record({ kind: fc.constant("request" as const), isolate: fc.nat(2), key: fc.nat(1), fails: fc.integer({ min: 0, max: 9 }).map((n) => n === 0) }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant("deliver" as const),
      pick: fc.nat(),
      fate: fc.constantFrom("ok" as const, "ok" as const, "ok" as const, "lose" as const, "duplicate" as const),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 1, max: 1_500 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("crash" as const), isolate: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("idle" as const), isolate: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("revoke" as const), key: fc.nat(1) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("grant" as const), cents: fc.integer({ min: 1, max: 300 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("deduct" as const), cents: fc.integer({ min: 1, max: 300 }) }) },
  // A paid Checkout top-up, a refund of one (clawed back from what remains) and a dispute of one (frozen, every lease recalled).
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("topup" as const), cents: fc.integer({ min: 1, max: 300 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("refund" as const), pick: fc.nat(), cents: fc.integer({ min: 1, max: 300 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("dispute" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("won" as const) }) },
);

/** A Stripe event as the webhook route hands it to the object (shapes: Stripe's API reference). */
const stripeEvent = (type: string, object: object) => ({ id: `evt_${uniqueId()}`, object: "event", type, created: Math.floor(Date.now() / 1000), data: { object } }) as never;

interface Isolate {
  holder: LeaseHolder;
  alive: boolean;
  /** Its clock: starts at the object's time, runs at `rate` of it. */
  start: number;
  rate: number;
}

interface InFlight {
  to: "object" | "isolate";
  isolate: Isolate;
  attempt: Attempt;
  reply?: LeaseSyncReply;
  sentAt: number;
}

/** Across the runs: the leases really paid, and crashed isolates' leases really expired. */
const seen = { leaseSpends: 0, expired: 0, disputes: 0, disputesWithLease: 0, refunds: 0 };

async function run(steps: Step[], creditCents: number, rates: number[]) {
  const id = uniqueId("cus_lease");
  expect((await admin("PUT", `/customers/${id}`, { email: `${id}@example.com`, metadata: { payg_leases: "on" } })).status).toBe(201);
  const keys: { id: string; hash: string; revokedAt: number | null }[] = [];
  for (let i = 0; i < 2; i++) {
    const key = await admin("POST", `/customers/${id}/keys`, {});
    keys.push({ id: key.body.id as string, hash: await sha256Hex(key.body.key as string), revokedAt: null as number | null });
  }
  const stub = customerStub(id);
  let t = Date.now();
  let credit = creditCents * 1_000_000; // every micro-cent ever given, less what was taken away
  let served = 0; // what the isolates served: lease spends (net of refunds) and direct debits
  let counter = 0;
  /** Paid top-ups (payment intent, cents) and when the first open dispute began (leases are recalled while one is open). */
  const payments: { pi: string; cents: number }[] = [];
  const topUp = async (cents: number) => {
    const n = payments.length;
    const session = {
      id: `cs_${n}`,
      object: "checkout.session",
      mode: "payment",
      payment_status: "paid",
      currency: "usd",
      amount_total: cents,
      total_details: { amount_tax: 0 },
      payment_intent: `pi_${n}`,
      invoice: null,
      metadata: { payg_credit_cents: String(cents) },
    };
    expect((await stub.applyStripeEvent(id, stripeEvent("checkout.session.completed", session))).status).toBe("applied");
    payments.push({ pi: `pi_${n}`, cents });
  };
  // The starting credit is a paid Checkout top-up, so a dispute or a refund can reach it at any step.
  if (creditCents > 0) await topUp(creditCents);
  let disputedAt: number | null = null;
  let refundDebt = 0;
  const open = new Map<string, { id: string; pi: string; cents: number }>();
  const disputeOf = (payment: { pi: string; cents: number }, status: string) => ({
    id: `dp_${payment.pi}`,
    object: "dispute",
    payment_intent: payment.pi,
    charge: `ch_${payment.pi}`,
    amount: payment.cents,
    currency: "usd",
    status,
    balance_transactions: [],
  });
  const newIsolate = (i: number): Isolate => ({
    holder: new LeaseHolder({
      isolate: `iso${i}-${counter++}`,
      newId: () => `lse_${counter++}_${Math.random().toString(36).slice(2)}`,
      maxLeaseMicros: 200 * 1_000_000,
      idleMs: 30_000,
    }),
    alive: true,
    start: t,
    rate: rates[i] ?? 1,
  });
  const isolates = [0, 1, 2].map(newIsolate);
  const clock = (iso: Isolate) => iso.start + Math.floor((t - iso.start) * iso.rate);
  const net: InFlight[] = [];
  let requests = 0;
  const paid = new Set<string>();
  const send = (iso: Isolate, attempt: Attempt) => net.push({ to: "object", isolate: iso, attempt, sentAt: t });

  const deliver = async (m: InFlight, fate: "ok" | "lose" | "duplicate") => {
    if (m.to === "object") {
      if (fate === "lose") return lost(m);
      const reply = await stub.leaseSync({ ...m.attempt.message, now: t });
      // A duplicated direct request is one request: the object replays its first result.
      const direct = m.attempt.message.direct;
      if (reply.decision?.outcome === "ok" && direct && !paid.has(direct.requestId)) {
        paid.add(direct.requestId);
        served += reply.decision.chargedMicros;
      }
      net.push({ ...m, to: "isolate", reply, sentAt: t });
      if (fate === "duplicate") net.push({ ...m, sentAt: t });
    } else {
      if (!m.isolate.alive) return;
      if (fate === "lose") return lost(m);
      m.isolate.holder.onReply(m.attempt, m.reply!, clock(m.isolate));
      background(m.isolate);
    }
  };
  // A lost message is a failed RPC for the isolate that sent it.
  const lost = (m: InFlight) => {
    if (m.isolate.alive) m.isolate.holder.onLost(m.attempt);
  };
  const background = (iso: Isolate) => {
    const now = clock(iso);
    if (iso.alive && iso.holder.wantsSync(now)) send(iso, iso.holder.message(now, keys[0]!.hash, null));
  };
  const check = async () => {
    const books = (await stub.balanceCheck())!;
    expect(books.ledgerSumMicros).toBe(books.balanceMicros);
    // Debt only from a refund of credit already spent (the product's rule); lease spending never makes any.
    expect(books.debtMicros).toBeLessThanOrEqual(refundDebt);
    expect(books.balanceMicros).toBeGreaterThanOrEqual(-refundDebt);
    // Overspend 0: everything served left the balance (in usage, a reserve, or an expired reserve).
    expect(served).toBeLessThanOrEqual(credit - books.balanceMicros);
    return books;
  };

  for (const s of steps) {
    if (s.kind === "request") {
      const iso = isolates[s.isolate]!;
      const key = keys[s.key]!;
      const now = clock(iso);
      const bucket = Math.floor(t / 3_600_000) * 3_600_000;
      const spend = iso.holder.spend(key.hash, "api_requests", bucket, PRICE, now);
      if (spend) {
        // The bound: a revoked key is never served from a lease 2·H (by the slowest clock) after its revocation.
        if (key.revokedAt !== null) expect(t - key.revokedAt).toBeLessThan((2 * H) / SLOWEST_CLOCK + 2 * MAX_DELAY);
        // The same bound for a dispute freeze: an open dispute recalls every lease.
        if (disputedAt !== null) expect(t - disputedAt).toBeLessThan((2 * H) / SLOWEST_CLOCK + 2 * MAX_DELAY);
        served += PRICE;
        seen.leaseSpends++;
        if (s.fails && iso.holder.refund(spend)) served -= PRICE;
        background(iso);
      } else {
        send(iso, iso.holder.message(now, key.hash, { meter: "api_requests", priceMicros: PRICE, requestId: `req_${requests++}` }));
      }
    } else if (s.kind === "deliver") {
      if (net.length) await deliver(net.splice(s.pick % net.length, 1)[0]!, s.fate);
    } else if (s.kind === "advance") {
      // Nothing stays in flight longer than MAX_DELAY: what would is delivered (in order) first.
      const until = t + s.ms;
      while (t < until) {
        t = Math.min(until, t + 100);
        for (const m of net.filter((m) => t - m.sentAt >= MAX_DELAY)) {
          net.splice(net.indexOf(m), 1);
          await deliver(m, "ok");
        }
        for (const iso of isolates) if (iso.alive && iso.holder.idle(clock(iso))) background(iso);
      }
    } else if (s.kind === "crash") {
      isolates[s.isolate]!.alive = false;
      isolates[s.isolate] = newIsolate(s.isolate);
    } else if (s.kind === "idle") {
      const iso = isolates[s.isolate]!;
      iso.holder.lastUsedAt = -Infinity;
      if (iso.holder.idle(clock(iso))) background(iso);
    } else if (s.kind === "revoke") {
      const key = keys[s.key]!;
      if (key.revokedAt === null && (await stub.revokeKey(key.id))) key.revokedAt = t;
    } else if (s.kind === "grant") {
      await stub.grant({ customerId: id, amountCents: s.cents, reason: "top-up" } as never);
      credit += s.cents * 1_000_000;
    } else if (s.kind === "deduct") {
      const before = (await stub.balanceCheck())!.balanceMicros;
      await stub.deduct({ customerId: id, amountCents: Math.min(s.cents, Math.floor(before / 1_000_000)), reason: "taken back" } as never);
      credit -= before - (await stub.balanceCheck())!.balanceMicros;
    } else if (s.kind === "topup") {
      await topUp(s.cents);
      credit += s.cents * 1_000_000;
    } else if (s.kind === "refund" && payments.length) {
      const payment = payments[s.pick % payments.length]!;
      const amount = Math.min(s.cents, payment.cents);
      const refunds = {
        charge: `ch_${payment.pi}`,
        payment_intent: payment.pi,
        payment_method: null,
        currency: "usd",
        refunds: [{ id: `re_${payment.pi}`, amount, status: "succeeded", created: Math.floor(t / 1000) }],
      };
      const before = (await stub.balanceCheck())!;
      await stub.applyStripeEvent(id, stripeEvent("charge.refunded", { id: `ch_${payment.pi}`, object: "charge" }), refunds as never);
      const after = (await stub.balanceCheck())!;
      const taken = before.balanceMicros - after.balanceMicros;
      if (taken > 0) seen.refunds++;
      refundDebt += Math.max(0, after.debtMicros - before.debtMicros);
      credit -= taken;
    } else if (s.kind === "dispute" && payments.length) {
      const payment = payments[s.pick % payments.length]!;
      if (!open.has(payment.pi) && (await stub.applyStripeEvent(id, stripeEvent("charge.dispute.created", disputeOf(payment, "needs_response")))).status === "applied") {
        open.set(payment.pi, { id: `dp_${payment.pi}`, ...payment });
        disputedAt ??= t;
        seen.disputes++;
        if (isolates.some((i) => i.alive && i.holder.current)) seen.disputesWithLease++;
      }
    } else if (s.kind === "won" && open.size) {
      // Every open dispute won: nothing was taken, the freeze lifts, leases may be granted again.
      for (const payment of open.values()) await stub.applyStripeEvent(id, stripeEvent("charge.dispute.closed", disputeOf(payment, "won")));
      open.clear();
      disputedAt = null;
    }
    await check();
  }

  // Quiescence: every message delivered, every live isolate idle and returned, past every expiry.
  for (let round = 0; round < 10 && (net.length || isolates.some((i) => i.alive && i.holder.idle(Number.POSITIVE_INFINITY))); round++) {
    for (const iso of isolates) {
      iso.holder.lastUsedAt = -Infinity;
      if (iso.alive && iso.holder.idle(clock(iso))) background(iso);
    }
    while (net.length) await deliver(net.shift()!, "ok");
  }
  t += TTL * 2 + 1;
  await stub.leaseSync({ keyHash: keys[0]!.hash, isolate: "quiesce", lease: null, wantMicros: 0, priceMicros: PRICE, direct: null, rttMs: 0, now: t });
  const view = (await stub.leases())!;
  expect(view.leases).toEqual([]);
  expect(view.reserved_micros).toBe(0);
  const books = await check();
  const sums = await runInDurableObject(stub, (_instance, state) =>
    Object.fromEntries(
      state.storage.sql
        .exec("SELECT kind, SUM(amount) AS total FROM ledger WHERE kind LIKE 'lease%' GROUP BY kind")
        .toArray()
        .map((r) => [r.kind as string, r.total as number]),
    ),
  );
  if ((sums.lease_expired ?? 0) < 0) seen.expired++;
  // No reserve left.
  expect(sums.lease ?? 0).toBe(0);
  // Charged beyond what was served: only the unspent part of crashed isolates' expired reserves.
  const overcharge = credit - books.balanceMicros - served;
  expect(overcharge).toBeGreaterThanOrEqual(0);
  expect(overcharge, JSON.stringify({ sums, credit, served, balance: books.balanceMicros })).toBeLessThanOrEqual(0 - (sums.lease_expired ?? 0) - (sums.lease_refund ?? 0));
}

describe("credit leases: simulated isolates against one real object", () => {
  it("never overspend, keep ledger = balance, obey revocation within 2·H, and settle every reserve", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 5, maxLength: 80 }),
        fc.integer({ min: 0, max: 400 }),
        fc.array(fc.double({ min: SLOWEST_CLOCK, max: 1, noNaN: true }), { minLength: 3, maxLength: 3 }),
        (steps, credit, rates) => run(steps, credit, rates),
      ),
      { numRuns: 200 },
    );
    expect(seen.leaseSpends, JSON.stringify(seen)).toBeGreaterThan(50);
    expect(seen.expired).toBeGreaterThan(0);
    expect(seen.disputesWithLease, JSON.stringify(seen)).toBeGreaterThan(0);
    expect(seen.refunds).toBeGreaterThan(0);
  }, 600_000);
});
