import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import { AUTO_TOPUP_TABLES } from "../../../durable-objects/customer-account/auto-topup/auto-topup";
import { nextUtcDay } from "../../../durable-objects/customer-account/auto-topup/plan";
import { MIGRATIONS } from "../../../durable-objects/customer-account/core/schema";
import { admin, customerStub, gateway, portalLinkSession, uniqueId, withKey } from "../helpers";
import { createEndpoint, pump, receiver, removeEndpoints } from "../provider-webhooks";
import { autoTopUpCustomer, autoTopUpState, autoTopUpTimer, cohorts, createCalls, deduct, later, SETTINGS, saveCard, summary } from "./auto-topup-helpers";
import { connect, deliverAll, settle, spend } from "./doubles";

afterEach(removeEndpoints);

const DAY = 86_400_000;
const CHANGED = "Your automatic top-up changed";

/** Top-ups are counted per UTC day and the tests move their start times back: keep clear of midnight. */
async function clearOfMidnight() {
  const into = Date.now() % DAY;
  if (into < 180_000 || into > DAY - 60_000) await new Promise((r) => setTimeout(r, (DAY - into + 180_000) % DAY));
}

describe("auto top-up is rate limited, whatever the balance does", () => {
  it("below the threshold again right after a top-up, the next waits min_interval_seconds; its timer then starts it with no request", async () => {
    const doubles = connect();
    const { id, key } = await autoTopUpCustomer(doubles, 100, "pm_card_visa");
    expect(await spend(key, 21)).toBe(21);
    await settle(id);
    expect(createCalls(doubles)).toHaveLength(1);
    await deduct(id, 520); // 59 cents: below the threshold, moments after the first top-up
    expect(await spend(key, 5)).toBe(5);
    await settle(id);
    expect(createCalls(doubles)).toHaveLength(1);
    const { auto_topup: state, topups } = await autoTopUpState(id);
    const due = topups[0].created_at + 600_000;
    expect(state).toMatchObject({ state: "waiting", next_topup_at: due, why: expect.stringContaining("min_interval_seconds") });
    expect(await autoTopUpTimer(id)).toBe(due);

    await later(id, 590);
    expect(createCalls(doubles)).toHaveLength(1);
    await later(id, 10);
    expect(createCalls(doubles)).toHaveLength(2);
    expect((await summary(id)).balance.available_cents).toBe(554);
  });

  it("at most max_per_day top-ups start in a UTC day; the next waits for the next day and its timer starts it then", async () => {
    await clearOfMidnight();
    const doubles = connect();
    const { id, key } = await autoTopUpCustomer(doubles, 100, "pm_card_visa", { ...SETTINGS, min_interval_seconds: 60, max_per_day: 2 });
    expect(await spend(key, 21)).toBe(21);
    await settle(id);
    await later(id, 60);
    await deduct(id, 500);
    expect(createCalls(doubles)).toHaveLength(2);
    await later(id, 60);
    await deduct(id, 500);
    expect(createCalls(doubles)).toHaveLength(2);
    const next = nextUtcDay(Date.now());
    expect((await autoTopUpState(id)).auto_topup).toMatchObject({ state: "waiting", today_count: 2, next_topup_at: next, why: expect.stringContaining("max_per_day") });
    expect(await autoTopUpTimer(id)).toBe(next);

    await later(id, 86_400);
    expect(createCalls(doubles)).toHaveLength(3);
    expect((await summary(id)).balance.available_cents).toBe(579);
  }, 300_000);

  it("a debt larger than the amount: one top-up, then paused below_threshold (auto_topup.paused, one email); a new card does not lift it", async () => {
    const doubles = connect();
    const hook = receiver();
    await createEndpoint(hook.url, ["topup.succeeded", "auto_topup.paused"]);
    const { id, key, email } = await autoTopUpCustomer(doubles, 100, "pm_card_visa");
    await deduct(id, 2000); // -1900: one top-up of 500 cannot lift it over the threshold
    expect(createCalls(doubles)).toHaveLength(1);
    const s = await summary(id);
    expect(s.balance.available_cents).toBe(-1400);
    expect(s.auto_topup).toMatchObject({ state: "paused", paused_reason: "below_threshold", paused_topup_id: null, resumed_by_new_card: false });
    expect(s.auto_topup.why).toContain("set auto_topup again to resume");
    expect(await cohorts(id)).not.toContain("topup_failed");

    // A day later, more debits: nothing is charged.
    await later(id, 86_400);
    await deduct(id, 10);
    expect(createCalls(doubles)).toHaveLength(1);
    await pump(() => hook.about(id).length === 2, [id]);
    expect(hook.about(id).map((r) => [r.event.type, r.event.data.reason, r.event.data.topup_id])).toEqual([
      ["topup.succeeded", undefined, expect.stringMatching(/^topup_/)],
      ["auto_topup.paused", "below_threshold", null],
    ]);
    const notices = doubles.mail.sentTo(email).filter((m) => m.subject === CHANGED);
    expect(notices.map((m) => m.text)).toEqual([
      expect.stringContaining("was turned on"),
      expect.stringContaining("paused because a top-up left the credit still below the threshold"),
    ]);

    // A card saved by a Checkout top-up lifts a card failure's pause only.
    await saveCard(doubles, key);
    expect((await summary(id)).auto_topup).toMatchObject({ state: "paused", paused_reason: "below_threshold" });
    expect(createCalls(doubles)).toHaveLength(1);
    // Setting it again lifts it: one more top-up, still below, paused again.
    expect((await admin("PUT", `/customers/${id}`, { auto_topup: SETTINGS })).status).toBe(200);
    await settle(id);
    expect(createCalls(doubles)).toHaveLength(2);
    expect((await summary(id)).auto_topup).toMatchObject({ state: "paused", paused_reason: "below_threshold" });
  });
});

