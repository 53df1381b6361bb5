import type { AuthorizeResult, CustomerStub } from "../../../durable-objects/customer-account/contract";
import type { Config } from "../../lib/config";
import { ApiError } from "../../lib/errors";
import { log } from "../../lib/log";
import { stripeNetwork } from "../../lib/payments-config";
import { once } from "../../proxy/once";
import { packCents } from "../offer";
import { authorizationUsed } from "./chain";
import { railState, settle, verify } from "./facilitator";
import { centsOf, encodeHeader, mismatch, PAYMENT_RESPONSE, type PaymentPayload, parsePayment, paymentId, requirementsFor, type SettlementResponse } from "./wire";

type AuthorizeInput = Parameters<CustomerStub["authorize"]>[0];

export interface PaidRequest {
  config: Config;
  stub: CustomerStub;
  customerId: string;
  /** The request's authorize input; its price (per unit times units held) prices the pack. */
  input: AuthorizeInput;
}

/** The request's decision after its payment, and the PAYMENT-RESPONSE its answer carries. */
export interface Paid {
  decision: AuthorizeResult;
  /** The settlement response, as a header value and as JSON (MCP's `_meta["x402/payment-response"]`). */
  header: string;
  settlement: SettlementResponse;
}

/** A refusal of the payment: the product's error envelope and the x402 reason in PAYMENT-RESPONSE. */
function refused(code: "payment_invalid" | "payment_failed" | "invalid_request", message: string, response: SettlementResponse, details: Record<string, unknown> = {}): ApiError {
  return new ApiError(code, message, { reason: response.errorReason, ...details }, { [PAYMENT_RESPONSE]: encodeHeader(response), "cache-control": "no-store" });
}

const failure = (network: string, errorReason: string, payer?: string): SettlementResponse => ({
  success: false,
  transaction: "",
  network,
  errorReason,
  ...(payer ? { payer } : {}),
});

/**
 * The retried request with an x402 payment (PAYMENT-SIGNATURE, or MCP's `_meta["x402/payment"]`):
 * checked against the pack this request is offered, verified and settled by the facilitator,
 * then credited and the request authorized from it in the customer's object, in one step.
 * Exactly once: a payment already credited replays its first receipt; a settle whose answer is
 * lost is not repeated, the chain is asked whether the authorization was used.
 */
export async function acceptX402(request: PaidRequest, sent: string | object): Promise<Paid> {
  const { config, stub, input } = request;
  const x402 = config.PAYMENTS?.x402;
  if (!x402) throw new ApiError("invalid_request", "This gateway takes no x402 payments.");
  const payment = parsePayment(sent);
  if (!payment) throw refused("invalid_request", 'The payment is not an x402 v2 "exact" EVM payload.', failure(x402.network, "invalid_payload"));
  const priceMicros = input.hold ? input.hold.units * input.priceMicros : input.priceMicros;
  const cents = packCents(config, priceMicros);
  if (cents === null) throw refused("payment_invalid", "No payment is offered for this request.", failure(x402.network, "invalid_payment_requirements"));
  const offered = requirementsFor(x402, cents);
  const id = paymentId(payment);
  const payer = payment.payload.authorization.from;

  const known = await stub.paymentReceipt(id);
  if (known !== null) return paid(await once(async (retry) => await stub.authorize(retry ? { ...input, retry } : input)), known);

  const reason = mismatch(payment, offered, Math.floor(Date.now() / 1000));
  if (reason) throw refused("payment_invalid", `The payment does not match what was offered (${reason}); nothing was settled.`, failure(x402.network, reason, payer), { offered });
  const rail = await railState(x402);
  if (!rail.on) throw refused("payment_invalid", "x402 payments are off on this gateway.", failure(x402.network, "unsupported_scheme", payer));
  const slot = await stub.takeCheckoutSlot({ limit: config.GOVERNANCE.checkout_limit_per_hour, amountCents: cents });
  if (!slot.ok) {
    if ("balanceLimit" in slot) throw new ApiError("conflict", "This top-up would take the balance past the largest balance the gateway holds; nothing was settled.");
    throw new ApiError(
      "rate_limited",
      "Too many top-ups in the last hour; nothing was settled.",
      { retry_after_seconds: slot.retryAfterSeconds },
      { "retry-after": String(slot.retryAfterSeconds) },
    );
  }

  const verified = await verify(x402, payment, offered);
  if (verified.valid === null) throw new ApiError("upstream_error", "The x402 facilitator could not verify the payment; nothing was settled. Retry with the same payment.");
  if (!verified.valid)
    throw refused("payment_invalid", `The facilitator refused the payment (${verified.reason}); nothing was settled.`, failure(x402.network, verified.reason, payer));

  const settlement = await settled(x402, payment, offered);
  const result = await once(
    async (retry) =>
      await stub.payAndAuthorize({
        payment: {
          id,
          rail: "x402",
          customerId: request.customerId,
          amountCents: centsOf(offered.amount),
          payer,
          transaction: settlement.transaction || null,
          receipt: JSON.stringify(settlement),
          stripeNetwork: x402.record_in_stripe ? stripeNetwork(x402.network) : null,
        },
        authorize: retry ? { ...input, retry } : input,
      }),
  );
  return paid(result.decision, result.receipt);
}

/** The settlement: the facilitator's, or, when its answer was lost, the chain's word that the authorization was used. */
async function settled(
  x402: NonNullable<NonNullable<Config["PAYMENTS"]>["x402"]>,
  payment: PaymentPayload,
  offered: ReturnType<typeof requirementsFor>,
): Promise<SettlementResponse> {
  const payer = payment.payload.authorization.from;
  const answer = await settle(x402, payment, offered);
  if (answer.settled === true) return answer.response;
  if (answer.settled === false) {
    throw refused("payment_failed", `The facilitator could not settle the payment (${answer.response.errorReason ?? "unknown"}).`, { ...answer.response, payer });
  }
  // Settling again could pay twice or fail on a nonce the first attempt used: ask the asset instead.
  const used = await authorizationUsed(x402, payer, payment.payload.authorization.nonce);
  if (used === true) return { success: true, transaction: "", network: x402.network, payer };
  if (used === false)
    throw refused("payment_failed", "The payment was not settled; nothing was taken. Retry with the same payment.", failure(x402.network, "unexpected_settle_error", payer));
  // Not credited on the chance it settled: a used nonce alone cannot prove this authorization used it.
  log.error(
    `x402 payment ${paymentId(payment)} of ${offered.amount} atomic units: the settle answer was lost and the chain could not be asked; check the payer's transfers to ${offered.payTo} and credit it by hand if it settled`,
  );
  throw new ApiError(
    "payment_unconfirmed",
    "The payment's settlement could not be confirmed and nothing was credited; the operator has been told. Do not pay again before the operator confirms it.",
    {
      payment_id: paymentId(payment),
    },
  );
}

function paid(decision: AuthorizeResult, receipt: string): Paid {
  return { decision, header: encodeHeader(JSON.parse(receipt)), settlement: JSON.parse(receipt) as SettlementResponse };
}
