import { runInDurableObject } from "cloudflare:test";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { decodePaymentResponseHeader, type PaymentRequired, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { http } from "msw";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { FacilitatorDouble } from "../../doubles/x402-facilitator";
import { customerStub, gatewayWith, settle, withKey } from "../helpers";
import { server } from "../setup";

export const NETWORK = "eip155:84532";
/** USDC on Base Sepolia: its EIP-712 domain ("USDC", "2") is built into the gateway and the x402 client. */
export const ASSET = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
export const PAY_TO = "0x1111111111111111111111111111111111111111";
const RPC = "https://rpc.x402.test/";

let facilitators = 0;

/**
 * A facilitator double (and its chain's RPC) behind MSW, at a URL of its own: the worker reads
 * /supported once per isolate and facilitator, so each test starts unchecked.
 */
export function facilitator(options: { supported?: boolean; payments?: Record<string, unknown>; governance?: Record<string, unknown>; recordInStripe?: boolean } = {}) {
  const url = `https://f${++facilitators}.facilitator.test`;
  const double = new FacilitatorDouble({ network: NETWORK, asset: ASSET, rpcUrl: RPC, supported: options.supported ?? true });
  server.use(
    http.all(`${url}/*`, ({ request }) => double.handle(request as unknown as Request)),
    http.post(RPC, ({ request }) => double.handle(request as unknown as Request)),
  );
  const bindings = {
    PAYMENTS: {
      topup_cents: 500,
      x402: { facilitator_url: url, network: NETWORK, asset: ASSET, pay_to: PAY_TO, rpc_url: RPC, timeout_ms: 300, ...(options.recordInStripe ? { record_in_stripe: true } : {}) },
      ...options.payments,
    },
    ...(options.governance ? { GOVERNANCE: options.governance } : {}),
  };
  const call = (key: string, path = "/v1/x", init: RequestInit = {}) => gatewayWith(bindings, path, withKey(key, init));
  return { double, bindings, url, call };
}

/** A payer with a local key (viem) and `usdc` whole USDC on the double's chain. */
export function agent(double: FacilitatorDouble, usdc = 100) {
  const account = privateKeyToAccount(generatePrivateKey());
  double.fund(account.address, BigInt(usdc) * 1_000_000n);
  const client = new x402Client().register("eip155:*", new ExactEvmScheme(account)).setSpendControls({ maxAmountPerPayment: "$10" });
  return { account, client };
}

/** The official client's fetch, paying 402s, in front of the worker (with the test's bindings). */
export function payingFetch(client: x402Client, bindings: Record<string, unknown>, key: string) {
  return wrapFetchWithPayment(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    const headers = new Headers(request.headers);
    headers.set("authorization", `Bearer ${key}`);
    return gatewayWith(bindings, url.pathname + url.search, { method: request.method, headers });
  }, client);
}

export function paymentRequiredOf(response: Response): PaymentRequired {
  const header = response.headers.get("payment-required");
  if (!header) throw new Error(`no PAYMENT-REQUIRED on a ${response.status}`);
  return JSON.parse(atob(header)) as PaymentRequired;
}

export function settlementOf(response: Response) {
  const header = response.headers.get("payment-response");
  return header ? decodePaymentResponseHeader(header) : null;
}

/** The PaymentRequired the gateway offers a customer for a pack of `cents` on GET /v1/x. */
export function offered(customerId: string, cents: number): PaymentRequired {
  return {
    x402Version: 2,
    resource: { url: "http://gateway.test/v1/x", description: `Adds $${(cents / 100).toFixed(2)} of API credit to ${customerId}`, mimeType: "application/json" },
    accepts: [{ scheme: "exact", network: NETWORK, amount: String(cents * 10_000), asset: ASSET, payTo: PAY_TO, maxTimeoutSeconds: 300, extra: { name: "USDC", version: "2" } }],
  };
}

/** A PAYMENT-SIGNATURE the official client signs for `required` with one requirement changed. */
export async function signedFor(client: x402Client, required: PaymentRequired, change: Record<string, unknown> = {}): Promise<string> {
  const tampered = { ...required, accepts: [{ ...required.accepts[0]!, ...change }] } as PaymentRequired;
  const payload = await client.setSpendControls(false).createPaymentPayload(tampered);
  return btoa(JSON.stringify(payload));
}

/** Makes the customer's pending x402 recordings due now (instead of after their backoff) and runs them. */
export async function recordNow(customerId: string) {
  await runInDurableObject(customerStub(customerId), (instance: unknown, state) => {
    state.storage.sql.exec("UPDATE agent_payments SET stripe_next_at = 0 WHERE stripe_status = 'pending'");
    (instance as { context: { timers: { set(n: string, at: number): void } } }).context.timers.set("x402_stripe", Date.now());
  });
  await settle(customerId);
}

/** The customer's x402 payments as its object keeps them, with their Stripe recording. */
export async function recordingsOf(customerId: string) {
  return await runInDurableObject(customerStub(customerId), (_instance, state) =>
    state.storage.sql
      .exec(
        "SELECT id, transaction_id, stripe_status, stripe_key, stripe_attempts, stripe_payment_intent, stripe_error FROM agent_payments WHERE rail = 'x402' ORDER BY created_at",
      )
      .toArray(),
  );
}
