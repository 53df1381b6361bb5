/**
 * Crypto PaymentIntents in `transaction_verification` mode: an on-chain payment that already
 * happened (an x402 settlement to a Stripe crypto deposit address), recorded by its transaction
 * hash. A Stripe preview: the request is the one Stripe's sample sends
 * (stripe-samples/machine-payments, x402/server/node-typescript/main.ts, Stripe-Version
 * 2026-05-27.preview):
 *
 *   POST /v1/payment_intents  amount, currency=usd, confirm=true, payment_method_data[type]=crypto,
 *     payment_method_types[]=crypto, payment_method_options[crypto][mode]=transaction_verification,
 *     payment_method_options[crypto][transaction_verification_options][network]=base,
 *     payment_method_options[crypto][transaction_verification_options][transaction_hash]=0x…
 *
 * stripe-node 23's published types have `payment_method_options.crypto` with `setup_future_usage`
 * only and no `mode`; the Charge's `payment_method_details.crypto` (`buyer_address`, `network`,
 * `token_currency`, `transaction_hash`) and `PaymentMethod.type` `crypto` are published, and are
 * what the double returns. stripe/openapi's fixtures (fixtures3.json, fixtures3.private_preview.json)
 * hold no crypto PaymentIntent.
 *
 * Choices of the double (Stripe documents none of these): the transaction is taken as verified (no
 * chain is read); the PaymentIntent succeeds at once with a succeeded Charge; the smallest amount
 * is 1 cent (the sample records $0.01 payments); a transaction hash already recorded by another
 * PaymentIntent is 400 `invalid_request_error` (not saved under an idempotency key, as validation
 * errors are not); a crypto charge can be refunded but not disputed (stablecoin payments have no
 * chargebacks).
 */
import type Stripe from "stripe";
import { chargeObject, chargeView } from "./charges";
import { applyMetadata, checkKnown, invalid, newId, type Params, readBoolean, readInt, readMetadata, readString } from "./common";
import { eventRequest, type RequestContext, type StripeState } from "./core";
import { MAX_AMOUNT } from "./payments";

const PARAMS = new Set(["amount", "currency", "confirm", "customer", "description", "metadata", "payment_method_data", "payment_method_types", "payment_method_options", "expand"]);
/** Stripe's crypto networks (stripe-node's Charge.PaymentMethodDetails.Crypto.Network). */
const NETWORKS = new Set(["base", "ethereum", "polygon", "solana", "sui", "tempo"]);
const OPTIONS = "payment_method_options[crypto][transaction_verification_options]";

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === "object" && !Array.isArray(v) ? (v as Obj) : {});

/** The request is a crypto PaymentIntent in transaction_verification mode. */
export function isCryptoVerification(params: Params): boolean {
  return obj(obj(params.payment_method_options).crypto).mode === "transaction_verification";
}

