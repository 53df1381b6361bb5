import { env } from "cloudflare:workers";
import { Receipt } from "mppx";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../../src/lib/config";
import { issueChallenge } from "../../../src/payments/mpp/challenge";
import { serializeChallenge } from "../../../src/payments/mpp/wire";
import { customerStub, gatewayWith, settle } from "../helpers";
import { connect, cron, deliverAll } from "./doubles";
import {
  b64url,
  balanceOf,
  brokeCustomer,
  challenged,
  challengeOf,
  credentialFor,
  MPP_BINDINGS,
  mppCall,
  mppFetch,
  mppGrants,
  NETWORK_ID,
  payWhileStripeFails,
  problemOf,
  REALM,
  sptIntents,
  unb64url,
} from "./mpp-helpers";

// The Payment HTTP authentication scheme (draft-ryan-httpauth-payment), Stripe method, charge
// intent, as a top-up rail (docs/concepts/agent-payments.md): the 402 carries a challenge whose
// id is an HMAC over its parameters; a credential with a Shared Payment Token is charged once per
// challenge and credited as a paid grant; mppx's client pays it.

describe("MPP: a 402 an agent can pay with a Shared Payment Token", () => {
  it("offers a challenge; mppx's client pays it, is served with a receipt and charged once; Stripe's books agree", async () => {
    const { stripe } = connect();
    const { id, key } = await brokeCustomer(stripe);

    const refused = await mppCall()(key);
    expect(refused.status).toBe(402);
    expect(refused.headers.get("cache-control")).toBe("no-store");
    const challenge = challengeOf(refused);
    expect(challenge).toMatchObject({ realm: REALM, method: "stripe", intent: "charge", header: "Payment-Authorization", description: `Adds $5.00 of API credit to ${id}` });
    expect(Date.parse(challenge.expires!) - Date.now()).toBeGreaterThan(290_000);
    expect(unb64url(challenge.request!)).toEqual({
      amount: "500",
      currency: "usd",
      description: `Adds $5.00 of API credit to ${id}`,
      methodDetails: { networkId: NETWORK_ID, paymentMethodTypes: ["card"] },
    });
    const body = (await refused.json()) as any;
    expect(body).toMatchObject({ code: "insufficient_credit", payment: { topup_cents: 500, mpp: { id: challenge.id, realm: REALM } } });

    const agent = mppFetch(stripe, key);
    const paid = await agent.fetch();
    expect(paid.status).toBe(200);
    expect(paid.headers.get("x-payg-balance-cents")).toBe("499");
    expect(paid.headers.get("cache-control")).toBe("private");
    const receipt = Receipt.deserialize(paid.headers.get("payment-receipt")!);
    expect(receipt).toMatchObject({ method: "stripe", status: "success" });
    const pi = stripe.getPaymentIntent(receipt.reference)!;
    expect(pi).toMatchObject({ status: "succeeded", amount: 500, currency: "usd", customer: id, metadata: { payg_customer_id: id, payg_credit_cents: "500" } });
    expect(stripe.sharedPaymentToken(agent.tokens[0]!)!.usage_details.amount_captured.value).toBe(500);
    const [create] = sptIntents(stripe);
    expect(create!.params).toMatchObject({ shared_payment_granted_token: agent.tokens[0], confirm: "true", customer: id });
    expect(create!.idempotencyKey).toMatch(/^payg_mpp_/);
    expect(await mppGrants(id)).toMatchObject([{ amount_cents: 500, payment_intent: pi.id }]);

    // Served from the pack afterwards: no challenge, no second charge.
    expect((await agent.fetch()).status).toBe(200);
    expect(sptIntents(stripe)).toHaveLength(1);
    await settle(id);
    expect(stripe.balanceTransactions(id).filter((t) => t.amount === -500)).toHaveLength(1);
  });

  it("takes the credential in Authorization when the key comes as X-API-Key", async () => {
    const { key, challenge, spt, id } = await challenged();
    const response = await gatewayWith(MPP_BINDINGS, "/v1/x", { headers: { authorization: credentialFor(challenge, spt), "x-api-key": key } });
    expect(response.status).toBe(200);
    expect(response.headers.get("payment-receipt")).not.toBeNull();
    expect(await balanceOf(id)).toBe("499");
  });
});

