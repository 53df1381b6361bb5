/**
 * An x402 facilitator and the chain it settles on, as a test double at the HTTP boundary.
 *
 * Framework-agnostic like the Stripe double: `handle(request)` takes a web-standard `Request`,
 * so it serves workerd tests through MSW and end-to-end tests behind `serveHandler`.
 *
 * Built from the x402 v2 specification (coinbase/x402 specs/x402-specification-v2.md §7 and
 * specs/schemes/exact/scheme_exact_evm.md) and as strict as the reference facilitator
 * (@x402/evm src/exact/facilitator/eip3009.ts), in its order:
 * - `GET /supported`: `{kinds: [{x402Version: 2, scheme: "exact", network}], extensions, signers}`.
 * - `POST /verify` and `POST /settle` take `{x402Version, paymentPayload, paymentRequirements}`.
 *   Verify checks the scheme, the EIP-712 domain in `extra`, the network, the
 *   TransferWithAuthorization signature (the signer recovered with viem must be `from`), the
 *   recipient, `validBefore >= now + 6`, `validAfter <= now`, the value, the payer's balance and an
 *   unused nonce; it answers 200 `{isValid, invalidReason?, payer}`. Settle verifies again, then
 *   uses the nonce once and moves the balance: 200 `{success, transaction, network, payer}`, or
 *   `{success: false, errorReason, transaction: ""}`.
 * - A JSON-RPC endpoint of the chain (`rpcUrl`): `eth_call` of EIP-3009 `authorizationState(address,
 *   bytes32)` (selector 0xe94a0102) on the asset answers one ABI word, true once the nonce is used.
 *
 * Faults (`inject(path, kind)`, each firing once): `500` (nothing done), `timeout` (no answer
 * until the request aborts), `lost_after_commit` (the settle commits, then its answer is lost: a
 * 500 and, with `hang`, no answer at all).
 */
import { getAddress, verifyTypedData } from "viem";

const AUTHORIZATION_TYPES = {
  TransferWithAuthorization: [
    { name: "from", type: "address" },
    { name: "to", type: "address" },
    { name: "value", type: "uint256" },
    { name: "validAfter", type: "uint256" },
    { name: "validBefore", type: "uint256" },
    { name: "nonce", type: "bytes32" },
  ],
} as const;

type Fault = "500" | "timeout" | "lost_after_commit";
type Hex = `0x${string}`;
interface Authorization {
  from: Hex;
  to: Hex;
  value: string;
  validAfter: string;
  validBefore: string;
  nonce: Hex;
}
interface Body {
  x402Version?: number;
  paymentPayload?: { x402Version?: number; accepted?: Record<string, unknown>; payload?: { signature?: Hex; authorization?: Authorization } };
  paymentRequirements?: { scheme?: string; network?: string; amount?: string; asset?: string; payTo?: string; extra?: { name?: string; version?: string } };
}

export class FacilitatorDouble {
  readonly network: string;
  readonly asset: string;
  readonly rpcUrl: string;
  /** Settled transfers, in order. */
  readonly transfers: { transaction: string; from: string; to: string; value: bigint }[] = [];
  /** Calls by path: /verify, /settle, /supported, eth_call. */
  readonly calls: Record<string, number> = {};
  private readonly used = new Set<string>();
  private readonly balances = new Map<string, bigint>();
  private readonly faults: { path: string; kind: Fault }[] = [];
  /** Seconds; tests move it. */
  now = () => Math.floor(Date.now() / 1000);

  /** Atomic units every payer starts with (`npm start -- --x402` is a faucet); tests fund payers one by one. */
  private readonly faucet: bigint;

  constructor(options: { network: string; asset: string; rpcUrl: string; supported?: boolean; faucet?: bigint }) {
    this.faucet = options.faucet ?? 0n;
    this.network = options.network;
    this.asset = options.asset;
    this.rpcUrl = options.rpcUrl;
    this.supported = options.supported ?? true;
  }

  supported: boolean;

  /** Gives `address` this many atomic units of the asset (payers without one have none). */
  fund(address: string, atomic: bigint): void {
    this.balances.set(address.toLowerCase(), (this.balances.get(address.toLowerCase()) ?? 0n) + atomic);
  }

  balanceOf(address: string): bigint {
    return this.balances.get(address.toLowerCase()) ?? this.faucet;
  }

  inject(path: "/verify" | "/settle" | "/supported" | "eth_call", kind: Fault): void {
    this.faults.push({ path, kind });
  }

  clearFaults(): void {
    this.faults.length = 0;
  }

