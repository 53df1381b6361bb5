import type Stripe from "stripe";
import { afterEach, describe, expect, it } from "vitest";
import { admin, gateway, portalLinkSession, withKey } from "../helpers";
import { createEndpoint, pump, receiver, removeEndpoints } from "../provider-webhooks";
import { autoTopUpCustomer, cohorts, createCalls, deduct, grants, later, paymentIntentEvents, retryNow, SETTINGS, summary } from "./auto-topup-helpers";
import { connect, cron, deliver, deliverAll, settle, spend } from "./doubles";

afterEach(removeEndpoints);

/** A customer 1 cent above the threshold whose next PaymentIntent create meets `fault`; two requests cross it. */
async function crossWithFault(kind: "drop_after_commit" | "500" | "500_after_commit", times = 1) {
  const doubles = connect();
  const { id, key } = await autoTopUpCustomer(doubles, 81, "pm_card_visa");
  doubles.stripe.inject({ match: { method: "POST", path: "/v1/payment_intents" }, kind, times });
  expect(await spend(key, 2)).toBe(2);
  await settle(id);
  return { doubles, id, key };
}

describe("auto top-up: exactly one payment per crossing, credited once", () => {
  it("50 parallel requests crossing the threshold create exactly one PaymentIntent; its webhook, twice, credits nothing more", async () => {
    const doubles = connect();
    const hook = receiver();
    await createEndpoint(hook.url, ["topup.succeeded", "topup.failed"]);
    const { id, key, card, defaultCard } = await autoTopUpCustomer(doubles, 100, "pm_card_visa");
    // The card the Checkout top-up saved, never the Stripe customer's default card.
    const pm = card!.pm;
    expect(pm).not.toBe(defaultCard);

    expect(await spend(key, 50)).toBe(50);
    await settle(id);
    const calls = createCalls(doubles);
    expect(calls).toHaveLength(1);
    const { topups } = (await admin("GET", `/customers/${id}/auto-top-up`)).body;
    expect(topups).toHaveLength(1);
    expect(calls[0]!.idempotencyKey).toBe(`payg_auto_topup_${id}_${topups[0].id}`);
    expect(calls[0]!.params).toMatchObject({
      amount: "500",
      currency: "usd",
      customer: id,
      payment_method: pm,
      off_session: "true",
      confirm: "true",
      metadata: { payg_auto_topup: topups[0].id },
    });
    const pi = topups[0].payment_intent as string;
    expect(topups[0]).toMatchObject({ status: "succeeded", amount_cents: 500, attempts: 1 });
    expect((await grants(id)).filter((g) => g.source === "auto_topup")).toEqual([expect.objectContaining({ amount_cents: 500, payment_intent: pi })]);
    expect((await summary(id)).balance.available_cents).toBe(550);

    // The webhook after the create response already credited it, delivered twice: nothing more.
    const [succeeded] = paymentIntentEvents(doubles, "payment_intent.succeeded");
    expect((await deliver(doubles.stripe, succeeded!)).body.status).toBe("applied");
    expect((await deliver(doubles.stripe, succeeded!)).body.status).toBe("duplicate");
    expect((await summary(id)).balance).toMatchObject({ available_cents: 550, ledger_sum_exact_cents: "550" });
    expect((await grants(id)).filter((g) => g.source === "auto_topup")).toHaveLength(1);
    await pump(() => hook.about(id).length === 1, [id]);
    expect(hook.about(id)[0]!.event).toMatchObject({ type: "topup.succeeded", data: { customer_id: id, topup_id: topups[0].id, amount_cents: 500 } });

    // The credit reaches Stripe's balance once: 100 + 500 top-up - 50 of usage after the cron reports it.
    await cron();
    await deliverAll(doubles.stripe);
    expect(doubles.stripe.balanceOf(id)).toBe(-550);
    expect(createCalls(doubles)).toHaveLength(1);
  });

  it("a lost create response is retried under the same idempotency key: one payment, credited once", async () => {
    const { doubles, id } = await crossWithFault("drop_after_commit");
    const calls = createCalls(doubles);
    expect(calls).toHaveLength(2);
    expect(calls[1]!.idempotencyKey).toBe(calls[0]!.idempotencyKey);
    expect(calls.map((c) => c.replayed)).toEqual([false, true]);
    expect(paymentIntentEvents(doubles, "payment_intent.created")).toHaveLength(1);
    expect((await grants(id)).filter((g) => g.source === "auto_topup")).toHaveLength(1);
    expect((await summary(id)).balance.available_cents).toBe(579);
  });

  it("the webhook before any create response credits it; the retry then finds it settled and sends nothing", async () => {
    // Every attempt of the SDK's (1 + 2 retries) executes or replays, and its response is lost.
    const { doubles, id, key } = await crossWithFault("drop_after_commit", 3);
    let state = (await admin("GET", `/customers/${id}/auto-top-up`)).body;
    expect(state.auto_topup.state).toBe("pending");
    expect(state.topups[0]).toMatchObject({ status: "pending", attempts: 1, last_error: expect.stringMatching(/Connection/) });
    // Still below the threshold, more requests start nothing while one is pending.
    expect(await spend(key, 5)).toBe(5);
    await settle(id);
    expect((await admin("GET", `/customers/${id}/auto-top-up`)).body.topups).toHaveLength(1);

    const [succeeded] = paymentIntentEvents(doubles, "payment_intent.succeeded");
    expect((await deliver(doubles.stripe, succeeded!)).body.status).toBe("applied");
    state = (await admin("GET", `/customers/${id}/auto-top-up`)).body;
    expect(state.topups).toEqual([expect.objectContaining({ status: "succeeded", payment_intent: (succeeded!.data.object as Stripe.PaymentIntent).id })]);
    expect((await summary(id)).balance.available_cents).toBe(574);
    await retryNow(id);
    expect(createCalls(doubles)).toHaveLength(3);
    expect((await grants(id)).filter((g) => g.source === "auto_topup")).toHaveLength(1);
  });

  it("after a 500 that committed, the retry looks the payment up instead of charging again", async () => {
    const { doubles, id } = await crossWithFault("500_after_commit");
    expect((await admin("GET", `/customers/${id}/auto-top-up`)).body.topups[0]).toMatchObject({ status: "pending", attempts: 1 });
    await retryNow(id);
    expect(createCalls(doubles)).toHaveLength(1);
    expect(doubles.stripe.requests.filter((r) => r.method === "GET" && r.path === "/v1/payment_intents")).toHaveLength(1);
    expect((await admin("GET", `/customers/${id}/auto-top-up`)).body.topups[0]).toMatchObject({ status: "succeeded" });
    expect((await summary(id)).balance.available_cents).toBe(579);
  });

  it("after a 500 that did not commit, the lookup finds nothing and the payment goes out once under a fresh key", async () => {
    const { doubles, id } = await crossWithFault("500");
    await retryNow(id);
    const calls = createCalls(doubles);
    expect(calls).toHaveLength(2);
    expect(calls[1]!.idempotencyKey).not.toBe(calls[0]!.idempotencyKey);
    expect(calls[1]!.idempotencyKey!.startsWith(calls[0]!.idempotencyKey!)).toBe(true);
    expect(paymentIntentEvents(doubles, "payment_intent.succeeded")).toHaveLength(1);
    expect((await summary(id)).balance.available_cents).toBe(579);
  });
});

