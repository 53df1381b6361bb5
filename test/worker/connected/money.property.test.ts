import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { HttpResponse, http } from "msw";
import type Stripe from "stripe";
import { describe, expect, it } from "vitest";
import type { CustomerAccount } from "../../../durable-objects/customer-account";
import { expireGrants } from "../../../durable-objects/customer-account/credit/credits";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { admin, customerStub, gateway, gatewayWith, ORIGIN, openHold, settledCharge, withKey } from "../helpers";
import { llmOrigin } from "../llm-origin";
import { call, mcp, mcpServer } from "../mcp-origin";
import { server } from "../setup";
import { autoTopUpCustomer, later } from "./auto-topup-helpers";
import { connect, deliver, settle } from "./doubles";

/*
 * Every money feature on one customer, interleaved: plain charges, holds with their extensions
 * and settlements, Idempotency-Key retries with origin failures, grants voided and expiring,
 * Checkout top-ups, refunds (some failing later), disputes through Stripe's statuses, and auto
 * top-ups (some declined), MCP tool calls priced by name (tool errors and JSON-RPC errors among them)
 * and chat completions priced per model and token kind. After every step the invariants that must hold wherever two features
 * meet are checked.
 */

const UNIT = 100_000; // json_tokens: 0.1 cent a unit
const CENT = 1_000_000;

type Op =
  | { kind: "plain" }
  | { kind: "hold"; units: number }
  | { kind: "extend"; pick: number; units: number }
  | { kind: "settle"; pick: number; units: number | null; failed: boolean }
  | { kind: "idempotent"; status: 200 | 500 | 503; retry: boolean }
  | { kind: "grant"; cents: number; expiring: boolean }
  | { kind: "void"; pick: number }
  | { kind: "expire" }
  | { kind: "topup"; failingRefunds: boolean; taxBps: number }
  | { kind: "refund"; pick: number; cents: number }
  | { kind: "failRefund"; pick: number }
  | { kind: "dispute"; pick: number; cents: number }
  | { kind: "moveDispute"; pick: number; next: number }
  | { kind: "decline" }
  | { kind: "time"; seconds: number }
  | { kind: "tool"; name: "search_docs" | "render_chart" | "other" | "broken" | "invalid" }
  | { kind: "chat"; model: "small-a" | "large"; prompt: number; cached: number; completion: number; stream: boolean };

/** What a tool call costs on the `mcp_tools` meter (vitest.config.ts): search* 0.5 cents, render_chart 3, others 1; a JSON-RPC error nothing. */
const TOOL_MICROS = { search_docs: 500_000, render_chart: 3_000_000, other: 1_000_000, broken: 1_000_000, invalid: 0 };

/** What a completion costs on the `llm_chat` meter, worked out apart from the gateway's code: micro-cents per token, markup, rounded up once. */
function chatMicros(step: Extract<Op, { kind: "chat" }>): number {
  const cached = Math.min(step.cached, step.prompt);
  if (step.model === "large") return (step.prompt - cached) * 10_000 + cached * 10_000 + step.completion * 10_000;
  const sum = (step.prompt - cached) * 1_000 + cached * 100 + step.completion * 4_000;
  return Math.ceil((sum * 110) / 100);
}

