import { ExactEvmScheme } from "@x402/evm/exact/client";
import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { type Facilitator, startFacilitator } from "../../scripts/x402-facilitator.mjs";
import { customerWithKey, type Gateway, startGateway } from "./harness";

// `npm start -- --x402` as an agent meets it: the real `wrangler dev` in local mode (no Stripe),
// the facilitator double over HTTP (scripts/x402-facilitator.mjs), and the official x402 client
// (@x402/fetch with a viem local account) paying the 402 on its own.
const PAY_TO = "0x000000000000000000000000000000000000dEaD";
let gateway: Gateway;
let origin: Awaited<ReturnType<typeof startDemoOrigin>>;
let facilitator: Facilitator;

beforeAll(async () => {
  origin = await startDemoOrigin({ port: 0 });
  facilitator = await startFacilitator();
  const payments = {
    topup_cents: 500,
    x402: { facilitator_url: facilitator.url, network: "eip155:84532", asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e", pay_to: PAY_TO, rpc_url: facilitator.rpcUrl },
  };
  gateway = await startGateway({ vars: { ORIGIN_URL: origin.url, PAYMENTS: JSON.stringify(payments) } });
});
afterAll(async () => {
  await gateway?.stop();
  await origin?.close();
  await facilitator?.close();
});

describe("an agent with @x402/fetch against the gateway (happy)", () => {
  it("runs out of credit, pays the 402 on its own, is served, and is charged once", async () => {
    const { key } = await customerWithKey(gateway, "cus_e2e_x402", 1);
    const account = privateKeyToAccount(generatePrivateKey());
    facilitator.double.fund(account.address, 20_000_000n);
    const client = new x402Client().register("eip155:*", new ExactEvmScheme(account)).setSpendControls({ maxAmountPerPayment: "$10" });
    const pay = wrapFetchWithPayment((input: RequestInfo | URL, init?: RequestInit) => {
      const request = new Request(input, init);
      request.headers.set("authorization", `Bearer ${key}`);
      return fetch(request);
    }, client);

    const statuses: { status: number; balance: string | null; paid: boolean }[] = [];
    for (let i = 0; i < 4; i++) {
      const response = await pay(`${gateway.url}/hello`);
      statuses.push({ status: response.status, balance: response.headers.get("x-payg-balance-cents"), paid: response.headers.has("payment-response") });
      if (response.headers.has("payment-response")) {
        expect(decodePaymentResponseHeader(response.headers.get("payment-response")!)).toMatchObject({ success: true, network: "eip155:84532", payer: account.address });
      }
      await response.arrayBuffer();
    }
    // The first request spends the last cent; the second pays a $5.00 pack and is served from it.
    expect(statuses).toEqual([
      { status: 200, balance: "0", paid: false },
      { status: 200, balance: "499", paid: true },
      { status: 200, balance: "498", paid: false },
      { status: 200, balance: "497", paid: false },
    ]);
    expect(facilitator.double.transfers).toHaveLength(1);
    expect(facilitator.double.transfers[0]).toMatchObject({ from: account.address, to: PAY_TO, value: 5_000_000n });
    expect(facilitator.double.balanceOf(account.address)).toBe(15_000_000n);
    const summary = (await gateway.admin("GET", "/customers/cus_e2e_x402")).body;
    expect(summary.balance.available_exact_cents).toBe("497");
    const grants = (await gateway.admin("GET", "/customers/cus_e2e_x402/grants")).body.grants;
    expect(grants.filter((g: { source: string }) => g.source === "x402")).toEqual([expect.objectContaining({ amount_cents: 500, category: "paid" })]);
    expect((await gateway.admin("GET", "/status")).body.payments).toEqual({ x402: "on", mpp: null });
  });
});