describe("auto top-up: a PaymentIntent that will never settle by itself does not hold the pending top-up", () => {
  it("a PaymentIntent found in requires_confirmation fails the top-up; resumed, the next one pays", async () => {
    const { doubles, id } = await crossWithFault("500");
    const [pending] = (await admin("GET", `/customers/${id}/auto-top-up`)).body.topups;
    expect(pending).toMatchObject({ status: "pending", attempts: 1 });
    // A PaymentIntent for this top-up that was never confirmed (as a partial create could leave one).
    const created = await doubles.stripe.handle(
      new Request("https://stripe.test/v1/payment_intents", {
        method: "POST",
        headers: { authorization: "Bearer sk_test_x", "content-type": "application/x-www-form-urlencoded" },
        body: `amount=500&currency=usd&customer=${id}&payment_method=pm_card_visa&metadata[payg_auto_topup]=${pending.id}`,
      }),
    );
    expect(((await created.json()) as Stripe.PaymentIntent).status).toBe("requires_confirmation");
    await retryNow(id);
    const state = (await admin("GET", `/customers/${id}/auto-top-up`)).body;
    expect(state.topups[0]).toMatchObject({ id: pending.id, status: "failed", reason: "requires_confirmation" });
    expect(state.auto_topup).toMatchObject({ state: "paused", pending: null });
    expect((await admin("PUT", `/customers/${id}`, { auto_topup: SETTINGS })).status).toBe(200);
    // The next one waits out min_interval_seconds since the failed one, then its timer starts it.
    await later(id, 600);
    expect((await admin("GET", `/customers/${id}/auto-top-up`)).body.topups[0]).toMatchObject({ status: "succeeded" });
    expect((await summary(id)).balance.available_cents).toBe(579);
  });
});

