import { z } from "zod";
import { isLoopbackUrl } from "./loopback";
import { MAX_STRIPE_AMOUNT_CENTS } from "./money";

/*
 * [vars.PAYMENTS]: the rails an agent can pay a 402 on (docs/concepts/agent-payments.md). x402
 * pays an ERC-20 stablecoin transfer (EIP-3009) through a facilitator; the Payment HTTP
 * authentication scheme (MPP) pays with a Stripe Shared Payment Token.
 */

const remoteBase = z.url({ protocol: /^https?$/ }).refine((url) => url.startsWith("https:") || isLoopbackUrl(url), {
  message: "must be https (plain http only on loopback: localhost, 127.0.0.0/8, [::1])",
});
const address = z.string().regex(/^0x[0-9a-fA-F]{40}$/, "must be a 0x-prefixed 20-byte hex address");

const X402 = z.strictObject({
  facilitator_url: remoteBase.default("https://x402.org/facilitator"),
  /** CAIP-2, EVM only: eip155:<chain id>. */
  network: z.string().regex(/^eip155:[1-9][0-9]{0,15}$/, 'must be a CAIP-2 EVM network, "eip155:<chain id>"'),
  asset: address,
  pay_to: address,
  /** A read-only JSON-RPC endpoint of the network: asks whether an authorization was used when a settle's answer is lost. */
  rpc_url: remoteBase,
  /** The token's EIP-712 domain, sent in `extra`; built in for USDC on Base Sepolia and Base. */
  asset_name: z.string().min(1).max(100).optional(),
  asset_version: z.string().min(1).max(20).optional(),
  /** The client's authorization must be valid for at most this long (`maxTimeoutSeconds`). */
  max_timeout_seconds: z.int().min(30).max(3600).default(300),
  /** Per facilitator or RPC call. */
  timeout_ms: z.int().min(100).max(60_000).default(10_000),
  /** `pay_to` is a Stripe crypto deposit address: each payment is also recorded as a PaymentIntent. */
  record_in_stripe: z.boolean().default(false),
});

const Mpp = z.strictObject({
  realm: z.string().min(1).max(200),
  /** The Stripe Business Network profile the Shared Payment Tokens are granted to. */
  network_id: z.string().regex(/^profile_[A-Za-z0-9_]+$/, 'must be a Stripe profile id, "profile_…"'),
  payment_method_types: z
    .array(z.string().regex(/^[a-z_]{1,40}$/))
    .min(1)
    .default(["card"]),
  /** How long a challenge may be answered. */
  challenge_seconds: z.int().min(30).max(3600).default(300),
});

export const Payments = z.strictObject({
  /** The pack an agent buys (whole cents); default GOVERNANCE.checkout_min_cents; never less than the request's price. */
  topup_cents: z.int().min(1).max(MAX_STRIPE_AMOUNT_CENTS).optional(),
  x402: X402.optional(),
  mpp: Mpp.optional(),
});
export type PaymentsConfig = z.infer<typeof Payments>;
export type X402Config = z.infer<typeof X402>;
export type MppConfig = z.infer<typeof Mpp>;

/** USDC's EIP-712 domains, as the x402 reference client knows them (its defaultAssets). */
const KNOWN_ASSETS: Record<string, { name: string; version: string }> = {
  "eip155:84532/0x036cbd53842c5426634e7929541ec2318f3dcf7e": { name: "USDC", version: "2" },
  "eip155:8453/0x833589fcd6edb6e08f4c7c32d4f71b54bda02913": { name: "USD Coin", version: "2" },
};

/** The asset's EIP-712 domain name and version: configured, else built in; null when neither. */
export function assetDomain(x402: X402Config): { name: string; version: string } | null {
  const known = KNOWN_ASSETS[`${x402.network}/${x402.asset.toLowerCase()}`];
  const name = x402.asset_name ?? known?.name;
  const version = x402.asset_version ?? known?.version;
  return name !== undefined && version !== undefined ? { name, version } : null;
}

/**
 * Stripe's name for an EVM network (the `network` of a crypto payment, stripe-node's
 * `Charge.PaymentMethodDetails.Crypto.Network`), by chain id; null where Stripe records none.
 * Stripe names no testnets: its test mode is assumed to verify Base Sepolia as "base".
 */
export function stripeNetwork(caip2: string): string | null {
  const names: Record<string, string> = { "eip155:8453": "base", "eip155:84532": "base", "eip155:1": "ethereum", "eip155:137": "polygon" };
  return names[caip2] ?? null;
}

/** What the schema cannot say on its own. */
export function paymentsProblems(vars: {
  PAYMENTS?: PaymentsConfig | undefined;
  PRICING: { currency: string };
  GOVERNANCE: { checkout_max_cents: number };
  STRIPE_SECRET_KEY?: string | undefined;
  KEY_SIGNING_SECRET?: string | undefined;
}): string[] {
  const payments = vars.PAYMENTS;
  if (!payments) return [];
  const problems: string[] = [];
  if (payments.topup_cents !== undefined && payments.topup_cents > vars.GOVERNANCE.checkout_max_cents) {
    problems.push("PAYMENTS.topup_cents: must not exceed GOVERNANCE.checkout_max_cents");
  }
  if (payments.x402) {
    // USDC has 6 decimals: a cent is exactly 10,000 atomic units, so every amount converts without rounding.
    if (vars.PRICING.currency !== "usd") problems.push(`PAYMENTS.x402: needs PRICING.currency "usd" (the asset is a USD stablecoin), not "${vars.PRICING.currency}"`);
    if (!assetDomain(payments.x402)) problems.push("PAYMENTS.x402.asset_name and asset_version: required for an asset other than USDC on Base or Base Sepolia");
    if (payments.x402.record_in_stripe) {
      // The payment is recorded as a Stripe PaymentIntent (docs/design/x402-stripe-recording.md).
      if (!vars.STRIPE_SECRET_KEY) problems.push("PAYMENTS.x402.record_in_stripe: needs Stripe (STRIPE_SECRET_KEY): each payment is recorded as a Stripe PaymentIntent");
      if (!stripeNetwork(payments.x402.network))
        problems.push(`PAYMENTS.x402.record_in_stripe: Stripe records crypto payments on Base, Ethereum and Polygon only, not on ${payments.x402.network}`);
    }
  }
  if (payments.mpp) {
    // The Stripe method charges a Shared Payment Token with a PaymentIntent; the challenge id is a MAC under the signing secret.
    if (!vars.STRIPE_SECRET_KEY) problems.push("PAYMENTS.mpp: needs Stripe (STRIPE_SECRET_KEY): its payments are Stripe PaymentIntents");
    if (!vars.KEY_SIGNING_SECRET) problems.push("PAYMENTS.mpp: needs KEY_SIGNING_SECRET: challenge ids are MACs under a key derived from it");
  }
  return problems;
}