const NEXT: Record<string, Stripe.Dispute.Status[]> = {
  needs_response: ["under_review", "won", "lost"],
  under_review: ["won", "lost"],
  lost: ["appeal_needs_response"],
  appeal_needs_response: ["won", "lost"],
};

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: "plain" as const }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("hold" as const), units: fc.integer({ min: 1, max: 80 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("extend" as const), pick: fc.nat(), units: fc.integer({ min: 1, max: 40 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("settle" as const), pick: fc.nat(), units: fc.option(fc.integer({ min: 0, max: 150 })), failed: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("idempotent" as const), status: fc.constantFrom(200 as const, 500 as const, 503 as const), retry: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("grant" as const), cents: fc.integer({ min: 1, max: 300 }), expiring: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("void" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ kind: "expire" as const }) },
  // A Checkout top-up of 500 cents, with Stripe Tax on top (GOVERNANCE.checkout_automatic_tax) unless taxBps is 0.
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("topup" as const), failingRefunds: fc.boolean(), taxBps: fc.constantFrom(0, 0, 1000, 1999, 2500) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("refund" as const), pick: fc.nat(), cents: fc.integer({ min: 1, max: 500 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("failRefund" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("dispute" as const), pick: fc.nat(), cents: fc.integer({ min: 1, max: 500 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("moveDispute" as const), pick: fc.nat(), next: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ kind: "decline" as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("time" as const), seconds: fc.constantFrom(60, 600, 3600) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("tool" as const),
      name: fc.constantFrom("search_docs" as const, "render_chart" as const, "other" as const, "broken" as const, "invalid" as const),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("chat" as const),
      model: fc.constantFrom("small-a" as const, "large" as const),
      prompt: fc.integer({ min: 0, max: 3000 }),
      cached: fc.integer({ min: 0, max: 3000 }),
      completion: fc.integer({ min: 0, max: 400 }),
      stream: fc.boolean(),
    }),
  },
);

interface GrantRow {
  id: string;
  amount: number;
  remaining: number;
  frozen: number;
  disputed: number;
  closed_at: number | null;
  /** Micro-cents out of the grant other than by spending: void, expiry, clawbacks less their reversals. */
  taken: number;
  /** Of those, by refunds and disputes (clawbacks less their reversals). */
  clawed: number;
  source: string;
  payment_intent: string | null;
}

async function grantRows(id: string): Promise<GrantRow[]> {
  return runInDurableObject(
    customerStub(id),
    (_instance, state) =>
      state.storage.sql
        .exec(
          `SELECT g.id, g.amount, g.remaining, g.frozen, g.disputed, g.closed_at,
           -COALESCE((SELECT SUM(l.amount) FROM ledger l WHERE l.grant_id = g.id AND l.kind IN ('void', 'expiry', 'clawback', 'clawback_reversal')), 0) AS taken,
           -COALESCE((SELECT SUM(l.amount) FROM ledger l WHERE l.grant_id = g.id AND l.kind IN ('clawback', 'clawback_reversal')), 0) AS clawed,
           g.source, g.payment_intent
         FROM grants g`,
        )
        .toArray() as unknown as GrantRow[],
  );
}

/** Checkout top-ups with Stripe Tax on (the worker's setting; the object credits whatever Checkout says). */
const taxed = { GOVERNANCE: { ...(env as unknown as { GOVERNANCE: Record<string, unknown> }).GOVERNANCE, checkout_automatic_tax: true } };

describe("every money feature on one customer (property)", () => {
  it("the books balance, nothing goes negative, disputed credit is never spent, nothing is taken twice, every unit is paid, auto top-up keeps its limits", {
    timeout: 600_000,
  }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 4, maxLength: 14 }), async (ops) => {
        const doubles = connect();
        const { stripe } = doubles;
        server.use(http.post(`${ORIGIN}/v1/fails/:status`, ({ params }) => HttpResponse.json({ status: Number(params.status) }, { status: Number(params.status) })));
        // 100 cents, a card saved for auto top-up (threshold 80, 500 a top-up), and the top-up that saved it.
        const { id, key, card } = await autoTopUpCustomer(doubles, 100, "pm_card_visa");
        const stub = customerStub(id);
        const keyHash = await sha256Hex(key);
        const payments = [card!.paymentIntent];
        const refunds: string[] = [];
        const disputes: string[] = [];
        const holds: { id: string; open: boolean; held: number; charged: number }[] = [];
        mcpServer();
        llmOrigin();
        let toolMicros = 0;
        let chatCharged = 0;
        let n = 0;
        let idem = 0;
        const deliverAll = async () => {
          for (const event of stripe.takeEvents()) expect((await deliver(stripe, event)).status).toBe(200);
        };
        const chargeOf = (pi: string | undefined) => (pi ? stripe.getCharge(stripe.getPaymentIntent(pi)!.latest_charge as string) : undefined);

        for (const step of ops) {
          switch (step.kind) {
            case "plain":
              expect([200, 402]).toContain((await gateway("/v1/x", withKey(key))).status);
              break;
            case "hold": {
              const requestId = `hold_${n++}`;
              const result = await stub.authorize({ keyHash, meter: "json_tokens", priceMicros: UNIT, requestId, hold: { units: step.units, onMissing: "hold" } });
              if (result.outcome === "ok") holds.push({ id: requestId, open: true, held: step.units, charged: 0 });
              else expect(["insufficient_credit", "payment_overdue"]).toContain(result.outcome);
              break;
            }
            case "extend": {
              const hold = openHold(holds, step.pick);
              if (!hold) break;
              const extended = await stub.extendHold({ requestId: hold.id, units: step.units });
              expect(extended.grantedUnits).toBeLessThanOrEqual(step.units);
              hold.held += extended.grantedUnits;
              break;
            }
            case "settle": {
              const hold = openHold(holds, step.pick);
              if (!hold) break;
              const units = step.failed ? null : step.units;
              const settled = await stub.settleHold({ requestId: hold.id, units, reason: step.failed ? "origin_failed" : units === null ? "units_missing" : "completed" });
              hold.open = false;
              hold.charged = settled.chargedMicros;
              // Every unit the origin reported is charged (past the hold into debt); none read: the
              // hold; a failed origin: nothing (within the refund limit, never reached here).
              expect(settled.chargedMicros).toBe(step.failed ? 0 : (units ?? hold.held) * UNIT);
              expect(settled.chargedUnits).toBe(step.failed ? 0 : (units ?? hold.held));
              break;
            }
            case "idempotent": {
              const idemKey = `idem_${idem++}`;
              const before = (await stub.balanceCheck())!.balanceMicros;
              const send = () => gateway(`/v1/fails/${step.status}`, withKey(key, { method: "POST", body: "{}", headers: { "idempotency-key": idemKey } }));
              const first = await send();
              await first.text();
              if (first.status === 402) break;
              const afterFirst = (await stub.balanceCheck())!.balanceMicros;
              // A 503 is refunded; a 200 or a 500 stays charged (1 cent) and is replayed, never charged twice.
              expect(before - afterFirst).toBe(step.status === 503 ? 0 : CENT);
              if (step.retry) {
                const again = await send();
                await again.text();
                expect(again.headers.get("idempotent-replayed")).toBe(step.status === 503 ? null : "true");
                expect((await stub.balanceCheck())!.balanceMicros).toBe(afterFirst);
              }
              break;
            }
            case "grant": {
              const expiresAt = step.expiring ? Math.floor(Date.now() / 1000) + 3600 : undefined;
              const created = await admin("POST", `/customers/${id}/grants`, { amount: step.cents, reason: "property", ...(expiresAt ? { expires_at: expiresAt } : {}) });
              expect(created.status).toBe(201);
              break;
            }
            case "void": {
              const open = (await grantRows(id)).filter((g) => g.closed_at === null);
              const grant = open[step.pick % Math.max(1, open.length)];
              if (grant) expect((await admin("DELETE", `/customers/${id}/grants/${grant.id}`)).status).toBe(200);
              break;
            }
            case "expire":
              // Two hours pass for the grants: those expiring within the hour close.
              await runInDurableObject(stub, (instance: CustomerAccount) =>
                expireGrants((instance as unknown as { context: Parameters<typeof expireGrants>[0] }).context, Date.now() + 7_200_000),
              );
              break;
            case "topup": {
              const init = withKey(key, { method: "POST", body: JSON.stringify({ amount_cents: 500 }) });
              const response = step.taxBps ? await gatewayWith(taxed, "/billing/checkout", init) : await gateway("/billing/checkout", init);
              if (response.status !== 201) break;
              const session = stripe.completeCheckout(((await response.json()) as { id: string }).id, {
                paymentMethod: step.failingRefunds ? "pm_card_refundFail" : "pm_card_visa",
                ...(step.taxBps ? { taxRateBasisPoints: step.taxBps } : {}),
              });
              payments.push(session.payment_intent as string);
              await deliverAll();
              break;
            }
            case "refund": {
              const pi = payments[step.pick % payments.length];
              const charge = chargeOf(pi);
              if (!charge || charge.disputed || charge.amount_refunded >= charge.amount) break;
              refunds.push(stripe.refundCharge(pi!, Math.min(step.cents, charge.amount - charge.amount_refunded)).refund.id);
              await deliverAll();
              break;
            }
            case "failRefund": {
              const refund = refunds[step.pick % Math.max(1, refunds.length)];
              if (!refund) break;
              try {
                stripe.failRefund(refund);
              } catch {
                break; // not a failing card's refund, or failed already
              }
              await deliverAll();
              break;
            }
            case "dispute": {
              const pi = payments[step.pick % payments.length];
              const charge = chargeOf(pi);
              if (!charge || charge.disputed || charge.amount_refunded > 0) break;
              disputes.push(stripe.createDispute(pi!, Math.min(step.cents, charge.amount)).id);
              await deliverAll();
              break;
            }
            case "moveDispute": {
              const dispute = disputes[step.pick % Math.max(1, disputes.length)];
              const next = dispute ? NEXT[stripe.getDispute(dispute)!.status] : undefined;
              if (!next?.length) break;
              stripe.moveDispute(dispute!, next[step.next % next.length]!);
              await deliverAll();
              break;
            }
            case "decline":
              // The saved card is cancelled at the issuer: the next top-up is declined and pauses auto top-up.
              try {
                stripe.declineFromNowOn(card!.pm);
              } catch {
                // declines already
              }
              break;
            case "time":
              await later(id, step.seconds);
              break;
            case "tool": {
              const response = await mcp(key, call(n++, step.name));
              expect(response.status).toBe(200);
              const answer = (await response.json()) as { result?: { isError?: boolean; content: { text: string }[] } };
              const refused = answer.result?.content[0]?.text.includes("x402/error") ?? false;
              // Refused (out of credit): a tool error, nothing forwarded, nothing charged.
              const charged = refused ? 0 : TOOL_MICROS[step.name];
              expect(response.headers.get("x-payg-charge-cents") ?? "0").toBe(String(charged / CENT));
              toolMicros += charged;
              break;
            }
            case "chat": {
              const usage = {
                prompt_tokens: step.prompt,
                completion_tokens: step.completion,
                prompt_tokens_details: { cached_tokens: Math.min(step.cached, step.prompt) },
              };
              const response = await gateway(
                `/llm/chat?usage=${encodeURIComponent(JSON.stringify(usage))}`,
                withKey(key, { method: "POST", body: JSON.stringify({ model: step.model, messages: [], stream: step.stream }) }),
              );
              await response.text();
              if (response.status === 402) break;
              expect(response.status).toBe(200);
              // Charged what the usage says, to the micro-cent, past the hold too (into debt).
              const charge = await settledCharge(id, response.headers.get("x-request-id")!);
              expect(charge).toMatchObject({ status: "settled", charged_exact_cents: String(chatMicros(step) / CENT) });
              chatCharged += chatMicros(step);
              break;
            }
          }
          // The object's own timers (auto top-up, Stripe reports) run, and Stripe's answers arrive.
          await settle(id);
          await deliverAll();
          await settle(id);

          const check = (await stub.balanceCheck())!;
          // The books: the balance is the ledger's sum, and what the grants hold less the debt.
          expect(check.ledgerSumMicros).toBe(check.balanceMicros);
          expect(check.balanceMicros).toBe(check.grantsRemainingMicros - check.debtMicros);
          // Every unit reported was charged and every open hold is out of the balance: the meter's
          // usage in the ledger is exactly what the holds say, whatever grants closed meanwhile.
          const usage = await runInDurableObject(
            stub,
            (_instance, state) =>
              state.storage.sql.exec("SELECT COALESCE(SUM(amount), 0) AS s FROM ledger WHERE meter = 'json_tokens' AND kind IN ('usage', 'refund')").one().s as number,
          );
          expect(-usage || 0).toBe(holds.reduce((sum, h) => sum + (h.open ? h.held * UNIT : h.charged), 0));
          // Tool calls and tokens: the ledger's usage of each meter is exactly what was charged.
          const usageOf = (meter: string) =>
            runInDurableObject(
              stub,
              (_instance, state) =>
                state.storage.sql.exec("SELECT COALESCE(SUM(amount), 0) AS s FROM ledger WHERE meter = ? AND kind IN ('usage', 'refund')", meter).one().s as number,
            );
          expect(-(await usageOf("mcp_tools")) || 0).toBe(toolMicros);
          expect(-(await usageOf("llm_chat")) || 0).toBe(chatCharged);
          for (const grant of await grantRows(id)) {
            // No grant below 0 or above what it granted.
            expect(grant.remaining).toBeGreaterThanOrEqual(0);
            expect(grant.remaining).toBeLessThanOrEqual(grant.amount);
            // A disputed amount is never spendable while open, wherever it came back from.
            expect(grant.frozen).toBe(Math.min(grant.remaining, grant.disputed));
            // Nothing is taken back twice: voids, expiries and clawbacks never remove more than the grant.
            expect(grant.taken).toBeLessThanOrEqual(grant.amount);
          }
          // Tax is never credit: every Checkout grant is the 500 cents bought, whatever was paid on top;
          // a refund or dispute of a taxed payment takes back at most its pre-tax share.
          const listed = (await admin("GET", `/customers/${id}/topups?limit=200`)).body.topups as {
            payment_intent: string;
            source: string;
            credit_cents: number;
            tax_cents: number;
            total_cents: number;
          }[];
          for (const t of listed) {
            expect(t.credit_cents + t.tax_cents).toBe(t.total_cents);
            if (t.source === "checkout") expect(t.credit_cents).toBe(500);
            expect(t.total_cents).toBe(stripe.getPaymentIntent(t.payment_intent)!.amount);
          }
          for (const grant of await grantRows(id)) {
            if (grant.source === "checkout") expect(grant.amount).toBe(500 * CENT);
            const paid = listed.find((t) => t.payment_intent === grant.payment_intent);
            const charge = chargeOf(grant.payment_intent ?? undefined);
            if (paid && charge && grant.clawed > 0) {
              const stripeTook =
                charge.amount_refunded + (charge.disputed ? (stripe.getDispute(disputes.find((d) => stripe.getDispute(d)!.charge === charge.id)!)?.amount ?? 0) : 0);
              expect(grant.clawed).toBeLessThanOrEqual(Math.floor((Math.min(stripeTook, paid.total_cents) * CENT * paid.credit_cents) / paid.total_cents));
            }
          }
          // Auto top-up: at most one top-up per min_interval_seconds (600), at most max_per_day (4) a UTC day.
          const { topups } = (await admin("GET", `/customers/${id}/auto-top-up`)).body as { topups: { status: string; created_at: number }[] };
          const started = topups
            .filter((t) => t.status !== "canceled")
            .map((t) => t.created_at)
            .sort((a, b) => a - b);
          for (let i = 1; i < started.length; i++) expect(started[i]! - started[i - 1]!).toBeGreaterThanOrEqual(600_000);
          const days = new Map<number, number>();
          for (const at of started) days.set(Math.floor(at / 86_400_000), (days.get(Math.floor(at / 86_400_000)) ?? 0) + 1);
          for (const count of days.values()) expect(count).toBeLessThanOrEqual(4);
        }
      }),
      { numRuns: 200 },
    );
  });
});