describe("auto top-up: failures pause it, tell once, never retry the card", () => {
  for (const [card, reason] of [
    ["pm_card_chargeCustomerFail", "card_declined"],
    ["pm_card_authenticationRequired", "authentication_required"],
  ] as const) {
    it(`${card}: paused (${reason}), topup.failed and the topup_failed email once, no second charge`, async () => {
      const doubles = connect();
      const hook = receiver();
      await createEndpoint(hook.url, ["topup.succeeded", "topup.failed"]);
      const { id, key, email } = await autoTopUpCustomer(doubles, 100, card);
      expect(await spend(key, 25)).toBe(25);
      await settle(id);
      expect(createCalls(doubles)).toHaveLength(1);
      const state = (await admin("GET", `/customers/${id}/auto-top-up`)).body;
      expect(state.auto_topup).toMatchObject({ state: "paused", paused: true, paused_reason: reason, why: expect.stringContaining(reason) });
      expect(state.topups[0]).toMatchObject({ status: "failed", reason, payment_intent: expect.stringMatching(/^pi_/) });
      expect(await cohorts(id)).toContain("topup_failed");

      // Stripe's own payment_failed webhook changes nothing more; spending on starts nothing.
      const [failed] = paymentIntentEvents(doubles, "payment_intent.payment_failed");
      expect((await deliver(doubles.stripe, failed!)).body.status).toBe("applied");
      expect(await spend(key, 10)).toBe(10);
      await settle(id);
      expect(createCalls(doubles)).toHaveLength(1);
      await pump(() => hook.about(id).length === 1, [id]);
      expect(hook.about(id).map((r) => r.event)).toEqual([
        expect.objectContaining({ type: "topup.failed", data: expect.objectContaining({ topup_id: state.topups[0].id, amount_cents: 500, reason }) }),
      ]);

      await cron();
      await cron(Date.now() + 2 * 3_600_000);
      await cron(Date.now() + 26 * 3_600_000);
      const sent = doubles.mail.sentTo(email).filter((m) => m.subject === "Your automatic top-up failed");
      expect(sent).toHaveLength(1);
      expect(sent[0]!.text).toContain("http://127.0.0.1:8787/portal");
      expect(createCalls(doubles)).toHaveLength(1);

      // Setting it again resumes it once min_interval_seconds have passed since the failed one:
      // one new attempt (started by the timer), which fails the same way and pauses again.
      expect((await admin("PUT", `/customers/${id}`, { auto_topup: SETTINGS })).body.auto_topup.state).toBe("waiting");
      await settle(id);
      expect(createCalls(doubles)).toHaveLength(1);
      await later(id, 600);
      expect(createCalls(doubles)).toHaveLength(2);
      expect((await summary(id)).auto_topup).toMatchObject({ state: "paused", paused_reason: reason });
    });
  }

  it("a customer with only a default card (none saved for auto top-up) is never charged off session, however low its credit", async () => {
    const doubles = connect();
    const { id, key, defaultCard } = await autoTopUpCustomer(doubles, 81, null);
    expect(defaultCard).toMatch(/^pm_/);
    expect(await spend(key, 2)).toBe(2);
    await settle(id);
    await deduct(id, 5000);
    await later(id, 86_400);
    await cron();
    expect(createCalls(doubles)).toHaveLength(0);
    expect((await admin("GET", `/customers/${id}/auto-top-up`)).body.topups).toEqual([]);
    expect((await summary(id)).auto_topup).toMatchObject({ state: "no_card", paused: false, saved_payment_method: null, why: expect.stringContaining("save_payment_method") });
  });
});

