import type { AuthorizeResult } from "../../durable-objects/customer-account/contract";
import type { Config } from "../lib/config";
import { moneyRefusalBody, refusalResponse } from "../proxy/refusals";
import { offerBody, offerFor, offerHeaders } from "./offer";
import { acceptX402, type Paid, type PaidRequest } from "./x402/accept";
import { PAYMENT_RESPONSE, PAYMENT_SIGNATURE } from "./x402/wire";

export type { Paid } from "./x402/accept";

/** A request that carries a payment: its decision once the payment is credited; null for a request without one. */
export async function paidDecision(headers: Headers, request: PaidRequest): Promise<Paid | null> {
  const signature = headers.get(PAYMENT_SIGNATURE);
  if (signature !== null && request.config.PAYMENTS?.x402) return acceptX402(request, signature);
  return null;
}

/**
 * The 402 for a request the credit cannot pay for: the product's template body, plus, with agent
 * payments configured, the offer in its headers and in the body's `payment` field. A payment
 * just credited that still did not cover it (debt) says so in PAYMENT-RESPONSE.
 */
export async function payableRefusal(
  config: Config,
  decision: Extract<AuthorizeResult, { outcome: "insufficient_credit" | "payment_overdue" }>,
  url: string,
  requestId: string,
  paid: Paid | null,
): Promise<Response> {
  const offer = await offerFor(config, decision, url);
  // The product's refusal (its template or RFC 9457 problem, and its headers), with the offer added.
  const headers = new Headers(refusalResponse(config, requestId, decision).headers);
  for (const [name, value] of Object.entries(offerHeaders(offer))) headers.set(name, value);
  if (paid) headers.set(PAYMENT_RESPONSE, paid.header);
  return new Response(JSON.stringify({ ...moneyRefusalBody(config, decision, requestId).body, ...offerBody(offer) }), { status: 402, headers });
}

/** The settled payment's PAYMENT-RESPONSE on the request's answer, whatever it is. */
export function withPaymentResponse(response: Response, paid: Paid | null): Response {
  if (paid) response.headers.set(PAYMENT_RESPONSE, paid.header);
  return response;
}
