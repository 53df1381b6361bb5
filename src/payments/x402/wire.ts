import { z } from "zod";
import { assetDomain, type X402Config } from "../../lib/payments-config";

/*
 * x402 v2 on the wire (coinbase/x402 specs/x402-specification-v2.md, transports-v2/http.md,
 * schemes/exact/scheme_exact_evm.md): PAYMENT-REQUIRED, PAYMENT-SIGNATURE and PAYMENT-RESPONSE are
 * base64 (standard alphabet, padded) of JSON. The worker checks fields; the facilitator checks
 * the signature.
 */

export const PAYMENT_REQUIRED = "PAYMENT-REQUIRED";
export const PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE";
export const PAYMENT_RESPONSE = "PAYMENT-RESPONSE";
/** USDC (and any asset this rail takes) has 6 decimals: a cent is 10,000 atomic units. */
export const ATOMIC_PER_CENT = 10_000n;
/** What the reference facilitator requires of validBefore past now: one block. */
const BLOCK_BUFFER_SECONDS = 6;

export interface PaymentRequirements {
  scheme: "exact";
  network: string;
  amount: string;
  asset: string;
  payTo: string;
  maxTimeoutSeconds: number;
  extra: { name: string; version: string };
}

export interface PaymentRequired {
  x402Version: 2;
  error?: string;
  resource: { url: string; description: string; mimeType: string };
  accepts: PaymentRequirements[];
}

export interface SettlementResponse {
  success: boolean;
  transaction: string;
  network: string;
  payer?: string;
  errorReason?: string;
  errorMessage?: string;
}

const hex = (bytes: number) => z.string().regex(new RegExp(`^0x[0-9a-fA-F]{${bytes * 2}}$`));
const uint = z.string().regex(/^(0|[1-9][0-9]{0,77})$/);

const ExactEvmPayload = z.looseObject({
  x402Version: z.number(),
  resource: z.looseObject({ url: z.string() }).optional(),
  accepted: z.looseObject({
    scheme: z.string(),
    network: z.string(),
    amount: z.string(),
    asset: z.string(),
    payTo: z.string(),
    maxTimeoutSeconds: z.number().optional(),
    extra: z.record(z.string(), z.unknown()).optional(),
  }),
  // Forwarded to the facilitator as sent: nothing is stripped.
  payload: z.looseObject({
    signature: z.string().regex(/^0x[0-9a-fA-F]+$/),
    authorization: z.looseObject({ from: hex(20), to: hex(20), value: uint, validAfter: uint, validBefore: uint, nonce: hex(32) }),
  }),
  extensions: z.record(z.string(), z.unknown()).optional(),
});
export type PaymentPayload = z.infer<typeof ExactEvmPayload>;

export function encodeHeader(value: unknown): string {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

function decodeHeader(value: string): unknown {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value)) return undefined;
  try {
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(value), (c) => c.charCodeAt(0))));
  } catch {
    return undefined;
  }
}

/** A PAYMENT-SIGNATURE header (or an MCP `_meta["x402/payment"]` object): the payload, or null when it is not one. */
export function parsePayment(value: string | object): PaymentPayload | null {
  const parsed = ExactEvmPayload.safeParse(typeof value === "string" ? decodeHeader(value.trim()) : value);
  return parsed.success ? parsed.data : null;
}

/** The one requirement the gateway offers for a pack of `cents`. */
export function requirementsFor(x402: X402Config, cents: number): PaymentRequirements {
  return {
    scheme: "exact",
    network: x402.network,
    amount: (BigInt(cents) * ATOMIC_PER_CENT).toString(),
    asset: x402.asset,
    payTo: x402.pay_to,
    maxTimeoutSeconds: x402.max_timeout_seconds,
    extra: assetDomain(x402)!,
  };
}

const sameAddress = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/**
 * Why a payload does not pay what was offered, as the x402 error reason (spec §9), or null when
 * it matches: scheme, network, asset, recipient, amount and time bounds, before anything is
 * settled. The signature is the facilitator's to check.
 */
export function mismatch(payment: PaymentPayload, offered: PaymentRequirements, nowSeconds: number): string | null {
  const { accepted } = payment;
  const auth = payment.payload.authorization;
  if (payment.x402Version !== 2) return "invalid_x402_version";
  if (accepted.scheme !== offered.scheme) return "invalid_scheme";
  if (accepted.network !== offered.network) return "invalid_network";
  if (!sameAddress(accepted.asset, offered.asset)) return "invalid_payment_requirements";
  if (!sameAddress(accepted.payTo, offered.payTo) || !sameAddress(auth.to, offered.payTo)) return "invalid_exact_evm_payload_recipient_mismatch";
  if (accepted.amount !== offered.amount || BigInt(auth.value) !== BigInt(offered.amount)) return "invalid_exact_evm_payload_authorization_value_mismatch";
  const validBefore = BigInt(auth.validBefore);
  // Within the window offered (a minute of clock skew), and not about to lapse before it settles.
  if (validBefore < BigInt(nowSeconds + BLOCK_BUFFER_SECONDS) || validBefore > BigInt(nowSeconds + offered.maxTimeoutSeconds + 60)) {
    return "invalid_exact_evm_payload_authorization_valid_before";
  }
  if (BigInt(auth.validAfter) > BigInt(nowSeconds)) return "invalid_exact_evm_payload_authorization_valid_after";
  return null;
}

/** The payment's id: the EIP-3009 authorization, which the asset lets be used once. */
export function paymentId(payment: PaymentPayload): string {
  const auth = payment.payload.authorization;
  return `${payment.accepted.network}:${payment.accepted.asset.toLowerCase()}:${auth.from.toLowerCase()}:${auth.nonce.toLowerCase()}`;
}

/** Whole cents of an atomic amount the offer made (always a whole number of cents). */
export function centsOf(amount: string): number {
  return Number(BigInt(amount) / ATOMIC_PER_CENT);
}
