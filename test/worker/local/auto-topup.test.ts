import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { monthOf, planTopUp } from "../../../durable-objects/customer-account/auto-topup";
import { admin, customerWithCredit } from "../helpers";

describe("auto top-up decisions", () => {
  it("months are UTC calendar months", () => {
    expect(monthOf(Date.UTC(2026, 10, 30, 23, 59, 59, 999))).toBe("2026-11");
    expect(monthOf(Date.UTC(2026, 11, 1, 0, 0, 0, 0))).toBe("2026-12");
    expect(monthOf(Date.UTC(2027, 0, 1))).toBe("2027-01");
  });

  it("starts a top-up only below the threshold, with none pending, and never past the monthly cap", () => {
    fc.assert(
      fc.property(
        fc.record({
          threshold_cents: fc.integer({ min: 0, max: 10_000 }),
          amount_cents: fc.integer({ min: 500, max: 5_000 }),
          monthly_cap_cents: fc.integer({ min: 500, max: 20_000 }),
        }),
        fc.boolean(),
        fc.integer({ min: -1_000_000_000, max: 20_000_000_000 }),
        fc.integer({ min: 0, max: 20_000 }),
        (settings, pending, availableMicros, monthTotalCents) => {
          const plan = planTopUp({ settings, pending, availableMicros, monthTotalCents });
          const below = availableMicros < settings.threshold_cents * 1_000_000;
          const fits = monthTotalCents + settings.amount_cents <= settings.monthly_cap_cents;
          expect(plan).toBe(pending || !below ? "none" : fits ? "start" : "capped");
        },
      ),
    );
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