describe("MPP: the challenge is bound, expires and is used once", () => {
  it("refuses a challenge whose request, opaque or id was changed, before touching the token", async () => {
    const { pay, challenge, spt, stripe, id } = await challenged();
    const cheaper = { ...unb64url(challenge.request!), amount: "1" };
    for (const tampered of [
      { ...challenge, request: b64url(cheaper) },
      { ...challenge, opaque: b64url({ customer: "cus_someone_else" }) },
      { ...challenge, id: `${challenge.id!.slice(0, -2)}AA` },
      { ...challenge, realm: "other.example" },
    ]) {
      const response = await pay(credentialFor(tampered, spt));
      expect(response.status).toBe(402);
      const problem = await problemOf(response);
      expect(problem).toMatchObject({ type: "https://paymentauth.org/problems/invalid-challenge", title: "Invalid Challenge", status: 402, error: { code: "payment_invalid" } });
      // A fresh challenge on every 402, as the draft requires.
      expect(challengeOf(response).id).not.toBe(challenge.id);
    }
    expect(sptIntents(stripe)).toHaveLength(0);
    expect(await balanceOf(id)).toBe("0");
  });

  it("refuses an expired challenge (payment-expired) and one for another method (400 method-unsupported)", async () => {
    const { pay, spt, stripe, id } = await challenged();
    const config = parseConfig({ ...env, ...MPP_BINDINGS } as never);
    const expired = await issueChallenge(config, 500, id, "x", Date.now() - 3_600_000);
    const params = challengeOf(new Response(null, { headers: { "www-authenticate": serializeChallenge(expired) } }));
    const late = await pay(credentialFor(params, spt));
    expect(late.status).toBe(402);
    expect(await problemOf(late)).toMatchObject({ type: "https://paymentauth.org/problems/payment-expired" });
    const other = await pay(credentialFor({ ...params, method: "tempo" }, spt));
    expect(other.status).toBe(400);
    expect(await problemOf(other)).toMatchObject({ type: "https://paymentauth.org/problems/method-unsupported", status: 400 });
    expect(sptIntents(stripe)).toHaveLength(0);
  });

  it("refuses a malformed credential with a problem and a fresh challenge", async () => {
    const { pay } = await challenged();
    for (const bad of ["Payment !!!", `Payment ${b64url({ challenge: {}, payload: {} })}`, "Basic abc"]) {
      const response = await pay(bad);
      expect(response.status).toBe(402);
      expect(await problemOf(response)).toMatchObject({ type: "https://paymentauth.org/problems/malformed-credential" });
      expect(challengeOf(response).method).toBe("stripe");
    }
  });

  it("refuses two different credentials in one request with 400, before touching either token; the same one twice is one", async () => {
    const { key, challenge, spt, id, stripe, call } = await challenged();
    const other = stripe.grantSharedPaymentToken({ maxAmount: 500 }).id;
    const [first, second] = [credentialFor(challenge, spt), credentialFor(challenge, other)];
    for (const response of [
      await call(key, { headers: { "payment-authorization": `${first}, ${second}` } }),
      await gatewayWith(MPP_BINDINGS, "/v1/x", { headers: { authorization: second, "x-api-key": key, "payment-authorization": first } }),
    ]) {
      expect(response.status).toBe(400);
      expect(((await response.json()) as any).error).toMatchObject({ code: "invalid_request", message: expect.stringMatching(/2 different Payment credentials/) });
    }
    expect(sptIntents(stripe)).toHaveLength(0);
    expect(await balanceOf(id)).toBe("0");
    const same = await gatewayWith(MPP_BINDINGS, "/v1/x", { headers: { authorization: first, "x-api-key": key, "payment-authorization": first } });
    expect(same.status).toBe(200);
    expect(await balanceOf(id)).toBe("499");
  });

  it("refuses a replayed challenge (invalid-challenge), with the same token or another: charged and credited once", async () => {
    const { pay, challenge, spt, stripe, id } = await challenged();
    expect((await pay()).status).toBe(200);
    const again = await pay();
    expect(again.status).toBe(402);
    expect(await problemOf(again)).toMatchObject({ type: "https://paymentauth.org/problems/invalid-challenge", challengeId: challenge.id });
    const other = stripe.grantSharedPaymentToken({ maxAmount: 500 }).id;
    expect((await pay(credentialFor(challenge, other))).status).toBe(402);
    expect(sptIntents(stripe)).toHaveLength(1);
    expect(stripe.sharedPaymentToken(spt)!.usage_details.amount_captured.value).toBe(500);
    expect(await mppGrants(id)).toHaveLength(1);
    expect(await balanceOf(id)).toBe("499");
  });
});