describe("a refund or dispute of the auto top-up card's payments pauses auto top-up and starts nothing", () => {
  it("a refund of an auto top-up: paused (refund), auto_topup.paused, no new top-up though the credit is below the threshold; the portal says how to resume", async () => {
    const doubles = connect();
    const hook = receiver();
    await createEndpoint(hook.url, ["auto_topup.paused"]);
    const { id, key } = await autoTopUpCustomer(doubles, 100, "pm_card_visa");
    expect(await spend(key, 21)).toBe(21);
    await settle(id);
    // The interval has passed: only the pause keeps the clawback from charging the card again.
    await later(id, 600);
    const pi = (await autoTopUpState(id)).topups[0].payment_intent as string;
    doubles.stripe.refundCharge(pi);
    await deliverAll(doubles.stripe);
    const s = await summary(id);
    expect(s.balance.available_cents).toBe(79);
    expect(s.auto_topup).toMatchObject({ state: "paused", paused_reason: "refund", paused_topup_id: null });
    await later(id, 86_400);
    expect(await spend(key, 1)).toBe(1);
    await settle(id);
    expect(createCalls(doubles)).toHaveLength(1);
    await pump(() => hook.about(id).length === 1, [id]);
    expect(hook.about(id)[0]!.event.data).toMatchObject({ reason: "refund", topup_id: null });

    // The owner's view (a provider-issued link): auto top-up is not shown to a key's session.
    const page = await (await gateway("/portal", { headers: { cookie: await portalLinkSession(id) } })).text();
    expect(page).toContain(
      "Paused because a payment made with the card saved for it was refunded. Your card will not be charged automatically until you save these settings again.",
    );
    expect(page).not.toMatch(/name="save_card" value="1" checked/);
  });

  it("a refund or a dispute of the Checkout payment that saved the card pauses it too", async () => {
    const doubles = connect();
    const { id, card } = await autoTopUpCustomer(doubles, 100, "pm_card_visa");
    doubles.stripe.refundCharge(card!.paymentIntent);
    await deliverAll(doubles.stripe);
    await settle(id);
    expect((await summary(id)).balance.available_cents).toBe(-400);
    expect((await summary(id)).auto_topup).toMatchObject({ state: "paused", paused_reason: "refund" });
    expect(createCalls(doubles)).toHaveLength(0);

    // A dispute carries the PaymentIntent only: the one that saved the card is remembered.
    const other = await autoTopUpCustomer(doubles, 100, "pm_card_visa");
    doubles.stripe.createDispute(other.card!.paymentIntent);
    await deliverAll(doubles.stripe);
    await settle(other.id);
    expect((await summary(other.id)).auto_topup).toMatchObject({ state: "paused", paused_reason: "dispute" });
    expect(createCalls(doubles)).toHaveLength(0);
  });

  it("a dispute pauses it (dispute); set again, a lost dispute pauses it again; a won one does not", async () => {
    const doubles = connect();
    const { id, key } = await autoTopUpCustomer(doubles, 100, "pm_card_visa");
    expect(await spend(key, 21)).toBe(21);
    await settle(id);
    await later(id, 600);
    const first = (await autoTopUpState(id)).topups[0].payment_intent as string;
    const dispute = doubles.stripe.createDispute(first);
    await deliverAll(doubles.stripe);
    // The disputed credit is frozen: 79 cents are spendable, below the threshold, and nothing is charged.
    expect((await summary(id)).balance.available_cents).toBe(79);
    expect((await summary(id)).auto_topup).toMatchObject({ state: "paused", paused_reason: "dispute" });
    expect(createCalls(doubles)).toHaveLength(1);

    // Set again by the operator: it resumes (and tops up, the credit being below the threshold).
    expect((await admin("PUT", `/customers/${id}`, { auto_topup: SETTINGS })).status).toBe(200);
    await settle(id);
    expect(createCalls(doubles)).toHaveLength(2);
    await later(id, 600);
    doubles.stripe.closeDispute(dispute.id, "lost");
    await deliverAll(doubles.stripe);
    expect((await summary(id)).auto_topup).toMatchObject({ state: "paused", paused_reason: "dispute" });
    expect(createCalls(doubles)).toHaveLength(2);

    // Set again, the next debit below the threshold tops up; a dispute of that one, then won,
    // leaves it running once set again.
    expect((await summary(id)).balance.available_cents).toBe(579);
    expect((await admin("PUT", `/customers/${id}`, { auto_topup: SETTINGS })).status).toBe(200);
    await deduct(id, 500);
    expect(createCalls(doubles)).toHaveLength(3);
    const third = (await autoTopUpState(id)).topups[0].payment_intent as string;
    const other = doubles.stripe.createDispute(third);
    await deliverAll(doubles.stripe);
    expect((await summary(id)).auto_topup).toMatchObject({ state: "paused", paused_reason: "dispute" });
    expect((await admin("PUT", `/customers/${id}`, { auto_topup: SETTINGS })).status).toBe(200);
    doubles.stripe.closeDispute(other.id, "won");
    await deliverAll(doubles.stripe);
    await settle(id);
    expect((await summary(id)).auto_topup.paused).toBe(false);
  });

  it("a refund of a payment made with another card does not pause it, and its clawback starts no top-up: the next debit does", async () => {
    const doubles = connect();
    const { id, key, card } = await autoTopUpCustomer(doubles, 100, "pm_card_visa");
    const response = await gateway("/billing/checkout", withKey(key, { method: "POST", body: JSON.stringify({ amount_cents: 500 }) }));
    const session = doubles.stripe.completeCheckout(((await response.json()) as { id: string }).id, { paymentMethod: "pm_card_visa" });
    await deliverAll(doubles.stripe);
    expect(await spend(key, 30)).toBe(30);
    await settle(id);
    expect((await summary(id)).balance.available_cents).toBe(570);
    doubles.stripe.refundCharge(session.payment_intent as string);
    await deliverAll(doubles.stripe);
    await settle(id);
    expect((await summary(id)).balance.available_cents).toBe(70);
    expect((await summary(id)).auto_topup).toMatchObject({ state: "active", paused: false });
    expect(createCalls(doubles)).toHaveLength(0);

    expect(await spend(key, 1)).toBe(1);
    await settle(id);
    expect(createCalls(doubles).map((c) => c.params.payment_method)).toEqual([card!.pm]);
  });
});