export function apiCreateCryptoPaymentIntent(state: StripeState, params: Params, ctx: RequestContext): Stripe.PaymentIntent {
  checkKnown(params, PARAMS);
  const amount = readInt(params, "amount", { required: true }) as number;
  if (amount < 1 || amount > MAX_AMOUNT) throw invalid(`Amount must be between 1 and ${MAX_AMOUNT} usd minor units`, { param: "amount" });
  if (readString(params, "currency", { required: true }) !== "usd") throw invalid("Crypto payments are recorded in usd.", { param: "currency" });
  const types = params.payment_method_types;
  if (!Array.isArray(types) || types.length !== 1 || types[0] !== "crypto")
    throw invalid("payment_method_types must be [crypto] in transaction_verification mode.", { param: "payment_method_types" });
  if (obj(params.payment_method_data).type !== "crypto") throw invalid("payment_method_data[type] must be crypto.", { param: "payment_method_data[type]" });
  if (readBoolean(params, "confirm") !== true) throw invalid("A transaction_verification PaymentIntent must be confirmed at creation.", { param: "confirm" });
  const options = obj(obj(obj(params.payment_method_options).crypto).transaction_verification_options);
  const network = options.network;
  if (typeof network !== "string" || !NETWORKS.has(network)) throw invalid(`Invalid network: must be one of ${[...NETWORKS].join(", ")}`, { param: `${OPTIONS}[network]` });
  const hash = options.transaction_hash;
  if (typeof hash !== "string" || !/^0x[0-9a-fA-F]{64}$/.test(hash)) throw invalid("Invalid transaction_hash.", { param: `${OPTIONS}[transaction_hash]` });
  const used = [...state.paymentIntents.values()].find((pi) => (pi.payment_method_options as Obj | null)?.crypto && cryptoHash(pi) === hash.toLowerCase());
  if (used) throw invalid(`The transaction ${hash} was already recorded by PaymentIntent ${used.id}.`, { param: `${OPTIONS}[transaction_hash]` });
  const customerId = readString(params, "customer");
  if (customerId) state.liveCustomer(customerId, 400, "customer");
  const metadata = readMetadata(params);

  const id = newId("pi_");
  const pm: Stripe.PaymentMethod = {
    id: newId("pm_"),
    object: "payment_method",
    allow_redisplay: "unspecified",
    billing_details: { address: null, email: null, name: null, phone: null, tax_id: null },
    created: state.nowSeconds(),
    crypto: {},
    customer: null,
    customer_account: null,
    livemode: false,
    metadata: {},
    type: "crypto",
  } as Stripe.PaymentMethod;
  state.paymentMethods.set(pm.id, pm);
  const pi = {
    id,
    object: "payment_intent",
    allowed_payment_method_types: null,
    amount,
    amount_capturable: 0,
    amount_details: { tip: {} },
    amount_received: amount,
    application: null,
    application_fee_amount: null,
    automatic_payment_methods: null,
    canceled_at: null,
    cancellation_reason: null,
    capture_method: "automatic",
    client_secret: `${id}_secret_${newId("", 25)}`,
    confirmation_method: "automatic",
    created: state.nowSeconds(),
    currency: "usd",
    customer: customerId ?? null,
    customer_account: null,
    description: readString(params, "description", { max: 1000 }) ?? null,
    excluded_payment_method_types: null,
    last_payment_error: null,
    latest_charge: null,
    livemode: false,
    managed_payments: null,
    metadata: metadata ? applyMetadata({}, metadata) : {},
    next_action: null,
    on_behalf_of: null,
    payment_method: pm.id,
    payment_method_configuration_details: null,
    // The preview's options, as sent (not in the published PaymentIntent type).
    payment_method_options: { crypto: { mode: "transaction_verification", transaction_verification_options: { network, transaction_hash: hash.toLowerCase() } } },
    payment_method_types: ["crypto"],
    payment_record: null,
    processing: null,
    receipt_email: null,
    review: null,
    setup_future_usage: null,
    shipping: null,
    source: null,
    statement_descriptor: null,
    statement_descriptor_suffix: null,
    status: "succeeded",
    transfer_data: null,
    transfer_group: null,
  } as unknown as Stripe.PaymentIntent;
  state.paymentIntents.set(id, pi);
  const charge = cryptoCharge(state, pi, pm, network, hash.toLowerCase());
  pi.latest_charge = charge.id;
  const request = eventRequest(ctx);
  state.emit("payment_intent.created", { ...pi, status: "processing", amount_received: 0, latest_charge: null }, undefined, request);
  state.emit("charge.succeeded", chargeView(charge), undefined, request);
  state.emit("payment_intent.succeeded", pi, undefined, request);
  return structuredClone(pi);
}

/** The transaction hash a crypto PaymentIntent recorded. */
export function cryptoHash(pi: Stripe.PaymentIntent): string | undefined {
  const options = (pi.payment_method_options as Obj | null)?.crypto as { transaction_verification_options?: { transaction_hash?: string } } | undefined;
  return options?.transaction_verification_options?.transaction_hash;
}

function cryptoCharge(state: StripeState, pi: Stripe.PaymentIntent, pm: Stripe.PaymentMethod, network: string, hash: string): Stripe.Charge {
  return chargeObject(state, pi, pm, {
    failure: null,
    outcome: null,
    details: { type: "crypto", crypto: { network, token_currency: "usdc", transaction_hash: hash } } as Stripe.Charge.PaymentMethodDetails,
  });
}