describe("auto top-up: the card a Checkout top-up saved", () => {
  it("save_payment_method saves the card off session; auto top-up charges it, and it resumes a paused auto top-up", async () => {
    const doubles = connect();
    const { id, key } = await autoTopUpCustomer(doubles, 100, "pm_card_chargeCustomerFail");
    expect(await spend(key, 25)).toBe(25);
    await settle(id);
    expect((await summary(id)).auto_topup).toMatchObject({ state: "paused", paused_reason: "card_declined", resumed_by_new_card: true });

    const bad = await gateway("/billing/checkout", withKey(key, { method: "POST", body: JSON.stringify({ amount_cents: 500, save_payment_method: "yes" }) }));
    expect(bad.status).toBe(400);
    const response = await gateway("/billing/checkout", withKey(key, { method: "POST", body: JSON.stringify({ amount_cents: 500, save_payment_method: true }) }));
    expect(response.status).toBe(201);
    const created = doubles.stripe.requests.filter((r) => r.method === "POST" && r.path === "/v1/checkout/sessions").at(-1)!;
    expect(created.params).toMatchObject({ customer: id, payment_intent_data: { setup_future_usage: "off_session" } });
    const session = doubles.stripe.completeCheckout(((await response.json()) as { id: string }).id, { paymentMethod: "pm_card_visa" });
    await deliverAll(doubles.stripe);
    const saved = doubles.stripe.getPaymentIntent(session.payment_intent as string)!.payment_method as string;
    expect((await summary(id)).auto_topup).toMatchObject({ state: "active", saved_payment_method: saved });
    expect((await summary(id)).balance.available_cents).toBe(575);

    // Below the threshold again: the next top-up waits min_interval_seconds after the failed one.
    await deduct(id, 500);
    expect(createCalls(doubles)).toHaveLength(1);
    await later(id, 600);
    const calls = createCalls(doubles);
    expect(calls).toHaveLength(2);
    expect(calls[1]!.params).toMatchObject({ payment_method: saved, off_session: "true" });
    expect((await summary(id)).balance.available_cents).toBe(575);
    // The credit the customer started with came from Stripe; two Checkout top-ups saved cards.
    expect((await grants(id)).map((g) => g.source).sort()).toEqual(["auto_topup", "checkout", "checkout", "stripe"]);
  });
});