  async handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.href.startsWith(this.rpcUrl)) return this.rpc(request);
    const path = url.pathname.replace(/^.*(\/(verify|settle|supported))$/, "$1");
    this.calls[path] = (this.calls[path] ?? 0) + 1;
    const fault = this.takeFault(path);
    if (fault === "500") return Response.json({ error: "injected" }, { status: 500 });
    if (fault === "timeout") return this.never(request);
    if (path === "/supported" && request.method === "GET") {
      return Response.json({
        kinds: this.supported ? [{ x402Version: 2, scheme: "exact", network: this.network }] : [],
        extensions: [],
        signers: { "eip155:*": ["0x000000000000000000000000000000000000fac1"] },
      });
    }
    if (request.method !== "POST" || (path !== "/verify" && path !== "/settle")) return Response.json({ error: "not found" }, { status: 404 });
    const body = (await request.json().catch(() => null)) as Body | null;
    if (!body?.paymentPayload || !body.paymentRequirements) return Response.json({ isValid: false, invalidReason: "invalid_payload" }, { status: 400 });
    const reason = await this.check(body);
    const payer = body.paymentPayload.payload?.authorization?.from;
    if (path === "/verify") return Response.json(reason ? { isValid: false, invalidReason: reason, ...(payer ? { payer } : {}) } : { isValid: true, payer });
    if (reason) return Response.json({ success: false, errorReason: reason, transaction: "", network: body.paymentRequirements.network ?? "", ...(payer ? { payer } : {}) });
    const auth = body.paymentPayload.payload!.authorization!;
    const transaction = `0x${[...crypto.getRandomValues(new Uint8Array(32))].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
    this.used.add(this.nonceKey(auth.from, auth.nonce));
    this.balances.set(auth.from.toLowerCase(), this.balanceOf(auth.from) - BigInt(auth.value));
    this.fund(auth.to, BigInt(auth.value));
    this.transfers.push({ transaction, from: auth.from, to: auth.to, value: BigInt(auth.value) });
    if (fault === "lost_after_commit") return Response.json({ error: "lost" }, { status: 502 });
    return Response.json({ success: true, transaction, network: this.network, payer: auth.from });
  }

  /** The reference facilitator's checks, in its order; null when the payment is valid. */
  private async check(body: Body): Promise<string | null> {
    const payment = body.paymentPayload!;
    const requirements = body.paymentRequirements!;
    const auth = payment.payload?.authorization;
    const signature = payment.payload?.signature;
    if (payment.x402Version !== 2) return "invalid_x402_version";
    if (payment.accepted?.scheme !== "exact" || requirements.scheme !== "exact") return "unsupported_scheme";
    if (!requirements.extra?.name || !requirements.extra.version) return "invalid_exact_evm_missing_eip712_domain";
    if (payment.accepted?.network !== requirements.network || requirements.network !== this.network) return "invalid_network";
    if (!auth || !signature) return "invalid_payload";
    if (!requirements.asset || requirements.asset.toLowerCase() !== this.asset.toLowerCase()) return "invalid_payment_requirements";
    const chainId = Number(this.network.split(":")[1]);
    let signed = false;
    try {
      signed = await verifyTypedData({
        address: auth.from,
        domain: { name: requirements.extra.name, version: requirements.extra.version, chainId, verifyingContract: getAddress(requirements.asset) },
        types: AUTHORIZATION_TYPES,
        primaryType: "TransferWithAuthorization",
        message: { from: auth.from, to: auth.to, value: BigInt(auth.value), validAfter: BigInt(auth.validAfter), validBefore: BigInt(auth.validBefore), nonce: auth.nonce },
        signature,
      });
    } catch {
      signed = false;
    }
    if (!signed) return "invalid_exact_evm_payload_signature";
    if (!requirements.payTo || getAddress(auth.to) !== getAddress(requirements.payTo)) return "invalid_exact_evm_payload_recipient_mismatch";
    if (BigInt(auth.validBefore) < BigInt(this.now() + 6)) return "invalid_exact_evm_payload_authorization_valid_before";
    if (BigInt(auth.validAfter) > BigInt(this.now())) return "invalid_exact_evm_payload_authorization_valid_after";
    if (BigInt(auth.value) !== BigInt(requirements.amount ?? "-1")) return "invalid_exact_evm_payload_authorization_value_mismatch";
    if (this.used.has(this.nonceKey(auth.from, auth.nonce))) return "invalid_exact_evm_nonce_already_used";
    if (this.balanceOf(auth.from) < BigInt(auth.value)) return "insufficient_funds";
    return null;
  }

  private async rpc(request: Request): Promise<Response> {
    const body = (await request.json()) as { id?: number; method?: string; params?: [{ to?: string; data?: string }, string] };
    this.calls.eth_call = (this.calls.eth_call ?? 0) + 1;
    const fault = this.takeFault("eth_call");
    if (fault === "500") return new Response("injected", { status: 500 });
    if (fault === "timeout") return this.never(request);
    const call = body.params?.[0];
    const data = call?.data ?? "";
    if (body.method !== "eth_call" || call?.to?.toLowerCase() !== this.asset.toLowerCase() || !/^0xe94a0102[0-9a-f]{128}$/.test(data)) {
      return Response.json({ jsonrpc: "2.0", id: body.id ?? null, error: { code: -32000, message: "execution reverted" } });
    }
    const from = `0x${data.slice(10 + 24, 10 + 64)}`;
    const nonce = `0x${data.slice(10 + 64)}`;
    const used = this.used.has(this.nonceKey(from, nonce));
    return Response.json({ jsonrpc: "2.0", id: body.id ?? null, result: `0x${(used ? "1" : "0").padStart(64, "0")}` });
  }

  private nonceKey(from: string, nonce: string): string {
    return `${from.toLowerCase()}/${nonce.toLowerCase()}`;
  }

  private takeFault(path: string): Fault | undefined {
    const index = this.faults.findIndex((f) => f.path === path);
    return index === -1 ? undefined : this.faults.splice(index, 1)[0]!.kind;
  }

  private never(request: Request): Promise<Response> {
    return new Promise((_resolve, reject) => request.signal.addEventListener("abort", () => reject(new Error("aborted"))));
  }
}
