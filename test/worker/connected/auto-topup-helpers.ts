import { runInDurableObject } from "cloudflare:test";
import type Stripe from "stripe";
import { expect } from "vitest";
import type { CustomerAccount } from "../../../durable-objects/customer-account";
import { admin, customerStub, gateway, uniqueId, withKey } from "../helpers";
import { type connect, deliverAll, settle } from "./doubles";

export type Doubles = ReturnType<typeof connect>;
export const SETTINGS = { threshold_cents: 80, amount_cents: 500, monthly_cap_cents: 2000 };

/**
 * A Checkout top-up of 500 cents with "save my card for auto top-up", paid with `card`. A card the
 * issuer declines cannot pay in Checkout: `pm_card_chargeCustomerFail` is saved as a good card
 * that the issuer declines from then on (as a card cancelled after it was saved).
 */
export async function saveCard(doubles: Doubles, key: string, card = "pm_card_visa") {
  const declines = card === "pm_card_chargeCustomerFail";
  const response = await gateway("/billing/checkout", withKey(key, { method: "POST", body: JSON.stringify({ amount_cents: 500, save_payment_method: true }) }));
  expect(response.status).toBe(201);
  const session = doubles.stripe.completeCheckout(((await response.json()) as { id: string }).id, { paymentMethod: declines ? "pm_card_visa" : card });
  await deliverAll(doubles.stripe);
  const paymentIntent = session.payment_intent as string;
  const pm = doubles.stripe.getPaymentIntent(paymentIntent)!.payment_method as string;
  if (declines) doubles.stripe.declineFromNowOn(pm);
  return { pm, paymentIntent };
}

/**
 * A Stripe customer with `cents` of credit and a default card (`invoice_settings`, never charged
 * by auto top-up), known at the edge, with a key and auto top-up on. With `card`, a Checkout top-up
 * saved that card for auto top-up first (its 500 cents taken off again, so the credit is `cents`).
 */
export async function autoTopUpCustomer(doubles: Doubles, cents: number, card: string | null, settings: Record<string, number> = SETTINGS) {
  const email = `${uniqueId("auto")}@example.com`;
  const customer = doubles.stripe.createCustomer({ email, name: "Ada Auto", balance: -cents, paymentMethod: "pm_card_visa", defaultPaymentMethod: true });
  await deliverAll(doubles.stripe);
  const id = customer.id;
  const key = (await admin("POST", `/customers/${id}/keys`, {})).body.key as string;
  const saved = card ? await saveCard(doubles, key, card) : null;
  if (saved) {
    expect((await admin("POST", `/customers/${id}/credits`, { amount: -500, reason: "back to the starting credit" })).status).toBe(201);
    await settle(id);
  }
  const set = await admin("PUT", `/customers/${id}`, { auto_topup: settings });
  expect(set.status).toBe(200);
  expect(set.body.auto_topup).toMatchObject({ enabled: true, ...settings, state: saved ? "active" : "no_card", paused: false });
  const defaultCard = doubles.stripe.getCustomer(id)!.invoice_settings.default_payment_method as string;
  return { id, key, email, card: saved, defaultCard };
}

export const createCalls = (doubles: Doubles) => doubles.stripe.requests.filter((r) => r.method === "POST" && r.path === "/v1/payment_intents");
export const summary = async (id: string) => (await admin("GET", `/customers/${id}`)).body;
export const autoTopUpState = async (id: string) => (await admin("GET", `/customers/${id}/auto-top-up`)).body;
export const cohorts = async (id: string) => (await summary(id)).cohorts.current.map((c: { cohort: string }) => c.cohort) as string[];
export const grants = async (id: string) =>
  (await admin("GET", `/customers/${id}/grants`)).body.grants as { source: string; amount_cents: number; payment_intent: string | null }[];
/** Stripe's events about auto top-up PaymentIntents (not the Checkout top-ups that saved the card). */
export const paymentIntentEvents = (doubles: Doubles, type: string) =>
  doubles.stripe.events.filter((e) => e.type === type && (e.data.object as Stripe.PaymentIntent).metadata?.payg_auto_topup) as Stripe.Event[];

export async function deduct(id: string, cents: number) {
  expect((await admin("POST", `/customers/${id}/credits`, { amount: -cents, reason: "usage elsewhere" })).status).toBe(201);
  await settle(id);
}

interface RoomInternals {
  autoTopUp: { pending(): { id: string } | undefined; update(id: string, f: object): void; load(): void };
  timers: { set(n: string, at: number): void; load(): void; rearm(): void };
}
const internals = (instance: CustomerAccount) => (instance as unknown as { context: RoomInternals }).context;

/** Makes the pending top-up's retry due now (instead of after its backoff) and runs it. */
export async function retryNow(id: string) {
  await runInDurableObject(customerStub(id), (instance: CustomerAccount) => {
    const context = internals(instance);
    const pending = context.autoTopUp.pending();
    if (pending) context.autoTopUp.update(pending.id, { next_attempt_at: 0 });
    context.timers.set("auto_topup", Date.now());
  });
  await settle(id);
}

/**
 * `seconds` pass for auto top-up: its top-ups started that much earlier and its timer is due that
 * much sooner (the object's clock is the real one), then its alarm runs what is due.
 */
export async function later(id: string, seconds: number) {
  await runInDurableObject(customerStub(id), (instance: CustomerAccount, state) => {
    const sql = state.storage.sql;
    sql.exec("UPDATE topups SET created_at = created_at - ?", seconds * 1000);
    sql.exec("UPDATE timers SET due_at = MAX(0, due_at - ?) WHERE name = 'auto_topup'", seconds * 1000);
    const context = internals(instance);
    context.autoTopUp.load();
    context.timers.load();
    context.timers.rearm();
  });
  await settle(id);
}

/** When the auto top-up timer is due, or null. */
export async function autoTopUpTimer(id: string): Promise<number | null> {
  return runInDurableObject(customerStub(id), (_instance, state) => {
    return (state.storage.sql.exec("SELECT due_at FROM timers WHERE name = 'auto_topup'").toArray()[0]?.due_at as number | undefined) ?? null;
  });
}
