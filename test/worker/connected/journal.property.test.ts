import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import fc from "fast-check";
import { HttpResponse, http } from "msw";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { admin, customerStub, gateway, ORIGIN, openHold, uniqueId, withKey } from "../helpers";
import { server } from "../setup";
import { connect, cron, deliverAll, settle } from "./doubles";

/*
 * What the charge journal keeps back in memory, interleaved with restarts. On one Stripe customer,
 * prepaid or post-paid: plain charges (some repeated under their request id, with and without the
 * retry flag), a capped key's charges up to and past its cap, refunds of charges, holds with their
 * extensions and settlements, Idempotency-Key requests through the gateway (retried, some refunded),
 * bursts of concurrent charges (group commit), cron runs that report to Stripe, and the object
 * evicted at any point, before or after a fold. After every step the books must match a model kept
 * apart from the gateway's code; at the end Stripe must hold every unit exactly once.
 */

const CENT = 1_000_000;
const UNIT = 100_000; // json_tokens: 0.1 cent a unit
const CAP_CENTS = 6;

type Op =
  | { kind: "charge"; capped: boolean }
  | { kind: "repeat"; pick: number; flagged: boolean }
  | { kind: "refund"; pick: number }
  | { kind: "burst"; n: number }
  | { kind: "hold"; units: number }
  | { kind: "extend"; pick: number; units: number }
  | { kind: "settle"; pick: number; units: number | null; failed: boolean }
  | { kind: "idempotent"; status: 200 | 503; retry: boolean }
  | { kind: "evict" }
  | { kind: "cron" }
  | { kind: "check" };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("charge" as const), capped: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("repeat" as const), pick: fc.nat(), flagged: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("refund" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("burst" as const), n: fc.integer({ min: 2, max: 12 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("hold" as const), units: fc.integer({ min: 1, max: 60 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("extend" as const), pick: fc.nat(), units: fc.integer({ min: 1, max: 30 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("settle" as const), pick: fc.nat(), units: fc.option(fc.integer({ min: 0, max: 90 })), failed: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("idempotent" as const), status: fc.constantFrom(200 as const, 503 as const), retry: fc.boolean() }) },
  { weight: 3, arbitrary: fc.constant({ kind: "evict" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "cron" as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: "check" as const }) },
);

interface Charge {
  requestId: string;
  capped: boolean;
  refunded: boolean;
}

interface Hold {
  requestId: string;
  open: boolean;
  held: number;
  charged: number;
}

/** What SQLite holds of the post-paid quantities not yet sent, read without the object's methods. */
function pendingQuantity(id: string, meter: string) {
  return runInDurableObject(
    customerStub(id),
    (_instance, state) => state.storage.sql.exec("SELECT COALESCE(SUM(quantity), 0) AS q FROM meter_pending WHERE meter = ?", meter).one().q as number,
  );
}

describe("the charge journal through restarts (property)", () => {
  it("every charge, refund, hold, cap and Idempotency-Key counts once, whenever the object restarts; Stripe gets every unit once", { timeout: 600_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.integer({ min: 15, max: 120 }), fc.array(op, { minLength: 4, maxLength: 16 }), async (postpaid, credit, ops) => {
        const { stripe } = connect();
        server.use(http.post(`${ORIGIN}/v1/fails/:status`, ({ params }) => HttpResponse.json({}, { status: Number(params.status) })));
        const customer = stripe.createCustomer({
          name: "Journal Property",
          email: `${uniqueId("journal")}@example.com`,
          ...(postpaid ? { metadata: { payg_plan: "postpaid" } } : { balance: -credit }),
        });
        await deliverAll(stripe);
        const id = customer.id;
        const stub = () => customerStub(id);
        const plainKey = (await admin("POST", `/customers/${id}/keys`, {})).body.key as string;
        const capped = (await stub().createKey("capped", { spendCapCents: CAP_CENTS, capPeriod: "month" }))!;
        const keyHash = { plain: await sha256Hex(plainKey), capped: await sha256Hex(capped.key) };
        await settle(id);

        const charges: Charge[] = [];
        const holds: Hold[] = [];
        // The model, in micro-cents: what was spent (charges net of refunds, holds as held or settled).
        let idempotentSpent = 0;
        let refunds = 0;
        let n = 0;
        const chargesSpent = () => charges.filter((c) => !c.refunded).length * CENT;
        const holdsSpent = () => holds.reduce((sum, h) => sum + (h.open ? h.held * UNIT : h.charged), 0);
        const spent = () => chargesSpent() + holdsSpent() + idempotentSpent;
        const available = () => (postpaid ? Number.POSITIVE_INFINITY : credit * CENT - spent());
        const cappedSpent = () => charges.filter((c) => c.capped && !c.refunded).length * CENT;

        const charge = async (cappedKey: boolean) => {
          const requestId = `jp_${n++}`;
          const canPay = available() >= CENT;
          const result = await stub().authorize({ keyHash: cappedKey ? keyHash.capped : keyHash.plain, meter: "api_requests", priceMicros: CENT, requestId });
          return { requestId, canPay, result };
        };

        const books = async () => {
          const check = (await stub().balanceCheck())!;
          expect(check.ledgerSumMicros).toBe(check.balanceMicros);
          expect(check.balanceMicros).toBe(check.grantsRemainingMicros - check.debtMicros);
          expect(check.balanceMicros, "the balance is the credit less what the model spent").toBe((postpaid ? 0 : credit * CENT) - spent());
          const cappedView = (await stub().listKeys()).find((k) => k.id === capped.id)!;
          expect(cappedView.period_spend_exact_cents).toBe(String(cappedSpent() / CENT));
          expect(cappedSpent()).toBeLessThanOrEqual(CAP_CENTS * CENT);
        };

        for (const step of ops) {
          switch (step.kind) {
            case "charge": {
              const { requestId, canPay, result } = await charge(step.capped);
              // Credit is checked before the cap; the cap stops the charge that would pass it.
              const expected = !canPay ? "insufficient_credit" : step.capped && cappedSpent() + CENT > CAP_CENTS * CENT ? "key_cap_reached" : "ok";
              expect(result.outcome).toBe(expected);
              if (result.outcome === "ok") charges.push({ requestId, capped: step.capped, refunded: false });
              break;
            }
            case "repeat": {
              // The same gateway request id again (its reply lost): the first result, never a second charge.
              const first = charges[step.pick % Math.max(1, charges.length)];
              if (!first) break;
              const result = await stub().authorize({
                keyHash: first.capped ? keyHash.capped : keyHash.plain,
                meter: "api_requests",
                priceMicros: CENT,
                requestId: first.requestId,
                ...(step.flagged ? { retry: true } : {}),
              });
              expect(result).toMatchObject({ outcome: "ok", replayed: true, chargedMicros: first.refunded ? 0 : CENT });
              break;
            }
            case "refund": {
              const target = charges[step.pick % Math.max(1, charges.length)];
              if (!target) break;
              const result = await stub().refund({ requestId: target.requestId });
              expect(result).toMatchObject(target.refunded ? { refunded: false, reason: "already_refunded" } : { refunded: true, restoredMicros: CENT });
              if (!target.refunded) refunds++;
              target.refunded = true;
              break;
            }
            case "burst": {
              // Concurrent charges on one customer share group commits; each still sees every one before it.
              const canPay = postpaid ? step.n : Math.max(0, Math.min(step.n, Math.floor(available() / CENT)));
              const results = await Promise.all(
                Array.from({ length: step.n }, () => {
                  const requestId = `jp_${n++}`;
                  return stub()
                    .authorize({ keyHash: keyHash.plain, meter: "api_requests", priceMicros: CENT, requestId })
                    .then((result) => ({ requestId, result }));
                }),
              );
              const ok = results.filter((r) => r.result.outcome === "ok");
              expect(ok).toHaveLength(canPay);
              for (const r of results) if (r.result.outcome !== "ok") expect(r.result.outcome).toBe("insufficient_credit");
              for (const r of ok) charges.push({ requestId: r.requestId, capped: false, refunded: false });
              break;
            }
            case "hold": {
              const requestId = `jh_${n++}`;
              const canHold = available() >= step.units * UNIT;
              const result = await stub().authorize({ keyHash: keyHash.plain, meter: "json_tokens", priceMicros: UNIT, requestId, hold: { units: step.units, onMissing: "hold" } });
              expect(result.outcome).toBe(canHold ? "ok" : "insufficient_credit");
              if (result.outcome === "ok") holds.push({ requestId, open: true, held: step.units, charged: 0 });
              break;
            }
            case "extend": {
              const hold = openHold(holds, step.pick);
              if (!hold) break;
              const granted = postpaid ? step.units : Math.max(0, Math.min(step.units, Math.floor(available() / UNIT)));
              const extended = await stub().extendHold({ requestId: hold.requestId, units: step.units });
              expect(extended.grantedUnits).toBe(granted);
              hold.held += granted;
              break;
            }
            case "settle": {
              const hold = openHold(holds, step.pick);
              if (!hold) break;
              const units = step.failed ? null : step.units;
              const settled = await stub().settleHold({ requestId: hold.requestId, units, reason: step.failed ? "origin_failed" : units === null ? "units_missing" : "completed" });
              hold.open = false;
              hold.charged = step.failed ? 0 : (units ?? hold.held) * UNIT;
              if (step.failed) refunds++;
              expect(settled.chargedMicros).toBe(hold.charged);
              break;
            }
            case "idempotent": {
              const send = () =>
                gateway(`/v1/fails/${step.status}`, withKey(plainKey, { method: "POST", body: "{}", headers: { "idempotency-key": `idem_${n}` } })).then(async (r) => {
                  await r.text();
                  return r;
                });
              n++;
              const canPay = available() >= CENT;
              const first = await send();
              expect(first.status).toBe(canPay ? step.status : 402);
              if (!canPay) break;
              // A 503 is given back (the key forgotten); a 200 stays charged and is replayed, never charged twice.
              if (step.status === 503) refunds++;
              else idempotentSpent += CENT;
              if (step.retry) {
                const again = await send();
                if (step.status === 200) {
                  expect(again.headers.get("idempotent-replayed")).toBe("true");
                } else {
                  // A new request: charged and given back again.
                  expect(again.status).toBe(available() >= CENT ? 503 : 402);
                  if (again.status === 503) refunds++;
                }
              }
              break;
            }
            case "evict":
              // Twice in a row the object is not running the second time: nothing to evict.
              await evictDurableObject(stub()).catch((error: Error) => expect(error.message).toMatch(/not currently running/));
              break;
            case "cron":
              await settle(id);
              await cron();
              await deliverAll(stripe);
              break;
            case "check":
              // Reading the object folds the journal first: a check is a step of its own, so most
              // evictions find charges not yet folded.
              await books();
              break;
          }
        }

        // The refund limit (20 an hour) is never reached by these runs: every refund above was given.
        expect(refunds).toBeLessThan(20);

        await books();
        await settle(id);
        await cron();
        await deliverAll(stripe);
        await settle(id);
        const check = (await stub().balanceCheck())!;
        if (postpaid) {
          // Every request charged and not refunded reaches Stripe's meter once (or is still pending).
          const requests = charges.filter((c) => !c.refunded).length + idempotentSpent / CENT;
          expect(stripe.meterUsage(id, "api_requests") + (await pendingQuantity(id, "api_requests"))).toBe(requests);
        } else {
          const reportedCents = stripe
            .balanceTransactions(id)
            .filter((txn) => String(txn.metadata?.payg_report ?? "").startsWith("payg_usage"))
            .reduce((sum, txn) => sum + txn.amount, 0);
          expect(reportedCents * CENT + check.pendingUsageMicros, "usage reported to Stripe and pending = what was spent").toBe(spent());
          expect(check.balanceMicros, "the edge's balance = Stripe's").toBe(-stripe.balanceOf(id) * CENT - check.pendingUsageMicros || 0);
        }
      }),
      { numRuns: 40 },
    );
  });
});
