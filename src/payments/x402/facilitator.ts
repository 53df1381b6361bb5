import { log } from "../../lib/log";
import type { X402Config } from "../../lib/payments-config";
import type { PaymentPayload, PaymentRequirements, SettlementResponse } from "./wire";

/*
 * The facilitator's HTTP API (x402 v2 spec §7): POST /verify and /settle with {x402Version,
 * paymentPayload, paymentRequirements}; GET /supported. A refusal may come as a 200 or a 4xx
 * carrying `isValid: false` / `success: false`; anything else is an answer the worker does not have.
 */

export type Verified = { valid: true; payer: string | null } | { valid: false; reason: string; payer: string | null } | { valid: null };
export type Settled = { settled: true; response: SettlementResponse } | { settled: false; response: SettlementResponse } | { settled: null };

async function post(x402: X402Config, path: "verify" | "settle", payment: PaymentPayload, requirements: PaymentRequirements): Promise<Record<string, unknown> | null> {
  try {
    const response = await fetch(`${x402.facilitator_url.replace(/\/$/, "")}/${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ x402Version: payment.x402Version, paymentPayload: payment, paymentRequirements: requirements }),
      signal: AbortSignal.timeout(x402.timeout_ms),
    });
    if (response.status >= 500) return null;
    const body = (await response.json().catch(() => null)) as Record<string, unknown> | null;
    return body && typeof body === "object" ? body : null;
  } catch (error) {
    log.warn(`x402 facilitator ${path} failed`, error);
    return null;
  }
}

export async function verify(x402: X402Config, payment: PaymentPayload, requirements: PaymentRequirements): Promise<Verified> {
  const body = await post(x402, "verify", payment, requirements);
  if (!body || typeof body.isValid !== "boolean") return { valid: null };
  const payer = typeof body.payer === "string" ? body.payer : null;
  return body.isValid ? { valid: true, payer } : { valid: false, reason: typeof body.invalidReason === "string" ? body.invalidReason : "invalid_payload", payer };
}

export async function settle(x402: X402Config, payment: PaymentPayload, requirements: PaymentRequirements): Promise<Settled> {
  const body = await post(x402, "settle", payment, requirements);
  if (!body || typeof body.success !== "boolean") return { settled: null };
  const response: SettlementResponse = {
    success: body.success,
    transaction: typeof body.transaction === "string" ? body.transaction : "",
    network: typeof body.network === "string" ? body.network : requirements.network,
    ...(typeof body.payer === "string" ? { payer: body.payer } : {}),
    ...(typeof body.errorReason === "string" ? { errorReason: body.errorReason } : {}),
  };
  // A success without a transaction hash is not one the worker can record.
  if (response.success && !/^0x[0-9a-fA-F]{64}$/.test(response.transaction)) return { settled: null };
  return response.success ? { settled: true, response } : { settled: false, response };
}

/** Whether the facilitator settles the configured scheme and network; "unchecked" until first asked. */
export type RailState = { on: true } | { on: false; reason: string };

const RETRY_AFTER_FAILURE_MS = 60_000;
const states = new Map<string, { state: Promise<RailState>; until: number }>();

/**
 * A Worker has no start-up phase that can fetch: /supported is read on first use in each
 * isolate and kept. A facilitator that cannot be reached is asked again a minute later; one
 * that does not list exact on the network turns the rail off for the isolate (logged once).
 */
export function railState(x402: X402Config, now = Date.now()): Promise<RailState> {
  const id = `${x402.facilitator_url} ${x402.network}`;
  const known = states.get(id);
  if (known && known.until > now) return known.state;
  const state = readSupported(x402).then((result) => {
    if (!result.on) log.error(`x402 is off: ${result.reason}`);
    if ("retry" in result) states.set(id, { state, until: Date.now() + RETRY_AFTER_FAILURE_MS });
    return result.on ? { on: true as const } : { on: false as const, reason: result.reason };
  });
  states.set(id, { state, until: Number.POSITIVE_INFINITY });
  return state;
}

async function readSupported(x402: X402Config): Promise<{ on: true } | { on: false; reason: string; retry?: true }> {
  const url = `${x402.facilitator_url.replace(/\/$/, "")}/supported`;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(x402.timeout_ms) });
    if (!response.ok) return { on: false, reason: `${url} answered ${response.status}`, retry: true };
    const body = (await response.json()) as { kinds?: { x402Version?: unknown; scheme?: unknown; network?: unknown }[] };
    const listed = Array.isArray(body.kinds) && body.kinds.some((k) => k.x402Version === 2 && k.scheme === "exact" && k.network === x402.network);
    return listed ? { on: true } : { on: false, reason: `the facilitator ${x402.facilitator_url} does not list x402 v2 "exact" on ${x402.network}` };
  } catch (error) {
    return { on: false, reason: `${url} could not be read (${error instanceof Error ? error.message : String(error)})`, retry: true };
  }
}
