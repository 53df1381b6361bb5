import { Mppx, stripe as stripeMethod } from "mppx/client";
import { expect } from "vitest";
import type { FaultKind, StripeDouble } from "../../doubles/stripe-double";
import { admin, gatewayWith, withKey } from "../helpers";
import { connect, deliverAll } from "./doubles";

export const REALM = "gateway.test";
export const NETWORK_ID = "profile_test_gateway";
export const MPP_BINDINGS = { PAYMENTS: { topup_cents: 500, mpp: { realm: REALM, network_id: NETWORK_ID } } };

export function mppCall(bindings: Record<string, unknown> = MPP_BINDINGS) {
  return (key: string, init: RequestInit = {}, path = "/v1/x") => gatewayWith(bindings, path, withKey(key, init));
}

/** A Stripe customer with an API key and no credit. */
export async function brokeCustomer(stripe: StripeDouble) {
  const customer = stripe.createCustomer({ email: "ada@example.com", name: "Ada Lovelace" });
  await deliverAll(stripe);
  const key = (await admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
  return { id: customer.id, key };
}

/**
 * mppx's client (the Payment auth scheme's reference SDK) in front of the worker: it reads the
 * 402's challenge, asks its wallet for a Shared Payment Token (here the Stripe double grants one,
 * limited to the challenge's amount and expiry, as an agent's wallet would) and retries with the
 * credential in the header the challenge names.
 */
export function mppFetch(stripe: StripeDouble, key: string, options: { paymentMethod?: string; bindings?: Record<string, unknown> } = {}) {
  const tokens: string[] = [];
  const mppx = Mppx.create({
    polyfill: false,
    maxPaymentRetries: 1,
    fetch: async (input: RequestInfo | URL, init?: RequestInit) => {
      const request = new Request(input, init);
      const url = new URL(request.url);
      const headers = new Headers(request.headers);
      headers.set("authorization", `Bearer ${key}`);
      return gatewayWith(options.bindings ?? MPP_BINDINGS, url.pathname + url.search, { method: request.method, headers });
    },
    methods: [
      stripeMethod.charge({
        paymentMethod: options.paymentMethod ?? "pm_card_visa",
        createToken: async ({ amount, currency, expiresAt, paymentMethod }) => {
          const token = stripe.grantSharedPaymentToken({ paymentMethod, currency, maxAmount: Number(amount), expiresAt });
          tokens.push(token.id);
          return token.id;
        },
      }),
    ],
  });
  return { fetch: (path = "/v1/x") => mppx.fetch(`http://gateway.test${path}`), tokens };
}

/** The auth-params of a `WWW-Authenticate: Payment …` value. */
export function challengeOf(response: Response): Record<string, string> {
  const header = response.headers.get("www-authenticate");
  if (!header) throw new Error(`no WWW-Authenticate on a ${response.status}`);
  const params: Record<string, string> = {};
  for (const m of header.replace(/^Payment\s+/, "").matchAll(/([a-z]+)="((?:[^"\\]|\\.)*)"/g)) params[m[1]!] = m[2]!.replace(/\\(.)/g, "$1");
  return params;
}

export const b64url = (value: unknown) => btoa(JSON.stringify(value)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
export const unb64url = (text: string) => JSON.parse(atob(text.replace(/-/g, "+").replace(/_/g, "/"))) as any;

/** A credential built as the draft specifies: the challenge echoed, the token in the payload. */
export function credentialFor(challenge: Record<string, string>, spt: string): string {
  return `Payment ${b64url({ challenge, payload: { spt } })}`;
}

export const balanceOf = async (id: string) => (await admin("GET", `/customers/${id}`)).body.balance.available_exact_cents as string;
export const mppGrants = async (id: string) =>
  ((await admin("GET", `/customers/${id}/grants`)).body.grants as { source: string; amount_cents: number; payment_intent: string | null }[]).filter((g) => g.source === "mpp");
export const sptIntents = (stripe: ReturnType<typeof connect>["stripe"]) => stripe.requests.filter((r) => r.method === "POST" && r.path === "/v1/payment_intents");

export async function problemOf(response: Response) {
  expect(response.headers.get("content-type")).toBe("application/problem+json");
  expect(response.headers.get("payment-receipt")).toBeNull();
  return (await response.json()) as any;
}

/** A customer with no credit, the challenge of its 402, and a token granted for it (a card that pays, unless `token` says otherwise). */
export async function challenged(token: { paymentMethod?: string; settlesLater?: boolean } = {}) {
  const doubles = connect();
  const call = mppCall();
  const { id, key } = await brokeCustomer(doubles.stripe);
  const challenge = challengeOf(await call(key));
  const spt = doubles.stripe.grantSharedPaymentToken({ maxAmount: 500, ...token }).id;
  return { ...doubles, call, id, key, challenge, spt, pay: (credential = credentialFor(challenge, spt)) => call(key, { headers: { "payment-authorization": credential } }) };
}

/**
 * Stripe fails the PaymentIntent on every attempt (the SDK's first and its two retries, its
 * maxNetworkRetries): the credential is answered 502 `upstream_error` and nothing is credited.
 */
export async function payWhileStripeFails({ stripe, pay, id }: Awaited<ReturnType<typeof challenged>>, kind: FaultKind) {
  stripe.inject({ match: { method: "POST", path: "/v1/payment_intents" }, kind, times: 3, shouldRetry: true });
  const failed = await pay();
  expect(failed.status).toBe(502);
  expect(((await failed.json()) as any).error.code).toBe("upstream_error");
  expect(await balanceOf(id)).toBe("0");
}
