import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import fc from "fast-check";
import type Stripe from "stripe";
import { describe, expect, it } from "vitest";
import type { Directory } from "../../../durable-objects/directory/index";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { parseConfig } from "../../../src/lib/config";
import { issueChallenge } from "../../../src/payments/mpp/challenge";
import { serializeChallenge } from "../../../src/payments/mpp/wire";
import { cryptoHash } from "../../doubles/stripe/crypto-payment";
import type { FaultKind } from "../../doubles/stripe-double";
import { admin, customerStub, gateway, withKey } from "../helpers";
import { connect, cron, deliver, settle } from "./doubles";
import { type DirectFate, LeaseIsolates, leaseSeen, type NetFate } from "./lease-isolates";
import { challengeOf, credentialFor, MPP_BINDINGS, mppCall } from "./mpp-helpers";
import { agent, facilitator, offered, recordingsOf, recordNow, signedFor } from "./x402-helpers";

type Op =
  | { kind: "request"; search: boolean }
  | { kind: "dashboard"; amount: number }
  | { kind: "deliver"; pick: number; duplicate: boolean }
  | { kind: "cron"; fault: FaultKind | null; target: number; advance: number }
  | { kind: "topup"; failingRefunds: boolean }
  | { kind: "refund"; pick: number; cents: number }
  | { kind: "failRefund"; pick: number }
  | { kind: "dispute"; pick: number; inquiry: boolean; cents: number }
  | { kind: "moveDispute"; pick: number; next: number }
  | { kind: "x402"; fault: "lost_after_commit" | "timeout" | null; replay: boolean; recordFault: FaultKind | null }
  | { kind: "mpp"; fault: FaultKind | null; replay: boolean; declined: boolean }
  | { kind: "batching"; on: boolean }
  // Credit leases (docs/scaling.md): a request in a simulated isolate, a sync in flight delivered, a heartbeat, a death, a return.
  | { kind: "leased"; isolate: number; count: number; search: boolean; fate: DirectFate; fails: boolean; fast: boolean }
  | { kind: "leaseNet"; pick: number; fate: NetFate }
  | { kind: "heartbeat"; ms: number }
  | { kind: "die"; isolate: number }
  | { kind: "giveBack"; isolate: number };

/** Where a dispute may go next (as the double allows: refunds.ts). */
const NEXT: Record<string, Stripe.Dispute.Status[]> = {
  warning_needs_response: ["warning_under_review", "warning_closed", "needs_response"],
  warning_under_review: ["warning_closed", "needs_response"],
  needs_response: ["under_review", "won", "lost", "prevented"],
  under_review: ["won", "lost"],
  lost: ["appeal_needs_response"],
  appeal_needs_response: ["appeal_under_review", "won", "lost"],
  appeal_under_review: ["won", "lost"],
};

/** Every Stripe call the gateway makes: a fault may hit any of them (or all at once). */
const TARGETS: { method?: string; path: RegExp }[] = [
  { method: "POST", path: /balance_transactions$/ },
  { method: "GET", path: /balance_transactions$/ },
  { method: "GET", path: /^\/v1\/customers\/[^/]+$/ },
  { path: /./ },
];

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("request" as const), search: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("dashboard" as const), amount: fc.integer({ min: -40, max: 15 }).filter((n) => n !== 0) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("deliver" as const), pick: fc.nat(), duplicate: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("topup" as const), failingRefunds: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("refund" as const), pick: fc.nat(), cents: fc.integer({ min: 1, max: 500 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("failRefund" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("dispute" as const), pick: fc.nat(), inquiry: fc.boolean(), cents: fc.integer({ min: 1, max: 500 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("moveDispute" as const), pick: fc.nat(), next: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("batching" as const), on: fc.boolean() }) },
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant("leased" as const),
      // 0 and 1: the simulated isolates; 2: the worker's own.
      isolate: fc.nat(2),
      count: fc.integer({ min: 1, max: 10 }),
      // Mostly the sub-cent meter: the runs' few cents then pay for many requests.
      search: fc.integer({ min: 0, max: 3 }).map((n) => n > 0),
      fate: fc.constantFrom<DirectFate>("ok", "ok", "ok", "lost", "lost_after_commit"),
      fails: fc.integer({ min: 0, max: 7 }).map((n) => n === 0),
      fast: fc.boolean(),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("leaseNet" as const), pick: fc.nat(), fate: fc.constantFrom<NetFate>("ok", "ok", "lose", "duplicate") }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("heartbeat" as const),
      // Within the heartbeat, or past the TTL and grace (an isolate cut off: its lease expires at the object first, its report comes late).
      ms: fc.oneof(fc.integer({ min: 0, max: 2_500 }), fc.integer({ min: 11_001, max: 15_000 })),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("die" as const), isolate: fc.nat(1) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("giveBack" as const), isolate: fc.nat(1) }) },
  // An agent paying a 402 over x402 (a facilitator whose settle answer may be lost, or may time out), or replaying its last payment.
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("x402" as const),
      fault: fc.constantFrom<"lost_after_commit" | "timeout" | null>(null, "lost_after_commit", "timeout"),
      replay: fc.boolean(),
      // What Stripe does to its recording as a crypto PaymentIntent (record_in_stripe).
      recordFault: fc.constantFrom<FaultKind | null>(null, null, "500", "500_after_commit", "drop_after_commit", "429"),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("mpp" as const),
      fault: fc.constantFrom<FaultKind | null>(null, null, "drop_after_commit", "500_after_commit", "500_retryable", "429"),
      replay: fc.boolean(),
      declined: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("cron" as const),
      fault: fc.constantFrom<FaultKind | null>(null, "500", "500_after_commit", "drop_after_commit", "429", "timeout"),
      target: fc.nat({ max: TARGETS.length - 1 }),
      advance: fc.integer({ min: 0, max: 7_200_000 }),
    }),
  },
);

