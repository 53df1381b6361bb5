import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { FaultKind } from "../../doubles/stripe-double";
import { admin, envProblems, settle } from "../helpers";
import { connect, cron, deliverAll } from "./doubles";
import { agent, facilitator, NETWORK, PAY_TO, paymentRequiredOf, recordingsOf, recordNow, settlementOf, signedFor } from "./x402-helpers";

// PAYMENTS.x402.record_in_stripe (docs/design/x402-stripe-recording.md): a settled x402 payment to
// a Stripe crypto deposit address is also recorded as the PaymentIntent Stripe's x402 sample
// creates, idempotent by the transaction hash, after the credit; the credit still reaches Stripe's
// balance once, as a balance transaction.

const balanceOf = async (id: string) => (await admin("GET", `/customers/${id}`)).body.balance.available_exact_cents as string;
const x402Grants = async (id: string) =>
  ((await admin("GET", `/customers/${id}/grants`)).body.grants as { source: string; payment_intent: string | null }[]).filter((g) => g.source === "x402");

/** A customer with no credit, the facilitator double with record_in_stripe on, and a paid retry of the customer's 402. */
async function paid() {
  const { stripe } = connect();
  const x402 = facilitator({ recordInStripe: true });
  const customer = stripe.createCustomer({ email: "ada@example.com", name: "Ada Lovelace" });
  await deliverAll(stripe);
  const key = (await admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
  const { client } = agent(x402.double);
  const signature = await signedFor(client, paymentRequiredOf(await x402.call(key)));
  const pay = () => x402.call(key, "/v1/x", { headers: { "payment-signature": signature } });
  return { stripe, ...x402, id: customer.id, key, pay };
}

const creates = (stripe: ReturnType<typeof connect>["stripe"]) => stripe.requests.filter((r) => r.method === "POST" && r.path === "/v1/payment_intents");

describe("x402 payments recorded in Stripe (happy)", () => {
  it("a settled payment is one crypto PaymentIntent in transaction_verification mode, keyed by its transaction hash; the credit reaches Stripe's balance once", async () => {
    const { stripe, double, id, pay } = await paid();
    const answer = await pay();
    expect(answer.status).toBe(200);
    const transaction = settlementOf(answer)!.transaction;
    expect(transaction).toMatch(/^0x[0-9a-f]{64}$/);
    // Never in the request's way: nothing was sent to Stripe before the answer.
    expect(creates(stripe)).toHaveLength(0);

    await settle(id);
    expect(creates(stripe)).toHaveLength(1);
    const [sent] = creates(stripe);
    expect(sent!.idempotencyKey).toBe(transaction);
    // Stripe's sample, field for field, on the customer with our metadata.
    expect(sent!.params).toMatchObject({
      amount: "500",
      currency: "usd",
      customer: id,
      confirm: "true",
      payment_method_data: { type: "crypto" },
      payment_method_types: ["crypto"],
      payment_method_options: { crypto: { mode: "transaction_verification", transaction_verification_options: { network: "base", transaction_hash: transaction } } },
      metadata: { payg_customer_id: id, payg_credit_cents: "500" },
    });
    const [pi] = stripe.paymentIntentsOf(id);
    expect(stripe.paymentIntentsOf(id)).toHaveLength(1);
    expect(pi).toMatchObject({ amount: 500, currency: "usd", status: "succeeded", payment_method_types: ["crypto"] });
    expect(stripe.getCharge(pi!.latest_charge as string)!.payment_method_details).toMatchObject({ type: "crypto", crypto: { network: "base", transaction_hash: transaction } });
    expect(await recordingsOf(id)).toEqual([
      expect.objectContaining({ transaction_id: transaction, stripe_status: "recorded", stripe_payment_intent: pi!.id, stripe_attempts: 1 }),
    ]);
    expect((await admin("GET", `/customers/${id}`)).body.agent_payments).toEqual({ by_rail: { x402: 1 }, stripe_recordings: { recorded: 1 }, needs_attention: [] });
    // The grant is the PaymentIntent's: a refund of it reaches the account like a top-up's.
    expect((await x402Grants(id)).map((g) => g.payment_intent)).toEqual([pi!.id]);

    // The PaymentIntent's own webhooks (created, charge.succeeded, succeeded) credit nothing again.
    await deliverAll(stripe);
    await settle(id);
    await cron();
    await deliverAll(stripe);
    expect(await balanceOf(id)).toBe("499");
    expect(await x402Grants(id)).toHaveLength(1);
    expect(stripe.balanceTransactions(id).filter((t) => t.amount < 0)).toHaveLength(1);
    expect(stripe.balanceTransactions(id).find((t) => t.amount < 0)!.amount).toBe(-500);
    expect(double.transfers).toEqual([expect.objectContaining({ transaction, to: PAY_TO })]);

    // A replay of the payment records nothing more.
    expect((await pay()).status).toBe(200);
    await settle(id);
    expect(creates(stripe)).toHaveLength(1);
  });

  it("a refund of the recorded PaymentIntent claws the pack back like any top-up's; a crypto payment cannot be disputed", async () => {
    const { stripe, id, pay } = await paid();
    expect((await pay()).status).toBe(200);
    await settle(id);
    const [pi] = stripe.paymentIntentsOf(id);
    stripe.refundCharge(pi!.id, 200);
    await deliverAll(stripe);
    await settle(id);
    expect(await balanceOf(id)).toBe("299");
    expect(() => stripe.createDispute(pi!.id)).toThrow(/cannot be disputed/);
  });
});

describe("x402 recordings whatever Stripe does (error)", () => {
  // How often each fault fires: the SDK retries timeouts and dropped answers itself, under the same key.
  const cases: [FaultKind, number][] = [
    ["500", 1],
    ["500_after_commit", 1],
    ["429", 1],
    ["timeout", 3],
    ["drop_after_commit", 3],
  ];
  for (const [kind, times] of cases) {
    it(`${kind}: the paid request is served, the recording retried later, and exactly one PaymentIntent recorded`, async () => {
      const { stripe, id, pay } = await paid();
      stripe.inject({ match: { method: "POST", path: "/v1/payment_intents" }, kind, times });
      const answer = await pay();
      expect(answer.status).toBe(200);
      const transaction = settlementOf(answer)!.transaction;
      await settle(id);
      expect(await recordingsOf(id)).toEqual([expect.objectContaining({ stripe_status: "pending", stripe_attempts: 1, stripe_error: expect.any(String) })]);

      stripe.clearFaults();
      await recordNow(id);
      const pis = stripe.paymentIntentsOf(id);
      expect(pis).toHaveLength(1);
      expect(await recordingsOf(id)).toEqual([expect.objectContaining({ stripe_status: "recorded", stripe_payment_intent: pis[0]!.id })]);
      const keys = creates(stripe).map((r) => r.idempotencyKey);
      if (kind === "500") {
        // Stripe replays a saved 500 under its key: looked up first, then sent under a fresh key.
        expect(stripe.requests.some((r) => r.method === "GET" && r.path === "/v1/payment_intents")).toBe(true);
        expect(keys).toEqual([transaction, `${transaction}_r1`]);
      } else if (kind === "500_after_commit") {
        // It had committed: the lookup finds it, nothing is sent again.
        expect(keys).toEqual([transaction]);
      } else expect(new Set(keys)).toEqual(new Set([transaction]));
      expect((await x402Grants(id)).map((g) => g.payment_intent)).toEqual([pis[0]!.id]);
      expect(await balanceOf(id)).toBe("499");
    });
  }

  it("Stripe down: the paid request is served from the pack; the recording waits and lands once when Stripe is back", async () => {
    const { stripe, id, pay } = await paid();
    stripe.inject({ match: { path: /./ }, kind: "500", times: 1000 });
    expect((await pay()).status).toBe(200);
    expect(await balanceOf(id)).toBe("499");
    await settle(id);
    await recordNow(id);
    expect(stripe.paymentIntentsOf(id)).toHaveLength(0);
    expect((await recordingsOf(id))[0]).toMatchObject({ stripe_status: "pending" });
    stripe.clearFaults();
    await recordNow(id);
    expect(stripe.paymentIntentsOf(id)).toHaveLength(1);
    expect((await recordingsOf(id))[0]).toMatchObject({ stripe_status: "recorded" });
  });

  it("a payment Stripe refuses for good is failed and kept, never retried; the credit stays", async () => {
    const { stripe, id, pay } = await paid();
    const answer = await pay();
    expect(answer.status).toBe(200);
    // Another PaymentIntent already recorded this transaction (a second gateway on the same deposit address, say).
    const hash = settlementOf(answer)!.transaction;
    await fetch(`${(env as any).STRIPE_API_BASE}/v1/payment_intents`, {
      method: "POST",
      headers: { authorization: `Bearer ${(env as any).STRIPE_SECRET_KEY}`, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        amount: "500",
        currency: "usd",
        confirm: "true",
        "payment_method_data[type]": "crypto",
        "payment_method_types[]": "crypto",
        "payment_method_options[crypto][mode]": "transaction_verification",
        "payment_method_options[crypto][transaction_verification_options][network]": "base",
        "payment_method_options[crypto][transaction_verification_options][transaction_hash]": hash,
      }),
    });
    await settle(id);
    expect(await recordingsOf(id)).toEqual([expect.objectContaining({ stripe_status: "failed", stripe_error: expect.stringMatching(/already recorded/) })]);
    // The admin view shows it to the operator.
    expect((await admin("GET", `/customers/${id}`)).body.agent_payments).toEqual({
      by_rail: { x402: 1 },
      stripe_recordings: { failed: 1 },
      needs_attention: [expect.objectContaining({ transaction_id: hash, stripe_status: "failed", amount_cents: 500, stripe_error: expect.stringMatching(/already recorded/) })],
    });
    await recordNow(id);
    expect(creates(stripe)).toHaveLength(2);
    expect(await balanceOf(id)).toBe("499");
  });

  it("a lost settle answer the chain confirmed has no transaction hash: credited, not recorded, and the log says so", async () => {
    const { stripe, double, id, pay } = await paid();
    double.inject("/settle", "lost_after_commit");
    expect((await pay()).status).toBe(200);
    await settle(id);
    expect(creates(stripe)).toHaveLength(0);
    expect(await recordingsOf(id)).toEqual([expect.objectContaining({ transaction_id: null, stripe_status: "no_transaction" })]);
    expect((await admin("GET", `/customers/${id}`)).body.agent_payments).toMatchObject({
      stripe_recordings: { no_transaction: 1 },
      needs_attention: [{ transaction_id: null, stripe_status: "no_transaction" }],
    });
    expect(await balanceOf(id)).toBe("499");
  });
});

describe("record_in_stripe is checked with the rest of [vars.PAYMENTS] (edge)", () => {
  const x402 = { network: NETWORK, asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e", pay_to: PAY_TO, rpc_url: "https://rpc.example", record_in_stripe: true };
  const problems = envProblems;

  it("needs Stripe and a network Stripe records", () => {
    expect(problems({ PAYMENTS: { x402 } })).toEqual([]);
    expect(problems({ PAYMENTS: { x402 }, STRIPE_SECRET_KEY: "" })).toContainEqual(expect.stringMatching(/^PAYMENTS\.x402\.record_in_stripe: needs Stripe/));
    expect(problems({ PAYMENTS: { x402: { ...x402, network: "eip155:10", asset_name: "USD Coin", asset_version: "2" } } })).toEqual([
      expect.stringMatching(/^PAYMENTS\.x402\.record_in_stripe: Stripe records crypto payments on Base, Ethereum and Polygon only/),
    ]);
  });
});
