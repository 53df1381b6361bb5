import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { raised } from "../../../durable-objects/customer-account/auto-topup/notice";
import { type AutoTopUpSettings, monthOf, nextUtcDay, planTopUp } from "../../../durable-objects/customer-account/auto-topup/plan";
import { liftedByNewCard } from "../../../durable-objects/customer-account/contract";
import { admin, customerWithCredit } from "../helpers";

const DAY = 86_400_000;
const settingsArb = fc
  .record({
    threshold_cents: fc.integer({ min: 0, max: 10_000 }),
    amount_cents: fc.integer({ min: 500, max: 5_000 }),
    monthly_cap_cents: fc.integer({ min: 500, max: 20_000 }),
    min_interval_seconds: fc.integer({ min: 60, max: 2 * 86_400 }),
    max_per_day: fc.integer({ min: 1, max: 10 }),
  })
  .filter((s) => s.threshold_cents < s.amount_cents && s.monthly_cap_cents >= s.amount_cents);
// Times in 2026-2027, so UTC days and months turn over inside a run.
const timeArb = fc.integer({ min: Date.UTC(2026, 0, 1), max: Date.UTC(2027, 11, 31) });

describe("auto top-up decisions", () => {
  it("months are UTC calendar months, days UTC days", () => {
    expect(monthOf(Date.UTC(2026, 10, 30, 23, 59, 59, 999))).toBe("2026-11");
    expect(monthOf(Date.UTC(2026, 11, 1, 0, 0, 0, 0))).toBe("2026-12");
    expect(monthOf(Date.UTC(2027, 0, 1))).toBe("2027-01");
    expect(nextUtcDay(Date.UTC(2026, 10, 30, 23, 59, 59, 999))).toBe(Date.UTC(2026, 11, 1));
    expect(nextUtcDay(Date.UTC(2026, 11, 1))).toBe(Date.UTC(2026, 11, 2));
  });

  it("starts a top-up only below the threshold, with none pending, within the monthly cap, the interval and the day's limit", () => {
    fc.assert(
      fc.property(
        settingsArb,
        fc.boolean(),
        fc.integer({ min: -1_000_000_000, max: 20_000_000_000 }),
        fc.integer({ min: 0, max: 20_000 }),
        fc.integer({ min: 0, max: 12 }),
        fc.option(fc.integer({ min: 0, max: 3 * DAY }), { nil: null }),
        timeArb,
        (settings, pending, availableMicros, monthTotalCents, dayCount, agoMs, now) => {
          const lastStartedAt = agoMs === null ? null : now - agoMs;
          const plan = planTopUp({ settings, pending, availableMicros, monthTotalCents, dayCount, lastStartedAt, now });
          const below = availableMicros < settings.threshold_cents * 1_000_000;
          const fits = monthTotalCents + settings.amount_cents <= settings.monthly_cap_cents;
          const intervalEnds = lastStartedAt === null ? now : lastStartedAt + settings.min_interval_seconds * 1000;
          const dayEnds = dayCount >= settings.max_per_day ? Math.floor(now / DAY) * DAY + DAY : now;
          const at = Math.max(now, intervalEnds, dayEnds);
          const expected = pending || !below ? { kind: "none" } : !fits ? { kind: "capped" } : at > now ? { kind: "wait", at } : { kind: "start" };
          expect(plan).toEqual(expected);
        },
      ),
    );
  });

  it("whatever the balance does, no two top-ups start within min_interval_seconds and at most max_per_day start in a UTC day", () => {
    // A run of balance changes (debits, debts, credits) at random times; every top-up the plan
    // starts succeeds at once and credits its amount; the plan is asked again after each change
    // and whenever it said to wait (the timer).
    const step = fc.record({ afterMs: fc.integer({ min: 0, max: 6 * 3_600_000 }), deltaMicros: fc.integer({ min: -50_000_000_000, max: 2_000_000_000 }) });
    fc.assert(
      fc.property(
        settingsArb.map((s) => ({ ...s, monthly_cap_cents: 10_000_000 })),
        timeArb,
        fc.array(step, { minLength: 1, maxLength: 80 }),
        (settings: AutoTopUpSettings, start, steps) => {
          let now = start;
          let balance = 0;
          const starts: number[] = [];
          const ask = () => {
            const dayStart = Math.floor(now / DAY) * DAY;
            const plan = planTopUp({
              settings,
              pending: false,
              availableMicros: balance,
              monthTotalCents: 0,
              dayCount: starts.filter((t) => t >= dayStart).length,
              lastStartedAt: starts.at(-1) ?? null,
              now,
            });
            if (plan.kind === "start") {
              starts.push(now);
              balance += settings.amount_cents * 1_000_000;
            }
            return plan;
          };
          for (const { afterMs, deltaMicros } of steps) {
            // The timer fires at each `wait` time that falls before the next change.
            for (let plan = ask(); plan.kind === "wait" && plan.at <= now + afterMs; ) {
              now = plan.at;
              plan = ask();
            }
            now += afterMs;
            balance += deltaMicros;
          }
          for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(settings.min_interval_seconds * 1000);
          const perDay = new Map<number, number>();
          for (const t of starts) perDay.set(Math.floor(t / DAY), (perDay.get(Math.floor(t / DAY)) ?? 0) + 1);
          for (const n of perDay.values()) expect(n).toBeLessThanOrEqual(settings.max_per_day);
        },
      ),
    );
  });

  it("a new card lifts only a card failure's pause; the email goes out for every change that lets more be charged", () => {
    for (const reason of ["card_declined", "authentication_required", "no_payment_method", "stripe_unavailable", "expired_card"]) expect(liftedByNewCard(reason)).toBe(true);
    for (const reason of ["dispute", "refund", "below_threshold", "no_saved_card", "invalid_settings", null]) expect(liftedByNewCard(reason)).toBe(false);
    const base = { threshold_cents: 500, amount_cents: 2000, monthly_cap_cents: 10_000, min_interval_seconds: 600, max_per_day: 4 };
    expect(raised(base, base, "usd")).toEqual([]);
    expect(raised(base, { ...base, threshold_cents: 400, amount_cents: 1500, monthly_cap_cents: 5000, max_per_day: 2, min_interval_seconds: 3600 }, "usd")).toEqual([]);
    expect(raised(base, { ...base, threshold_cents: 1000 }, "usd")).toEqual(["threshold $5.00 → $10.00"]);
    expect(raised(base, { ...base, monthly_cap_cents: 20_000 }, "usd")).toEqual(["monthly limit $100.00 → $200.00"]);
    expect(raised(base, { ...base, amount_cents: 2500, max_per_day: 5, min_interval_seconds: 60 }, "usd")).toEqual([
      "amount $20.00 → $25.00",
      "top-ups a day 4 → 5",
      "time between top-ups 10 minutes → 1 minute",
    ]);
  });
});

describe("auto top-up with Stripe off", () => {
  it("is refused with 409 stripe_not_configured and changes nothing; turning it off is harmless", async () => {
    const { id } = await customerWithCredit(100);
    const refused = await admin("PUT", `/customers/${id}`, { name: "Changed", auto_topup: { threshold_cents: 100, amount_cents: 500, monthly_cap_cents: 1000 } });
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: "stripe_not_configured", requestId: expect.any(String) });
    const summary = (await admin("GET", `/customers/${id}`)).body;
    expect(summary.customer.name).toBe("Test Customer");
    expect(summary.auto_topup).toBeNull();
    expect((await admin("PUT", `/customers/${id}`, { auto_topup: null })).status).toBe(200);
    expect((await admin("GET", `/customers/${id}/auto-top-up`)).body).toEqual({ customer_id: id, stripe: false, auto_topup: null, topups: [] });
    expect((await admin("POST", `/customers/${id}/auto-top-up`, {})).status).toBe(405);
  });
});
