import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/lib/config";
import { admin, envProblems, gatewayWith, settle } from "../helpers";
import { connect, deliverAll } from "./doubles";
import { ASSET, agent, facilitator, NETWORK, PAY_TO, payingFetch, paymentRequiredOf, settlementOf, signedFor } from "./x402-helpers";

// x402 v2 as a top-up rail (docs/concepts/agent-payments.md): the gateway's 402 carries
// PAYMENT-REQUIRED for a pack; the official client (@x402/fetch with a viem account) pays it;
// the facilitator double verifies the EIP-712 signature and settles once per nonce.

async function brokeCustomer(stripe: ReturnType<typeof connect>["stripe"]) {
  const customer = stripe.createCustomer({ email: "ada@example.com", name: "Ada Lovelace" });
  await deliverAll(stripe);
  const key = (await admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
  return { id: customer.id, key };
}

const balanceOf = async (id: string) => (await admin("GET", `/customers/${id}`)).body.balance.available_exact_cents as string;
const grantsOf = async (id: string) => (await admin("GET", `/customers/${id}/grants`)).body.grants as { source: string; amount_cents: number; reason: string }[];

/** A customer with no credit, the facilitator double, and an agent's signed answer to the 402 the customer got. */
async function paidRetry() {
  const { stripe } = connect();
  const { double, call } = facilitator();
  const { id, key } = await brokeCustomer(stripe);
  const { client } = agent(double);
  const signature = await signedFor(client, paymentRequiredOf(await call(key)));
  return { double, call, id, key, signature };
}

describe("x402: a 402 an agent can pay (happy)", () => {
  it("offers a pack in PAYMENT-REQUIRED and in the body; the official client pays it, is served and charged once", async () => {
    const { stripe } = connect();
    const { double, bindings, call } = facilitator();
    const { id, key } = await brokeCustomer(stripe);

    const refused = await call(key);
    expect(refused.status).toBe(402);
    expect(refused.headers.get("cache-control")).toBe("no-store");
    const required = paymentRequiredOf(refused);
    expect(required).toEqual({
      x402Version: 2,
      resource: { url: "http://gateway.test/v1/x", description: `Adds $5.00 of API credit to ${id}`, mimeType: "application/json" },
      accepts: [{ scheme: "exact", network: NETWORK, amount: "5000000", asset: ASSET, payTo: PAY_TO, maxTimeoutSeconds: 300, extra: { name: "USDC", version: "2" } }],
    });
    const body = (await refused.json()) as any;
    // The product's 402 template, with the same offer for an agent that reads the body first.
    expect(body).toMatchObject({ code: "insufficient_credit", customer_id: id, payment: { topup_cents: 500, x402: required } });

    const { account, client } = agent(double);
    const paid = await payingFetch(client, bindings, key)("http://gateway.test/v1/x");
    expect(paid.status).toBe(200);
    expect(paid.headers.get("x-payg-charge-cents")).toBe("1");
    expect(paid.headers.get("x-payg-balance-cents")).toBe("499");
    const settlement = settlementOf(paid)!;
    expect(settlement).toMatchObject({ success: true, network: NETWORK, payer: account.address });
    expect(double.transfers).toEqual([{ transaction: settlement.transaction, from: account.address, to: PAY_TO, value: 5_000_000n }]);
    expect(await balanceOf(id)).toBe("499");
    expect((await grantsOf(id)).filter((g) => g.source === "x402")).toHaveLength(1);

    // Stripe's books: the pack is a customer balance credit like a Checkout top-up.
    await settle(id);
    expect(stripe.balanceTransactions(id).filter((t) => t.amount === -500)).toHaveLength(1);
  });

  it("replays a payment already credited with its first receipt: served from the balance, credited once", async () => {
    const { double, call, id, key, signature } = await paidRetry();

    const first = await call(key, "/v1/x", { headers: { "payment-signature": signature } });
    expect(first.status).toBe(200);
    const again = await call(key, "/v1/x", { headers: { "payment-signature": signature } });
    expect(again.status).toBe(200);
    expect(again.headers.get("payment-response")).toBe(first.headers.get("payment-response"));
    expect(await balanceOf(id)).toBe("498");
    expect(double.transfers).toHaveLength(1);
    expect(double.calls["/settle"]).toBe(1);
    expect((await grantsOf(id)).filter((g) => g.source === "x402")).toHaveLength(1);
  });
});

describe("x402: exactly once whatever fails (error)", () => {
  it("a settle that committed but whose answer was lost is not repeated: the chain says the authorization was used, credited once", async () => {
    const { double, call, id, key, signature } = await paidRetry();
    double.inject("/settle", "lost_after_commit");

    const paid = await call(key, "/v1/x", { headers: { "payment-signature": signature } });
    expect(paid.status).toBe(200);
    expect(double.calls["/settle"]).toBe(1);
    expect(double.calls.eth_call).toBe(1);
    expect(settlementOf(paid)).toMatchObject({ success: true, network: NETWORK });
    expect(await balanceOf(id)).toBe("499");
    // The client retries (its answer was fine, but say it was lost too): nothing is credited again.
    expect((await call(key, "/v1/x", { headers: { "payment-signature": signature } })).status).toBe(200);
    expect(await balanceOf(id)).toBe("498");
    expect(double.transfers).toHaveLength(1);
    expect(double.calls["/settle"]).toBe(1);
  });

  it("a settle that timed out before committing credits nothing; the same payment retried settles once", async () => {
    const { double, call, id, key, signature } = await paidRetry();
    double.inject("/settle", "timeout");

    const failed = await call(key, "/v1/x", { headers: { "payment-signature": signature } });
    expect(failed.status).toBe(402);
    expect(((await failed.json()) as any).error).toMatchObject({ code: "payment_failed", details: { reason: "unexpected_settle_error" } });
    expect(settlementOf(failed)).toMatchObject({ success: false, errorReason: "unexpected_settle_error" });
    expect(await balanceOf(id)).toBe("0");
    expect(double.transfers).toHaveLength(0);

    const retried = await call(key, "/v1/x", { headers: { "payment-signature": signature } });
    expect(retried.status).toBe(200);
    expect(await balanceOf(id)).toBe("499");
    expect(double.transfers).toHaveLength(1);
  });

  it("a lost settle answer with the chain unreachable credits nothing and says so (502 payment_unconfirmed)", async () => {
    const { double, call, id, key, signature } = await paidRetry();
    double.inject("/settle", "lost_after_commit");
    double.inject("eth_call", "500");
    double.inject("eth_call", "500");
    const unconfirmed = await call(key, "/v1/x", { headers: { "payment-signature": signature } });
    expect(unconfirmed.status).toBe(502);
    expect(((await unconfirmed.json()) as any).error.code).toBe("payment_unconfirmed");
    expect(await balanceOf(id)).toBe("0");
  });

  it("the facilitator down at /verify settles nothing and credits nothing (502)", async () => {
    const { double, call, id, key, signature } = await paidRetry();
    double.inject("/verify", "500");
    const down = await call(key, "/v1/x", { headers: { "payment-signature": signature } });
    expect(down.status).toBe(502);
    expect(((await down.json()) as any).error.code).toBe("upstream_error");
    expect(double.calls["/settle"]).toBeUndefined();
    expect(await balanceOf(id)).toBe("0");
  });
});

describe("x402: a payment that does not pay what was offered is refused before settling (error)", () => {
  it.each([
    ["a wrong amount", { amount: "10000" }, "invalid_exact_evm_payload_authorization_value_mismatch"],
    ["a wrong recipient", { payTo: "0x2222222222222222222222222222222222222222" }, "invalid_exact_evm_payload_recipient_mismatch"],
    ["a wrong network", { network: "eip155:8453" }, "invalid_network"],
    ["a wrong asset", { asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913" }, "invalid_payment_requirements"],
    ["an authorization that lapses at once", { maxTimeoutSeconds: 2 }, "invalid_exact_evm_payload_authorization_valid_before"],
  ])("%s", async (_what, change, reason) => {
    const { stripe } = connect();
    const { double, call } = facilitator();
    const { id, key } = await brokeCustomer(stripe);
    const { client } = agent(double);
    const signature = await signedFor(client, paymentRequiredOf(await call(key)), change);
    const refused = await call(key, "/v1/x", { headers: { "payment-signature": signature } });
    expect(refused.status).toBe(402);
    expect(((await refused.json()) as any).error).toMatchObject({ code: "payment_invalid", details: { reason } });
    expect(settlementOf(refused)).toMatchObject({ success: false, errorReason: reason, transaction: "" });
    expect(double.calls["/verify"]).toBeUndefined();
    expect(double.calls["/settle"]).toBeUndefined();
    expect(await balanceOf(id)).toBe("0");
  });

  it("a nonce already used (the same payment presented by another customer) is refused by the facilitator, credited to no one", async () => {
    const { stripe } = connect();
    const { double, call } = facilitator();
    const first = await brokeCustomer(stripe);
    const second = await brokeCustomer(stripe);
    const { client } = agent(double);
    const signature = await signedFor(client, paymentRequiredOf(await call(first.key)));
    expect((await call(first.key, "/v1/x", { headers: { "payment-signature": signature } })).status).toBe(200);
    const reused = await call(second.key, "/v1/x", { headers: { "payment-signature": signature } });
    expect(reused.status).toBe(402);
    expect(((await reused.json()) as any).error).toMatchObject({ code: "payment_invalid", details: { reason: "invalid_exact_evm_nonce_already_used" } });
    expect(await balanceOf(second.id)).toBe("0");
    expect(double.transfers).toHaveLength(1);
  });

  it("a forged signature and an empty wallet are refused by the facilitator", async () => {
    const { double, call, id, key, signature } = await paidRetry();
    const payload = JSON.parse(atob(signature));
    payload.payload.authorization.from = "0x3333333333333333333333333333333333333333";
    const forged = await call(key, "/v1/x", { headers: { "payment-signature": btoa(JSON.stringify(payload)) } });
    expect(forged.status).toBe(402);
    expect(((await forged.json()) as any).error.details.reason).toBe("invalid_exact_evm_payload_signature");

    const broke = agent(double, 0);
    const unfunded = await call(key, "/v1/x", { headers: { "payment-signature": await signedFor(broke.client, paymentRequiredOf(await call(key))) } });
    expect(((await unfunded.json()) as any).error.details.reason).toBe("insufficient_funds");
    expect(await balanceOf(id)).toBe("0");
    expect(double.transfers).toHaveLength(0);
  });

  it("a malformed PAYMENT-SIGNATURE is a 400 with PAYMENT-RESPONSE invalid_payload", async () => {
    const { stripe } = connect();
    const { call } = facilitator();
    const { key } = await brokeCustomer(stripe);
    const malformed = await call(key, "/v1/x", { headers: { "payment-signature": "not-base64!" } });
    expect(malformed.status).toBe(400);
    expect(settlementOf(malformed)).toMatchObject({ success: false, errorReason: "invalid_payload" });
  });

  it("payments count against GOVERNANCE.checkout_limit_per_hour (429 before settling)", async () => {
    const { stripe } = connect();
    const { double, call } = facilitator({ governance: { checkout_limit_per_hour: 1 } });
    const { key } = await brokeCustomer(stripe);
    const { client } = agent(double);
    const required = paymentRequiredOf(await call(key));
    expect((await call(key, "/v1/x", { headers: { "payment-signature": await signedFor(client, required) } })).status).toBe(200);
    // A second payment (a fresh nonce) within the hour: refused before it reaches the facilitator.
    const second = await call(key, "/v1/x", { headers: { "payment-signature": await signedFor(client, required) } });
    expect(second.status).toBe(429);
    expect(((await second.json()) as any).error.code).toBe("rate_limited");
    expect(double.transfers).toHaveLength(1);
  });
});

describe("x402: which refusals offer a payment (edge)", () => {
  it("a facilitator that does not list the network turns the rail off: no PAYMENT-REQUIRED, and /admin/status says why", async () => {
    const { stripe } = connect();
    const { call, bindings } = facilitator({ supported: false });
    const { key } = await brokeCustomer(stripe);
    const refused = await call(key);
    expect(refused.status).toBe(402);
    expect(refused.headers.get("payment-required")).toBeNull();
    expect((await refused.json()) as any).not.toHaveProperty("payment");
    const status = (await (await gatewayWith(bindings, "/admin/status", { headers: { authorization: "Bearer test-admin-token-0123456789" } })).json()) as any;
    expect(status.payments.x402).toMatch(/^off: .*does not list x402 v2 "exact" on eip155:84532/);
  });

  it("a key's cap is not payable: its 402 offers nothing", async () => {
    const { stripe } = connect();
    const { call } = facilitator();
    const customer = stripe.createCustomer({ email: "ada@example.com", balance: -100 });
    await deliverAll(stripe);
    const key = (await admin("POST", `/customers/${customer.id}/keys`, { spend_cap_cents: 1, cap_period: "day" })).body.key as string;
    expect((await call(key)).status).toBe(200);
    const capped = await call(key);
    expect(capped.status).toBe(402);
    expect(((await capped.json()) as any).error.code).toBe("key_cap_reached");
    expect(capped.headers.get("payment-required")).toBeNull();
  });
});

describe("[vars.PAYMENTS] is checked as a whole (edge)", () => {
  const x402 = { network: NETWORK, asset: ASSET, pay_to: PAY_TO, rpc_url: "https://rpc.example" };
  const problems = envProblems;

  it("takes the issue's configuration, with USDC's domain built in and the public facilitator by default", () => {
    expect(problems({ PAYMENTS: { topup_cents: 500, x402 } })).toEqual([]);
    const config = parseConfig({ ...(env as unknown as Record<string, unknown>), PAYMENTS: { x402 } });
    expect(config.PAYMENTS?.x402).toMatchObject({ facilitator_url: "https://x402.org/facilitator", max_timeout_seconds: 300 });
  });

  it("needs usd prices, a known EIP-712 domain, a pack within checkout_max_cents (MPP: mpp.test.ts checks its own needs; record_in_stripe: x402-stripe.test.ts)", () => {
    const pricing = { ...(env as any).PRICING, currency: "eur" };
    expect(problems({ PRICING: pricing, PAYMENTS: { x402 } })).toEqual([expect.stringMatching(/^PAYMENTS\.x402: needs PRICING\.currency "usd"/)]);
    expect(problems({ PAYMENTS: { x402: { ...x402, asset: "0x4444444444444444444444444444444444444444" } } })).toEqual([
      expect.stringMatching(/^PAYMENTS\.x402\.asset_name and asset_version: required/),
    ]);
    expect(problems({ PAYMENTS: { x402: { ...x402, asset: "0x4444444444444444444444444444444444444444", asset_name: "Token", asset_version: "1" } } })).toEqual([]);
    expect(problems({ PAYMENTS: { topup_cents: 200_000, x402 } })).toEqual(["PAYMENTS.topup_cents: must not exceed GOVERNANCE.checkout_max_cents"]);
    expect(problems({ PAYMENTS: { x402: { ...x402, network: "base-sepolia" } } })[0]).toMatch(/^PAYMENTS\.x402\.network: must be a CAIP-2 EVM network/);
    expect(problems({ PAYMENTS: { x402: { ...x402, rpc_url: "http://rpc.example" } } })[0]).toMatch(/^PAYMENTS\.x402\.rpc_url: must be https/);
    expect(problems({ PAYMENTS: { mpp: { realm: "api.example.com", network_id: "profile_123" } } })).toEqual([]);
  });
});