describe("auto_topup.updated and the auto_topup_changed email", () => {
  it("turning it on or letting it charge more emails the customer, unsubscribed too, with no unsubscribe link; every change sends auto_topup.updated", async () => {
    const doubles = connect();
    const hook = receiver();
    await createEndpoint(hook.url, ["auto_topup.updated"]);
    const email = `${uniqueId("notice")}@example.com`;
    const id = doubles.stripe.createCustomer({ email, name: "Nora Notice", balance: -1000 }).id;
    await deliverAll(doubles.stripe);
    await customerStub(id).setEmailUnsubscribed(true);
    const put = async (auto_topup: Record<string, number> | null) => {
      expect((await admin("PUT", `/customers/${id}`, { auto_topup })).status).toBe(200);
      await settle(id);
      return doubles.mail.sentTo(email).filter((m) => m.subject === CHANGED);
    };

    let sent = await put(SETTINGS);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.text).toContain(
      "Automatic top-up was turned on: when your credit falls below $0.80, $5.00 is charged to your saved card, at most $20.00 a month, 4 a day, and at most one top-up every 10 minutes.",
    );
    expect(sent[0]!.text).toContain("https://gateway.test/portal");
    expect(sent[0]!.html).toContain('href="https://gateway.test/portal"');
    expect(sent[0]!.text).not.toMatch(/unsubscribe/i);
    expect(sent[0]!.headers).not.toHaveProperty("List-Unsubscribe");

    expect(await put(SETTINGS)).toHaveLength(1); // the same settings again: no change, nothing sent
    sent = await put({ ...SETTINGS, threshold_cents: 100, monthly_cap_cents: 1000 });
    expect(sent).toHaveLength(2);
    expect(sent[1]!.text).toContain("Automatic top-up was changed (threshold $0.80 → $1.00). Now when your credit falls below $1.00");
    expect((await put({ ...SETTINGS, monthly_cap_cents: 3000 })).at(-1)!.text).toContain("monthly limit $10.00 → $30.00");
    // Charging less, or turning it off, tells the provider only.
    expect(await put({ threshold_cents: 50, amount_cents: 500, monthly_cap_cents: 1000, min_interval_seconds: 3600, max_per_day: 2 })).toHaveLength(3);
    expect(await put(null)).toHaveLength(3);
    expect((await put(SETTINGS)).at(-1)!.text).toContain("was turned on");

    await pump(() => hook.about(id).length === 6, [id]);
    const events = hook.about(id).map((r) => r.event.data);
    const terms = { ...SETTINGS, min_interval_seconds: 600, max_per_day: 4 };
    expect(events[0]).toMatchObject({ previous: null, current: { enabled: true, ...terms, paused_reason: null } });
    expect(events[1]).toMatchObject({ previous: { threshold_cents: 80, monthly_cap_cents: 2000 }, current: { threshold_cents: 100, monthly_cap_cents: 1000 } });
    expect(events[4]).toMatchObject({ previous: { enabled: true, max_per_day: 2 }, current: { enabled: false } });
    expect(events[5]).toMatchObject({ previous: { enabled: false }, current: { enabled: true, ...terms } });
    expect((await summary(id)).emails).toMatchObject({ unsubscribed: true, by_cohort: { auto_topup_changed: { sent: 4 } } });
  });

  it("a notice MailChannels could not take (500) is sent once by its timer's retry; one whose answer was lost is never sent again", async () => {
    const doubles = connect();
    const email = `${uniqueId("retry")}@example.com`;
    const id = doubles.stripe.createCustomer({ email, name: "Rita Retry", balance: -1000 }).id;
    await deliverAll(doubles.stripe);
    doubles.mail.inject({ kind: "500" });
    expect((await admin("PUT", `/customers/${id}`, { auto_topup: SETTINGS })).status).toBe(200);
    await settle(id);
    expect(doubles.mail.sentTo(email)).toHaveLength(0);
    const rows = async () => (await admin("GET", `/customers/${id}/emails`)).body.emails as { cohort: string; status: string; attempts: number }[];
    expect(await rows()).toEqual([expect.objectContaining({ cohort: "auto_topup_changed", status: "retry", attempts: 1 })]);
    // The retry is due after its backoff: move it to now.
    await runInDurableObject(customerStub(id), (_instance, state) => {
      state.storage.sql.exec("UPDATE emails SET next_attempt_at = 0");
      state.storage.sql.exec("UPDATE timers SET due_at = 0 WHERE name = 'notices'");
    });
    await evictDurableObject(customerStub(id));
    await admin("GET", `/customers/${id}`);
    await settle(id);
    expect(doubles.mail.sentTo(email)).toHaveLength(1);
    expect(await rows()).toEqual([expect.objectContaining({ status: "sent", attempts: 2 })]);

    doubles.mail.inject({ kind: "drop_after_commit" });
    expect((await admin("PUT", `/customers/${id}`, { auto_topup: { ...SETTINGS, threshold_cents: 200 } })).status).toBe(200);
    await settle(id);
    await settle(id);
    expect(doubles.mail.sentTo(email)).toHaveLength(2);
    expect((await rows())[0]).toMatchObject({ status: "unknown" });
  });
});