describe("auto top-up: the monthly cap", () => {
  it("the cap stops the third top-up of the month and puts the customer in auto_topup_capped", async () => {
    const doubles = connect();
    const { id, key, email } = await autoTopUpCustomer(doubles, 100, "pm_card_visa", { threshold_cents: 80, amount_cents: 500, monthly_cap_cents: 1000 });
    expect(await spend(key, 21)).toBe(21); // 79 left: the first top-up
    await settle(id);
    await later(id, 600);
    await deduct(id, 500); // 79 again: the second
    expect((await summary(id)).balance.available_cents).toBe(579);
    await later(id, 600);
    expect(await spend(key, 500)).toBe(500); // 79 again: the third would pass the cap
    await settle(id);
    expect(createCalls(doubles)).toHaveLength(2);
    const s = await summary(id);
    expect(s.balance.available_cents).toBe(79);
    expect(s.auto_topup).toMatchObject({ state: "capped", month_total_cents: 1000, month_remaining_cents: 0, why: expect.stringContaining("monthly_cap_cents") });
    expect(s.cohorts.current.map((c: { cohort: string }) => c.cohort)).toContain("auto_topup_capped");
    await cron();
    expect(doubles.mail.sentTo(email).map((m) => m.subject)).toContain("Automatic top-ups reached this month's limit");

    // A higher cap lets the next one through at once.
    expect((await admin("PUT", `/customers/${id}`, { auto_topup: { threshold_cents: 80, amount_cents: 500, monthly_cap_cents: 1500 } })).status).toBe(200);
    await settle(id);
    expect(createCalls(doubles)).toHaveLength(3);
    expect(await cohorts(id)).not.toContain("auto_topup_capped");
  });
});

describe("auto top-up settings: bad input changes nothing", () => {
  it("each bad auto_topup is a JSON 400 (a post-paid customer a 409) and leaves the customer as it was", async () => {
    const doubles = connect();
    const customer = doubles.stripe.createCustomer({ email: "bad@example.com", name: "Bad Input", balance: -100, paymentMethod: "pm_card_visa", defaultPaymentMethod: true });
    await deliverAll(doubles.stripe);
    const id = customer.id;
    const before = await summary(id);
    for (const auto_topup of [
      { threshold_cents: 80, amount_cents: 500 },
      { threshold_cents: 80, amount_cents: 500, monthly_cap_cents: 400 },
      { threshold_cents: 80, amount_cents: 499, monthly_cap_cents: 1000 },
      { threshold_cents: -1, amount_cents: 500, monthly_cap_cents: 1000 },
      { threshold_cents: 80, amount_cents: 500.5, monthly_cap_cents: 1000 },
      { threshold_cents: "80", amount_cents: 500, monthly_cap_cents: 1000 },
      { threshold_cents: 80, amount_cents: 500, monthly_cap_cents: 1000, currency: "usd" },
      // The threshold must be below the amount, or each top-up's credit would ask for the next.
      { threshold_cents: 500, amount_cents: 500, monthly_cap_cents: 1000 },
      { threshold_cents: 2000, amount_cents: 500, monthly_cap_cents: 1000 },
      { ...SETTINGS, min_interval_seconds: 59 },
      { ...SETTINGS, min_interval_seconds: 600.5 },
      { ...SETTINGS, max_per_day: 0 },
      { ...SETTINGS, max_per_day: 101 },
      "on",
    ]) {
      const response = await admin("PUT", `/customers/${id}`, { name: "Changed", auto_topup });
      expect(response.status).toBe(400);
      expect(response.body.error).toMatchObject({ code: "invalid_request", message: expect.stringContaining("auto_topup"), requestId: expect.any(String) });
    }
    const postpaid = await admin("PUT", `/customers/${id}`, { name: "Changed", plan: "postpaid", auto_topup: SETTINGS });
    expect(postpaid.status).toBe(409);
    expect(postpaid.body.error.code).toBe("conflict");
    const after = await summary(id);
    expect(after.customer).toEqual(before.customer);
    expect(after.auto_topup).toBeNull();
    expect((await admin("GET", `/customers/${id}/auto-top-up`)).body).toMatchObject({ auto_topup: null, topups: [] });
    expect((await admin("GET", "/customers/cus_nobody_here/auto-top-up")).status).toBe(404);

    // The rate limits default to one top-up per 10 minutes and 4 a UTC day. null turns it off;
    // the settings stay visible with state off.
    expect((await admin("PUT", `/customers/${id}`, { auto_topup: SETTINGS })).body.auto_topup).toMatchObject({ state: "no_card", min_interval_seconds: 600, max_per_day: 4 });
    expect((await admin("PUT", `/customers/${id}`, { auto_topup: null })).body.auto_topup).toMatchObject({ enabled: false, state: "off" });
    // Turning it on told the customer (once); turning it off did not.
    await settle(id);
    expect(doubles.mail.sentTo("bad@example.com").map((m) => m.subject)).toEqual(["Your automatic top-up changed"]);
  });
});

