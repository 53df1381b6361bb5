import type { AuthorizeResult, CustomerStub } from "../../../durable-objects/customer-account/contract";
import type { Config } from "../../lib/config";
import { ApiError, type ErrorCode } from "../../lib/errors";
import { once } from "../../proxy/once";
import { refusalResponse } from "../../proxy/refusals";
import { mppOffer, packCents, packDescription } from "../offer";
import { checkChallenge } from "./challenge";
import { chargeSharedPaymentToken } from "./charge";
import { encodeJson, PAYMENT_RECEIPT, PROBLEM_BASE, parseCredential, type Receipt, rfc3339, serializeChallenge, WWW_AUTHENTICATE } from "./wire";

type AuthorizeInput = Parameters<CustomerStub["authorize"]>[0];

export interface MppRequest {
  env: Env;
  config: Config;
  stub: CustomerStub;
  customerId: string;
  input: AuthorizeInput;
  requestId: string;
}

/** A request's decision after its payment, with the receipt its 2xx answer carries. */
export interface MppPaid {
  decision: AuthorizeResult;
  /** Only on a 2xx (the draft: never a receipt on an error response). */
  successHeaders: Record<string, string>;
}

/** The draft's problem types (§Error Codes), their titles and the house code each is answered with. */
const PROBLEMS = {
  "malformed-credential": { title: "Malformed Credential", code: "payment_invalid" },
  "invalid-challenge": { title: "Invalid Challenge", code: "payment_invalid" },
  "payment-expired": { title: "Payment Expired", code: "payment_invalid" },
  "payment-insufficient": { title: "Payment Insufficient", code: "payment_invalid" },
  "verification-failed": { title: "Verification Failed", code: "payment_failed" },
  "method-unsupported": { title: "Method Unsupported", code: "invalid_request" },
} as const satisfies Record<string, { title: string; code: ErrorCode }>;
export type Problem = keyof typeof PROBLEMS;

/**
 * A refused credential: an RFC 9457 problem of the draft's type, with a fresh challenge in
 * WWW-Authenticate on every 402 (the draft's status table), rendered by the product's refusals.
 */
async function problem(request: MppRequest, kind: Problem, detail: string, cents: number | null, challengeId?: string): Promise<Response> {
  const { title, code } = PROBLEMS[kind];
  const fresh = cents !== null && code !== "invalid_request" ? await mppOffer(request.config, cents, request.customerId) : undefined;
  return refusalResponse(request.config, request.requestId, {
    outcome: "payment",
    code,
    title,
    detail,
    problem: PROBLEM_BASE + kind,
    fields: challengeId ? { challengeId } : {},
    headers: { "cache-control": "no-store", ...(fresh ? { [WWW_AUTHENTICATE]: serializeChallenge(fresh) } : {}) },
  });
}

/**
 * The retried request with a Payment credential (Stripe method, charge intent): the challenge is
 * checked (binding, customer, expiry) before the token is touched; a challenge already paid is
 * refused, never charged again; the token is charged once per challenge (Stripe's idempotency
 * key is the challenge id), then the pack is credited as a paid grant and the request
 * authorized from it in one step in the customer's object. Returns the refusal as a Response.
 */
export async function acceptMpp(request: MppRequest, value: string): Promise<MppPaid | Response> {
  const { config, stub, input, customerId } = request;
  const priceMicros = input.hold ? input.hold.units * input.priceMicros : input.priceMicros;
  const cents = packCents(config, priceMicros);
  const credential = parseCredential(value);
  if (!credential)
    return problem(request, "malformed-credential", "The credential is not a Payment credential with a Shared Payment Token (base64url JSON: challenge, payload.spt).", cents);
  const { challenge } = credential;
  const checked = await checkChallenge(config, challenge, customerId);
  if (!checked.ok) return problem(request, checked.problem, checked.detail, cents, challenge.id);
  const amount = Number(checked.request.amount);
  if (cents === null) return problem(request, "invalid-challenge", "No payment is offered for this request.", null, challenge.id);
  if (amount < cents || checked.request.currency !== config.PRICING.currency) {
    return problem(
      request,
      "payment-insufficient",
      `This request's pack is ${cents} ${config.PRICING.currency} cents; the challenge was for ${amount} ${checked.request.currency}.`,
      cents,
      challenge.id,
    );
  }
  if ((await stub.paymentReceipt(challenge.id)) !== null) {
    return problem(request, "invalid-challenge", "This challenge was already paid and its pack credited to the account; nothing was charged again.", cents, challenge.id);
  }

  const slot = await stub.takeCheckoutSlot({ limit: config.GOVERNANCE.checkout_limit_per_hour, amountCents: amount });
  if (!slot.ok) {
    if ("balanceLimit" in slot) throw new ApiError("conflict", "This top-up would take the balance past the largest balance the gateway holds; nothing was charged.");
    throw new ApiError(
      "rate_limited",
      "Too many top-ups in the last hour; nothing was charged.",
      { retry_after_seconds: slot.retryAfterSeconds },
      { "retry-after": String(slot.retryAfterSeconds) },
    );
  }
  const charged = await chargeSharedPaymentToken(request.env, config, {
    customerId,
    challengeId: challenge.id,
    cents: amount,
    currency: config.PRICING.currency,
    spt: credential.payload.spt,
    description: packDescription(config, amount, customerId),
  });
  if (charged.status === "unavailable") {
    throw new ApiError("upstream_error", "Stripe did not answer the charge; retry with the same credential (it is charged at most once).", { challengeId: challenge.id });
  }
  if (charged.status === "declined") return problem(request, "verification-failed", `Stripe refused the payment (${charged.reason}); nothing was credited.`, cents, challenge.id);
  // The draft: only a succeeded PaymentIntent is served. Should this one succeed later, its
  // payment_intent.succeeded credits the pack (paid-grants.ts), once.
  if (charged.status === "pending") {
    return problem(
      request,
      "verification-failed",
      `Stripe has not completed the payment (${charged.reason}, ${charged.paymentIntent}); nothing was credited now. If it succeeds, the pack is credited to the account then.`,
      cents,
      challenge.id,
    );
  }

  const receipt: Receipt = { status: "success", method: "stripe", timestamp: rfc3339(Date.now()), reference: charged.paymentIntent };
  const result = await once(
    async (retry) =>
      await stub.payAndAuthorize({
        payment: {
          id: challenge.id,
          rail: "mpp",
          customerId,
          amountCents: amount,
          payer: credential.source ?? null,
          transaction: charged.paymentIntent,
          paymentIntent: charged.paymentIntent,
          receipt: JSON.stringify(receipt),
        },
        authorize: retry ? { ...input, retry } : input,
      }),
  );
  // The same credential sent twice at once: Stripe gave both the one PaymentIntent and the object
  // credited it once; the second was authorized from the balance already, so it is served too.
  return { decision: result.decision, successHeaders: { [PAYMENT_RECEIPT]: encodeJson(JSON.parse(result.receipt)), "cache-control": "private" } };
}