describe("MPP: exactly once whatever Stripe does", () => {
  it("a PaymentIntent whose answer is lost after Stripe committed it is recovered under the same key: one charge, one credit", async () => {
    const { pay, stripe, id } = await challenged();
    stripe.inject({ match: { method: "POST", path: "/v1/payment_intents" }, kind: "drop_after_commit" });
    const response = await pay();
    expect(response.status).toBe(200);
    expect(sptIntents(stripe).map((r) => r.replayed)).toEqual([false, true]);
    expect(stripe.paymentIntentsOf(id)).toHaveLength(1);
    expect(await mppGrants(id)).toHaveLength(1);
    expect(await balanceOf(id)).toBe("499");
    await deliverAll(stripe);
    expect(await mppGrants(id)).toHaveLength(1);
  });

  it("every answer lost: 502, then the same credential is credited from Stripe's saved PaymentIntent, once", async () => {
    const { pay, stripe, id } = await challenged();
    stripe.inject({ match: { method: "POST", path: "/v1/payment_intents" }, kind: "drop_after_commit", times: 3 });
    expect((await pay()).status).toBe(502);
    expect(await balanceOf(id)).toBe("0");
    expect((await pay()).status).toBe(200);
    expect(stripe.paymentIntentsOf(id)).toHaveLength(1);
    await deliverAll(stripe);
    expect(await mppGrants(id)).toHaveLength(1);
    expect(await balanceOf(id)).toBe("499");
  });

  it("charged but answered 500 (saved under the key): the PaymentIntent's webhook credits the pack, once; the credential is then used", async () => {
    const { pay, stripe, id } = await challenged();
    stripe.inject({ match: { method: "POST", path: "/v1/payment_intents" }, kind: "500_after_commit" });
    expect((await pay()).status).toBe(502);
    expect(await balanceOf(id)).toBe("0");
    await deliverAll(stripe);
    expect(await mppGrants(id)).toMatchObject([{ amount_cents: 500, payment_intent: stripe.paymentIntentsOf(id)[0]!.id }]);
    expect(await balanceOf(id)).toBe("500");
    const again = await pay();
    expect(again.status).toBe(402);
    expect(await problemOf(again)).toMatchObject({ type: "https://paymentauth.org/problems/invalid-challenge" });
    await deliverAll(stripe);
    expect(await mppGrants(id)).toHaveLength(1);
    expect(stripe.paymentIntentsOf(id)).toHaveLength(1);
  });

  it("Stripe down (500s, 429s): 502 and nothing credited; the same credential later is charged once", async () => {
    for (const kind of ["500_retryable", "429"] as const) {
      const paying = await challenged();
      const { pay, stripe, id } = paying;
      await payWhileStripeFails(paying, kind);
      const retried = await pay();
      expect(retried.status).toBe(200);
      expect(stripe.paymentIntentsOf(id)).toHaveLength(1);
      expect(await balanceOf(id)).toBe("499");
    }
  });

  it("a declined token is verification-failed, nothing credited; its retry replays the decline, never a second attempt", async () => {
    const doubles = connect();
    const call = mppCall();
    const { id, key } = await brokeCustomer(doubles.stripe);
    const challenge = challengeOf(await call(key));
    const spt = doubles.stripe.grantSharedPaymentToken({ maxAmount: 500, paymentMethod: "pm_card_chargeCustomerFail" }).id;
    for (let i = 0; i < 2; i++) {
      const response = await call(key, { headers: { "payment-authorization": credentialFor(challenge, spt) } });
      expect(response.status).toBe(402);
      expect(await problemOf(response)).toMatchObject({ type: "https://paymentauth.org/problems/verification-failed", error: { code: "payment_failed" } });
    }
    expect(sptIntents(doubles.stripe).map((r) => r.replayed)).toEqual([false, true]);
    expect(await balanceOf(id)).toBe("0");
    expect(await mppGrants(id)).toHaveLength(0);
  });

  it("the same credential sent twice at once: one PaymentIntent, one credit, both requests answered", async () => {
    const { pay, stripe, id } = await challenged();
    const answers = await Promise.all([pay(), pay()]);
    expect(answers.map((r) => r.status).sort()).toContain(200);
    expect(stripe.paymentIntentsOf(id).filter((pi) => pi.status === "succeeded")).toHaveLength(1);
    expect(await mppGrants(id)).toHaveLength(1);
  });
});

describe("MPP: refunds and disputes claw the pack back like any top-up's", () => {
  it("a refund of the PaymentIntent takes the credit back; Stripe's books agree to the cent", async () => {
    const { pay, stripe, id } = await challenged();
    const paid = await pay();
    const pi = Receipt.deserialize(paid.headers.get("payment-receipt")!).reference;
    stripe.refundCharge(pi, 200);
    await deliverAll(stripe);
    expect(await balanceOf(id)).toBe("299");
    await settle(id);
    await cron(Date.now());
    await deliverAll(stripe);
    const check = (await customerStub(id).balanceCheck())!;
    expect(check.ledgerSumMicros).toBe(check.balanceMicros);
    expect(stripe.balanceOf(id)).toBe(-(check.balanceMicros + check.pendingUsageMicros) / 1_000_000);
  });
});

describe("MPP: configuration", () => {
  it("needs Stripe and KEY_SIGNING_SECRET; a profile id for network_id", () => {
    const base = { ...env, ...MPP_BINDINGS } as Record<string, unknown>;
    expect(() => parseConfig({ ...base, STRIPE_SECRET_KEY: undefined, STRIPE_WEBHOOK_SECRET: undefined } as never)).toThrow(/PAYMENTS.mpp: needs Stripe/);
    expect(() => parseConfig({ ...base, KEY_SIGNING_SECRET: undefined, ACCEPT_UNSIGNED_KEYS: true } as never)).toThrow(/PAYMENTS.mpp: needs KEY_SIGNING_SECRET/);
    expect(() => parseConfig({ ...base, PAYMENTS: { mpp: { realm: REALM, network_id: "acct_1" } } } as never)).toThrow(ConfigError);
  });
});