describe("auto top-up in the customer portal", () => {
  const form = (path: string, fields: Record<string, string>, cookie: string) =>
    gateway(path, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", origin: "http://gateway.test", cookie },
      body: new URLSearchParams(fields).toString(),
    });

  it("shows the state, saves settings through the admin API's rules, turns it off, and a top-up can save the card", async () => {
    const doubles = connect();
    const customer = doubles.stripe.createCustomer({ email: "portal-auto@example.com", name: "Pat Portal", balance: -1000 });
    await deliverAll(doubles.stripe);
    const id = customer.id;
    expect((await admin("POST", `/customers/${id}/keys`, {})).status).toBe(201);
    // Auto top-up is the owner's: a session from the provider's link.
    const cookie = await portalLinkSession(id);
    let page = await (await gateway("/portal", { headers: { cookie } })).text();
    expect(page).toContain("Automatic top-up");
    expect(page).toContain("Turn on automatic top-up");
    const csrf = /name="_csrf" value="([0-9a-f]+)"/.exec(page)![1]!;

    const bad = await form("/portal/auto-top-up", { _csrf: csrf, threshold: "5", amount: "1", cap: "100" }, cookie);
    expect(bad.status).toBe(400); // 100 cents is under checkout_min_cents
    expect((await summary(id)).auto_topup).toBeNull();
    expect((await form("/portal/auto-top-up", { _csrf: csrf, threshold: "5", amount: "20", cap: "abc" }, cookie)).status).toBe(400);

    // A threshold not below the amount is refused.
    expect((await form("/portal/auto-top-up", { _csrf: csrf, threshold: "20", amount: "20", cap: "100" }, cookie)).status).toBe(400);
    expect((await summary(id)).auto_topup).toBeNull();

    const saved = await form("/portal/auto-top-up", { _csrf: csrf, threshold: "5", amount: "20.50", cap: "100" }, cookie);
    expect(saved.status).toBe(303);
    expect((await summary(id)).auto_topup).toMatchObject({ state: "no_card", threshold_cents: 500, amount_cents: 2050, monthly_cap_cents: 10_000 });
    page = await (await gateway("/portal?notice=auto-top-up-saved", { headers: { cookie } })).text();
    expect(page).toContain("Automatic top-up saved.");
    expect(page).toContain("Below $5.00, add $20.50; at most $100.00 a month ($0.00 so far this month).");
    // No card is saved for it yet: the page says so and ticks "save my card" on the top-up form.
    expect(page).toContain("On, waiting for a card");
    expect(page).toMatch(/name="save_card" value="1" checked/);

    const topUp = await form("/portal/top-up", { _csrf: csrf, amount_cents: "1000", save_card: "1" }, cookie);
    expect(topUp.status).toBe(303);
    const created = doubles.stripe.requests.filter((r) => r.method === "POST" && r.path === "/v1/checkout/sessions").at(-1)!;
    expect(created.params).toMatchObject({ customer: id, payment_intent_data: { setup_future_usage: "off_session" } });

    expect((await form("/portal/auto-top-up", { _csrf: csrf, off: "1" }, cookie)).status).toBe(303);
    expect((await summary(id)).auto_topup).toMatchObject({ enabled: false, state: "off" });
    await settle(id);
    expect(doubles.mail.sentTo("portal-auto@example.com").map((m) => m.subject)).toEqual(["Your automatic top-up changed"]);
  });
});