/**
 * Report batching on or off in the directory (one shard here), as the shard decides it when the
 * customers due outnumber the Stripe budget: on until `until`; off at 1 (the next claim then
 * releases the usage held back). Test files run one at a time, so no other test sees it.
 */
async function setBatching(until: number) {
  const ns = env.DIRECTORY as DurableObjectNamespace<Directory>;
  await runInDurableObject(ns.get(ns.idFromName("global")), (_i, state) => void state.storage.sql.exec("UPDATE shard_state SET batching_until = ?", until));
}

/** One request through the gateway: the micro-cents it was charged. */
async function viaGateway(key: string, search: boolean, leased: boolean): Promise<number> {
  const response = await gateway(search ? "/v1/search/q" : "/v1/x", withKey(key));
  if (response.status !== 200) {
    expect(response.status).toBe(402);
    return 0;
  }
  // No request passes without credit: what is left after it is never below the floor.
  expect(Number(response.headers.get("x-payg-balance-cents"))).toBeGreaterThanOrEqual(0);
  // The object names the grant that paid: a request without one was paid from the worker's lease.
  if (!response.headers.has("x-payg-grant")) leaseSeen[leased ? "gatewayLeasePaid" : "unleasedWithoutGrant"]++;
  return search ? 50_000 : 1_000_000;
}

/** Per run: batching left on through the recovery (a day then passes), and credit leases on (`payg_leases: on` in Stripe's metadata). */
const setUp = fc.tuple(fc.boolean(), fc.boolean());

