import type { AuthorizeResult } from "../../durable-objects/customer-account/contract";
import type { Config } from "../lib/config";
import { moneyRefusalBody, refusalResponse } from "../proxy/refusals";
import { acceptMpp, type MppRequest } from "./mpp/accept";
import { credentialOf } from "./mpp/wire";
import { offerBody, offerFor, offerHeaders } from "./offer";
import { acceptX402 } from "./x402/accept";
import { PAYMENT_SIGNATURE } from "./x402/wire";

/** A request's decision once its payment was credited, and what its answer carries of the payment. */
export interface Paid {
  decision: AuthorizeResult;
  /** On every answer (x402's PAYMENT-RESPONSE). */
  headers: Record<string, string>;
  /** Only on a 2xx answer (the Payment auth scheme's receipt). */
  successHeaders: Record<string, string>;
}

/**
 * A request that carries a payment: its decision once the payment is credited, or the refusal of
 * the payment as a Response (a Payment credential's RFC 9457 problem); null for a request without one.
 */
export async function paidDecision(headers: Headers, request: MppRequest): Promise<Paid | Response | null> {
  const signature = headers.get(PAYMENT_SIGNATURE);
  if (signature !== null && request.config.PAYMENTS?.x402) {
    const paid = await acceptX402(request, signature);
    return { decision: paid.decision, headers: { "payment-response": paid.header }, successHeaders: {} };
  }
  const credential = request.config.PAYMENTS?.mpp ? credentialOf(headers) : null;
  if (credential !== null) {
    const paid = await acceptMpp(request, credential);
    return paid instanceof Response ? paid : { decision: paid.decision, headers: {}, successHeaders: paid.successHeaders };
  }
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
  for (const [name, value] of Object.entries(paid?.headers ?? {})) headers.set(name, value);
  return new Response(JSON.stringify({ ...moneyRefusalBody(config, decision, requestId).body, ...offerBody(offer) }), { status: 402, headers });
}

/** The payment's headers on the request's answer: PAYMENT-RESPONSE whatever it is, a Payment-Receipt on a 2xx. */
export function withPaymentResponse(response: Response, paid: Paid | null): Response {
  if (!paid) return response;
  const ok = response.status >= 200 && response.status < 300;
  for (const [name, value] of Object.entries({ ...paid.headers, ...(ok ? paid.successHeaders : {}) })) response.headers.set(name, value);
  return response;
}
