// An agent that pays the gateway's 402 on its own with the official x402 client (@x402/fetch and a
// viem local account): `node scripts/demo-x402-agent.mjs <api key> [url] [requests]`. Against
// `npm start -- --x402` it pays the facilitator double (no real money); X402_PRIVATE_KEY picks the wallet.
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";

const [key, url = "http://127.0.0.1:8787/hello", count = "5"] = process.argv.slice(2);
if (!key) throw new Error("usage: node scripts/demo-x402-agent.mjs <api key> [url] [requests]");

const account = privateKeyToAccount(process.env.X402_PRIVATE_KEY ?? generatePrivateKey());
// @x402/fetch pays at most $1 a payment unless told otherwise; the gateway sells $5 packs.
const client = new x402Client().register("eip155:*", new ExactEvmScheme(account)).setSpendControls({ maxAmountPerPayment: "$10" });
// The API key stays in Authorization; the payment goes in PAYMENT-SIGNATURE on the retry.
const pay = wrapFetchWithPayment((input, init) => {
  const request = new Request(input, init);
  request.headers.set("authorization", `Bearer ${key}`);
  return fetch(request);
}, client);

console.log(`agent wallet ${account.address}`);
for (let i = 0; i < Number(count); i++) {
  const response = await pay(url);
  const receipt = response.headers.get("payment-response");
  const paid = receipt ? decodePaymentResponseHeader(receipt) : null;
  console.log(
    `${response.status} charged ${response.headers.get("x-payg-charge-cents") ?? "-"} cents, balance ${response.headers.get("x-payg-balance-cents") ?? "-"}` +
      (paid ? `; paid the 402: ${paid.success ? `transaction ${paid.transaction || "(confirmed on chain)"}` : `refused (${paid.errorReason})`}` : ""),
  );
  await response.arrayBuffer();
}