describe("Stripe and the edge agree to the cent (property)", () => {
  it("for any interleaving of requests, Dashboard changes, top-ups (Checkout, x402 recorded in Stripe, and MPP), refunds (some failing later), disputes in every status, duplicated and reordered webhooks, faulty cron runs and report batching, with credit leases on in about half the runs", {
    timeout: 240_000,
  }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 30 }), fc.integer({ min: 0, max: 30 }), setUp, async (ops, startCredit, [recoverBatched, leased]) => {
        // Each run starts with batching off, whatever the run before left.
        await setBatching(1);
        const { stripe } = connect();
        const x402 = facilitator({ recordInStripe: true });
        const payer = agent(x402.double);
        let lastPayment: string | null = null;
        let lastCredential: string | null = null;
        const mppConfig = parseConfig({ ...env, ...MPP_BINDINGS } as never);
        const customer = stripe.createCustomer({ name: "Prop Erty", email: "p@example.com", balance: -startCredit, metadata: leased ? { payg_leases: "on" } : {} });
        const id = customer.id;
        const queue: Stripe.Event[] = [...stripe.takeEvents()];
        const delivered: Stripe.Event[] = [];
        for (const event of queue.splice(0)) expect((await deliver(stripe, event)).status).toBe(200);
        const key = (await admin("POST", `/customers/${id}/keys`, {})).body.key as string;
        let consumedMicros = 0;
        let t = Date.now();
        // Two simulated isolates on the test's clock; the worker's own isolate (the request op) holds leases too.
        const isolates = new LeaseIsolates(id, await sha256Hex(key), () => t);
        if (leased) leaseSeen.leasedRuns++;
        let batching = false;
        const payments: string[] = [];
        let checkouts = 0;
        const refunds: string[] = [];
        const disputes: string[] = [];

        for (const step of ops) {
          if (step.kind === "request") {
            consumedMicros += await viaGateway(key, step.search, leased);
          } else if (step.kind === "leased" && step.isolate === 2) {
            // A burst in the worker's own isolate, through the gateway (its lease, src/leases/gateway.ts).
            for (let n = 0; n < step.count; n++) consumedMicros += await viaGateway(key, step.search, leased);
          } else if (step.kind === "leased") {
            // Requests 10 ms apart in one isolate (a lease pays from the second on, sized by their rate): the first's direct sync meets `fate`,
            // the last fails at the origin when `fails`; on a fast network the syncs they start arrive (in order) before the next request.
            const meter = step.search ? { name: "search", priceMicros: 50_000 } : { name: "api_requests", priceMicros: 1_000_000 };
            for (let n = 0; n < step.count; n++, t += 10) {
              consumedMicros += await isolates.request(step.isolate, meter, n === 0 ? step.fate : "ok", step.fails && n === step.count - 1);
              if (step.fast) await isolates.flush();
            }
          } else if (step.kind === "leaseNet") {
            await isolates.deliver(step.pick, step.fate);
          } else if (step.kind === "heartbeat") {
            t += step.ms;
            isolates.heartbeat();
          } else if (step.kind === "die") {
            isolates.die(step.isolate);
          } else if (step.kind === "giveBack") {
            isolates.giveBack(step.isolate);
          } else if (step.kind === "x402") {
            const signature: string = step.replay && lastPayment ? lastPayment : await signedFor(payer.client, offered(id, 500));
            lastPayment = signature;
            if (step.fault) x402.double.inject("/settle", step.fault);
            const response = await x402.call(key, "/v1/x", { headers: { "payment-signature": signature } });
            if (response.status === 200) consumedMicros += 1_000_000;
            else expect([402, 429]).toContain(response.status);
            x402.double.clearFaults();
            // Its recording, through Stripe's faults; a recorded PaymentIntent may then be refunded like any top-up's payment.
            if (step.recordFault) stripe.inject({ match: { method: "POST", path: "/v1/payment_intents" }, kind: step.recordFault });
            await settle(id);
            stripe.clearFaults();
            for (const pi of stripe.paymentIntentsOf(id)) if (pi.metadata.payg_x402_payment && !payments.includes(pi.id)) payments.push(pi.id);
          } else if (step.kind === "mpp") {
            // A Payment credential for a pack (a fresh challenge, or the last one again), charged through the Stripe double's faults.
            if (!(step.replay && lastCredential)) {
              const challenge = await issueChallenge(mppConfig, 500, id, "pack");
              const spt = stripe.grantSharedPaymentToken({ maxAmount: 500, paymentMethod: step.declined ? "pm_card_chargeCustomerFail" : "pm_card_visa" }).id;
              lastCredential = credentialFor(challengeOf(new Response(null, { headers: { "www-authenticate": serializeChallenge(challenge) } })), spt);
            }
            if (step.fault) stripe.inject({ match: { method: "POST", path: "/v1/payment_intents" }, kind: step.fault, times: 3 });
            const response = await mppCall()(key, { headers: { "payment-authorization": lastCredential! } });
            stripe.clearFaults();
            if (response.status === 200) consumedMicros += 1_000_000;
            else expect([402, 429, 502]).toContain(response.status);
            for (const pi of stripe.paymentIntentsOf(id)) if (pi.status === "succeeded" && pi.metadata.payg_mpp_challenge && !payments.includes(pi.id)) payments.push(pi.id);
          } else if (step.kind === "dashboard") {
            stripe.adjustBalance(id, step.amount);
          } else if (step.kind === "topup") {
            const response = await gateway("/billing/checkout", withKey(key, { method: "POST", body: JSON.stringify({ amount_cents: 500 }) }));
            if (response.status !== 201) continue;
            const session = stripe.completeCheckout(((await response.json()) as { id: string }).id, { paymentMethod: step.failingRefunds ? "pm_card_refundFail" : "pm_card_visa" });
            payments.push(session.payment_intent as string);
            checkouts++;
          } else if (step.kind === "refund") {
            const pi = payments[step.pick % Math.max(1, payments.length)];
            const charge = pi ? stripe.getCharge(stripe.getPaymentIntent(pi)!.latest_charge as string)! : undefined;
            if (!charge || charge.disputed || charge.amount_refunded >= charge.amount) continue;
            refunds.push(stripe.refundCharge(pi!, Math.min(step.cents, charge.amount - charge.amount_refunded)).refund.id);
          } else if (step.kind === "failRefund") {
            const refund = refunds[step.pick % Math.max(1, refunds.length)];
            if (!refund) continue;
            try {
              stripe.failRefund(refund);
            } catch {
              // Not a failing card's refund, or failed already.
            }
          } else if (step.kind === "dispute") {
            const pi = payments[step.pick % Math.max(1, payments.length)];
            const charge = pi ? stripe.getCharge(stripe.getPaymentIntent(pi)!.latest_charge as string)! : undefined;
            // Stablecoin payments have no chargebacks: a recorded x402 payment is never disputed.
            if (!charge || charge.disputed || charge.amount_refunded > 0 || charge.payment_method_details?.type === "crypto") continue;
            disputes.push(stripe.createDispute(pi!, step.cents, { inquiry: step.inquiry }).id);
          } else if (step.kind === "moveDispute") {
            const dispute = disputes[step.pick % Math.max(1, disputes.length)];
            const next = dispute ? NEXT[stripe.getDispute(dispute)!.status] : undefined;
            if (next?.length) stripe.moveDispute(dispute!, next[step.next % next.length]!);
          } else if (step.kind === "batching") {
            batching = step.on;
            await setBatching(step.on ? t + 30 * 86_400_000 : 1);
          } else if (step.kind === "deliver") {
            queue.push(...stripe.takeEvents());
            const pool = step.duplicate && delivered.length ? delivered : queue;
            if (!pool.length) continue;
            const [event] = pool === queue ? queue.splice(step.pick % queue.length, 1) : [pool[step.pick % pool.length]!];
            const result = await deliver(stripe, event!);
            if (result.status === 200) delivered.push(event!);
            else queue.push(event!); // not applied: Stripe redelivers it later
          } else {
            await settle(id);
            if (step.fault) stripe.inject({ match: TARGETS[step.target]!, kind: step.fault, times: 3 });
            t += step.advance;
            await cron(t);
            stripe.clearFaults();
          }
        }

        // Quiescence: every lease returned (or, for a dead isolate, expired and settled as spent: charged in full).
        const quiet = await isolates.quiesce(key, (ms) => (t += ms));
        consumedMicros += quiet.consumed;
        // Recovery: every event delivered (late, in reverse, some twice), cron runs until settled.
        // Batching ends, or stays on and max_report_delay_seconds (a day) passes.
        if (batching && !recoverBatched) await setBatching(1);
        queue.push(...stripe.takeEvents());
        for (const event of [...queue.reverse(), ...delivered.slice(0, 3)]) expect((await deliver(stripe, event)).status).toBe(200);
        for (let i = 0; i < 3; i++) {
          await recordNow(id);
          await settle(id);
          t += batching && recoverBatched && i === 0 ? 86_400_000 : 3_600_000;
          await cron(t);
          for (const event of stripe.takeEvents()) expect((await deliver(stripe, event)).status).toBe(200);
        }

        const check = (await customerStub(id).balanceCheck())!;
        if (process.env.DEBUG_PROP) {
          console.log(
            JSON.stringify(
              {
                consumedMicros,
                check,
                txns: stripe.balanceTransactions(id).map((x) => [x.amount, x.metadata?.payg_report, x.description]),
                reports: (await admin("GET", `/customers/${id}`)).body.stripe.recent_reports,
              },
              null,
              1,
            ),
          );
        }
        const reportedCents = stripe
          .balanceTransactions(id)
          .filter((txn) => String(txn.metadata?.payg_report ?? "").startsWith("payg_usage"))
          .reduce((sum, txn) => sum + txn.amount, 0);
        expect(reportedCents * 1_000_000 + check.pendingUsageMicros, "usage reported to Stripe and pending = what was served").toBe(consumedMicros + quiet.unserved);
        expect(Math.abs(check.pendingUsageMicros)).toBeLessThan(1_000_000);
        expect(check.balanceMicros, "the edge's balance = Stripe's").toBe(-stripe.balanceOf(id) * 1_000_000 - check.pendingUsageMicros || 0);
        expect(check.ledgerSumMicros).toBe(check.balanceMicros);
        // Each settled transfer is one x402 grant of its pack, however often it was presented or its answer lost.
        const x402Grants = ((await admin("GET", `/customers/${id}/grants`)).body.grants as { source: string; payment_intent: string | null }[]).filter((g) => g.source === "x402");
        expect(x402Grants).toHaveLength(x402.double.transfers.length);
        // And each reached Stripe's balance once, as a Checkout top-up does (not healed by a reconcile).
        const x402Credits = stripe.balanceTransactions(id).filter((txn) => String(txn.metadata?.payg_report ?? "").includes("_x402_"));
        expect(x402Credits.map((txn) => txn.amount)).toEqual(x402.double.transfers.map(() => -500));
        // Each credited payment with a transaction hash is recorded once as a crypto PaymentIntent keyed by it, linked to its grant; none without a hash.
        const recordings = await recordingsOf(id);
        const crypto = stripe.paymentIntentsOf(id).filter((pi) => pi.metadata.payg_x402_payment);
        expect(recordings.filter((r) => r.transaction_id === null).every((r) => r.stripe_status === "no_transaction")).toBe(true);
        const hashed = recordings.filter((r) => r.transaction_id !== null);
        expect(hashed.map((r) => r.stripe_status)).toEqual(hashed.map(() => "recorded"));
        expect(crypto.map((pi) => pi.id).sort()).toEqual(hashed.map((r) => r.stripe_payment_intent).sort());
        expect(crypto.map((pi) => cryptoHash(pi)).sort()).toEqual(hashed.map((r) => r.transaction_id).sort());
        expect(
          x402Grants
            .filter((g) => g.payment_intent !== null)
            .map((g) => g.payment_intent)
            .sort(),
        ).toEqual(crypto.map((pi) => pi.id).sort());
        // Each PaymentIntent that spent a Shared Payment Token is one mpp grant and one Stripe credit, whatever answer was lost.
        const charged = stripe.paymentIntentsOf(id).filter((pi) => pi.metadata.payg_mpp_challenge && pi.status === "succeeded");
        const mppGrants = ((await admin("GET", `/customers/${id}/grants`)).body.grants as { source: string; payment_intent: string | null }[]).filter((g) => g.source === "mpp");
        expect(mppGrants.map((g) => g.payment_intent).sort()).toEqual(charged.map((pi) => pi.id).sort());
        const mppCredits = stripe.balanceTransactions(id).filter((txn) => String(txn.metadata?.payg_report ?? "").includes("_mpp_"));
        expect(mppCredits.map((txn) => txn.amount)).toEqual(charged.map(() => -500));
        // And no top-up reached Stripe's balance twice: one credit per Checkout session, settled transfer and MPP charge, whatever was recorded beside it.
        const topUps = stripe.balanceTransactions(id).filter((txn) => txn.description === "Credit top-up");
        expect(topUps).toHaveLength(checkouts + x402.double.transfers.length + charged.length);
      }),
      {
        numRuns: 20,
        endOnFailure: true,
        ...(process.env.PROP_SEED ? { seed: Number(process.env.PROP_SEED), path: process.env.PROP_PATH } : {}),
        interruptAfterTimeLimit: 100_000,
        markInterruptAsFailure: true,
      },
    );
    await setBatching(1);
    // The leased half really leased: requests paid with no round trip, in the simulated isolates and the worker's own.
    expect(leaseSeen.leasedRuns, JSON.stringify(leaseSeen)).toBeGreaterThanOrEqual(3);
    // Typically 4 to 9 per leased run (most runs hold only a few cents); at least 2, and some in each kind of isolate.
    expect(leaseSeen.leasePaid + leaseSeen.gatewayLeasePaid, JSON.stringify(leaseSeen)).toBeGreaterThanOrEqual(2 * leaseSeen.leasedRuns);
    expect(leaseSeen.leasePaid, JSON.stringify(leaseSeen)).toBeGreaterThan(0);
    expect(leaseSeen.gatewayLeasePaid, JSON.stringify(leaseSeen)).toBeGreaterThan(0);
    // And that count means what it says: without leases, every request names the grant that paid.
    expect(leaseSeen.unleasedWithoutGrant).toBe(0);
    // The counts, with --silent=false.
    console.log(JSON.stringify(leaseSeen));
  });
});
