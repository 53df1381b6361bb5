import { describe, expect, it } from "vitest";
import { deliver, deliverAll } from "./doubles";
import { balanceOf, challenged, mppGrants, payWhileStripeFails, problemOf, sptIntents } from "./mpp-helpers";

// How an MPP charge settles (docs/concepts/agent-payments.md, "Exactly once"): every attempt to
// create the PaymentIntent of a challenge, the SDK's own retries and the credential's, carries
// the idempotency key payg_mpp_<challenge id>, so Stripe holds one PaymentIntent for it whatever
// was lost; a PaymentIntent that did not succeed (processing, requires_action) is refused as the
// Stripe method draft requires (402, a fresh challenge) and credits only once it succeeds, from
// its payment_intent.succeeded, which never credits a pack the request credited already.

describe("MPP: one idempotency key per challenge, whatever Stripe's answer was", () => {
  for (const kind of ["drop_after_commit", "500_after_commit", "500_retryable", "429", "timeout"] as const) {
    it(`${kind} on every attempt: 502; the credential's retry reuses the key; one PaymentIntent, one credit`, async () => {
      const paying = await challenged();
      const { pay, stripe, id, challenge, spt } = paying;
      await payWhileStripeFails(paying, kind);

      const retried = await pay();
      // A charge Stripe made and saved under the key (500 after commit) was answered 500 again:
      // its payment_intent.succeeded credits it.
      if (kind === "500_after_commit") expect(retried.status).toBe(502);
      else expect(retried.status).toBe(200);
      await deliverAll(stripe);
      const attempts = sptIntents(stripe);
      expect(attempts.length).toBeGreaterThanOrEqual(2);
      expect(new Set(attempts.map((r) => r.idempotencyKey))).toEqual(new Set([`payg_mpp_${challenge.id}`]));
      expect(stripe.paymentIntentsOf(id)).toHaveLength(1);
      expect(stripe.sharedPaymentToken(spt)!.usage_details.amount_captured.value).toBe(500);
      expect(await mppGrants(id)).toHaveLength(1);
      expect(await balanceOf(id)).toBe(kind === "500_after_commit" ? "500" : "499");
    });
  }
});

describe("MPP: a PaymentIntent that did not succeed is refused and credits nothing until it does", () => {
  it("requires_action: 402 verification-failed with a fresh challenge, nothing credited; its retry is Stripe's saved answer, not a second PaymentIntent", async () => {
    const { pay, stripe, id, challenge } = await challenged({ paymentMethod: "pm_card_authenticationRequired" });
    for (let i = 0; i < 2; i++) {
      const response = await pay();
      expect(response.status).toBe(402);
      expect(await problemOf(response)).toMatchObject({ type: "https://paymentauth.org/problems/verification-failed", challengeId: challenge.id });
      expect(response.headers.get("www-authenticate")).toMatch(/^Payment id="/);
      expect(response.headers.get("www-authenticate")).not.toContain(`id="${challenge.id}"`);
    }
    await deliverAll(stripe);
    expect(stripe.paymentIntentsOf(id).map((pi) => pi.status)).toEqual(["requires_action"]);
    expect(sptIntents(stripe).map((r) => r.replayed)).toEqual([false, true]);
    expect(await mppGrants(id)).toHaveLength(0);
    expect(await balanceOf(id)).toBe("0");
  });

  it("processing: refused, nothing credited; when it succeeds its webhook credits the pack once (twice delivered, or under another event id); the credential is then used", async () => {
    const { pay, stripe, id, challenge } = await challenged({ settlesLater: true });
    const refused = await pay();
    expect(refused.status).toBe(402);
    expect(await problemOf(refused)).toMatchObject({ type: "https://paymentauth.org/problems/verification-failed", challengeId: challenge.id });
    await deliverAll(stripe);
    const [pi] = stripe.paymentIntentsOf(id);
    expect(pi!.status).toBe("processing");
    expect(await mppGrants(id)).toHaveLength(0);
    expect(await balanceOf(id)).toBe("0");
    // Retried while still processing: Stripe's saved answer, still refused.
    expect((await pay()).status).toBe(402);
    expect(await balanceOf(id)).toBe("0");

    stripe.settlePaymentIntent(pi!.id);
    await deliverAll(stripe);
    expect(await mppGrants(id)).toMatchObject([{ amount_cents: 500, payment_intent: pi!.id }]);
    expect(await balanceOf(id)).toBe("500");
    const succeeded = stripe.events.find((e) => e.type === "payment_intent.succeeded")!;
    expect((await deliver(stripe, succeeded)).status).toBe(200);
    expect((await deliver(stripe, { ...succeeded, id: `${succeeded.id}_again` })).status).toBe(200);
    expect(await mppGrants(id)).toHaveLength(1);
    expect(await balanceOf(id)).toBe("500");

    const again = await pay();
    expect(again.status).toBe(402);
    expect(await problemOf(again)).toMatchObject({ type: "https://paymentauth.org/problems/invalid-challenge" });
    expect(stripe.paymentIntentsOf(id)).toHaveLength(1);
    expect(await balanceOf(id)).toBe("500");
  });

  it("processing that fails: nothing credited, ever", async () => {
    const { pay, stripe, id } = await challenged({ settlesLater: true });
    expect((await pay()).status).toBe(402);
    stripe.settlePaymentIntent(stripe.paymentIntentsOf(id)[0]!.id, false);
    await deliverAll(stripe);
    expect(await mppGrants(id)).toHaveLength(0);
    expect(await balanceOf(id)).toBe("0");
  });
});

describe("MPP: the synchronous credit and the webhook's are one", () => {
  it("served, then payment_intent.succeeded delivered, redelivered and under another event id: one grant, the balance exact", async () => {
    const { pay, stripe, id } = await challenged();
    expect((await pay()).status).toBe(200);
    await deliverAll(stripe);
    const succeeded = stripe.events.find((e) => e.type === "payment_intent.succeeded")!;
    expect((await deliver(stripe, succeeded)).status).toBe(200);
    expect((await deliver(stripe, { ...succeeded, id: `${succeeded.id}_again` })).status).toBe(200);
    expect(await mppGrants(id)).toHaveLength(1);
    expect(await balanceOf(id)).toBe("499");
  });
});
