import { log } from "../../lib/log";
import type { X402Config } from "../../lib/payments-config";

/** keccak256("authorizationState(address,bytes32)")[0:4], EIP-3009's view of a used nonce. */
const AUTHORIZATION_STATE = "0xe94a0102";

/**
 * Whether the asset has used the authorization's nonce (EIP-3009 `authorizationState(from,
 * nonce)`, an eth_call through PAYMENTS.x402.rpc_url): what the worker asks when a settle's
 * answer was lost, rather than settling again. Null when the chain could not be asked.
 */
export async function authorizationUsed(x402: X402Config, from: string, nonce: string): Promise<boolean | null> {
  const data = AUTHORIZATION_STATE + from.slice(2).toLowerCase().padStart(64, "0") + nonce.slice(2).toLowerCase();
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const response = await fetch(x402.rpc_url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_call", params: [{ to: x402.asset, data }, "latest"] }),
        signal: AbortSignal.timeout(x402.timeout_ms),
      });
      const body = (await response.json().catch(() => null)) as { result?: unknown } | null;
      if (response.ok && typeof body?.result === "string" && /^0x[0-9a-fA-F]{64}$/.test(body.result)) return BigInt(body.result) !== 0n;
      log.warn(`x402 authorizationState: ${response.status} ${JSON.stringify(body)}`);
    } catch (error) {
      log.warn("x402 authorizationState failed", error);
    }
  }
  return null;
}