describe("upgrade: auto top-up that relied on the default card, or whose threshold is not below its amount", () => {
  /** A customer as the object stored it before this version: every earlier migration, then its rows. */
  async function seedBefore(id: string, email: string, autoTopUp: { saved: string | null; threshold: number; amount: number }) {
    const mine = MIGRATIONS.findIndex((m) => m.includes(AUTO_TOPUP_TABLES.v14));
    await runInDurableObject(customerStub(id), (_instance, state) => {
      const sql = state.storage.sql;
      for (const migration of MIGRATIONS.slice(0, mine)) sql.exec(migration);
      sql.exec("CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, migrated_at INTEGER NOT NULL)");
      sql.exec("INSERT INTO schema_version (id, version, migrated_at) VALUES (1, ?, 0)", mine);
      const t = 1_760_000_000_000;
      sql.exec("INSERT INTO account (id, customer_id, email, name, plan, created_at, updated_at) VALUES (1, ?, ?, 'Old Auto', 'prepaid', ?, ?)", id, email, t, t);
      sql.exec(
        "INSERT INTO auto_topup (id, enabled, threshold_cents, amount_cents, monthly_cap_cents, saved_payment_method, saved_at, updated_at) VALUES (1, 1, ?, ?, 2000, ?, ?, ?)",
        autoTopUp.threshold,
        autoTopUp.amount,
        autoTopUp.saved,
        autoTopUp.saved ? t / 1000 : null,
        t,
      );
    });
    // The next instance opens the old database with the current code.
    await evictDurableObject(customerStub(id));
  }

  it("is paused at migration (no_saved_card, invalid_settings), auto_topup.paused is sent and the customer emailed once; valid settings with a saved card stay on", async () => {
    const doubles = connect();
    const hook = receiver();
    await createEndpoint(hook.url, ["auto_topup.paused"]);
    const cases = [
      { saved: null, threshold: 80, amount: 500, reason: "no_saved_card", text: "it used to charge the account's default card" },
      { saved: "pm_saved_old", threshold: 600, amount: 500, reason: "invalid_settings", text: "its threshold was not below the top-up amount" },
      { saved: "pm_saved_old", threshold: 80, amount: 500, reason: null, text: null },
    ];
    const customers = [];
    for (const c of cases) {
      const email = `${uniqueId("old")}@example.com`;
      const id = doubles.stripe.createCustomer({ email, name: "Old Auto" }).id;
      await seedBefore(id, email, c);
      customers.push({ ...c, id, email });
    }
    for (const c of customers) {
      const state = (await autoTopUpState(c.id)).auto_topup;
      await settle(c.id);
      expect(state).toMatchObject({ paused_reason: c.reason, paused_topup_id: null, min_interval_seconds: 600, max_per_day: 4 });
      if (c.reason) expect(state.why).toContain(c.text);
      await evictDurableObject(customerStub(c.id));
      await autoTopUpState(c.id);
      await settle(c.id);
      const sent = doubles.mail.sentTo(c.email);
      expect(sent.map((m) => m.subject)).toEqual(c.reason ? [CHANGED] : []);
      if (c.reason) expect(sent[0]!.text).toContain(`Automatic top-up is paused because ${c.text}`);
    }
    const paused = customers.filter((c) => c.reason);
    await pump(
      () => paused.every((c) => hook.about(c.id).length === 1),
      customers.map((c) => c.id),
    );
    for (const c of paused) expect(hook.about(c.id)[0]!.event.data).toMatchObject({ reason: c.reason, topup_id: null });
    // Nothing is charged for the paused ones, though they have no credit.
    expect(createCalls(doubles).filter((r) => paused.some((c) => c.id === r.params.customer))).toHaveLength(0);
  });
});
