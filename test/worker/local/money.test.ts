import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatCents, formatMoney, parseCentsDecimal } from "../../../src/lib/money";
import { ADMIN_TOKEN, customerStub, customerWithCredit, echoOrigin, gateway, gatewayWith, withKey } from "../helpers";

describe("money", () => {
  it("parses and formats decimal cents exactly", () => {
    expect(parseCentsDecimal("0.05")).toBe(50_000);
    expect(parseCentsDecimal("12.345")).toBe(12_345_000);
    expect(parseCentsDecimal("1e3")).toBeNull();
    expect(parseCentsDecimal("0.1234567")).toBeNull();
    expect(formatCents(50_000)).toBe("0.05");
    expect(formatCents(-1_500_000)).toBe("-1.5");
    expect(formatMoney(1_234_500_000, "usd")).toBe("$12.345");
    expect(formatMoney(5_000_000, "eur")).toBe("0.05 EUR");
    fc.assert(fc.property(fc.integer({ min: 0, max: 1_000_000_000_000_000 }), (micros) => parseCentsDecimal(formatCents(micros)) === micros));
  });

  it("shows a sub-cent default price on /admin/status exactly as configured", async () => {
    const pricing = { PRICING: '{"currency":"usd","default_price_cents":"0.000003"}' };
    const status = await gatewayWith(pricing, "/admin/status", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(status.status).toBe(200);
    expect(((await status.json()) as { default_price_cents: unknown }).default_price_cents).toBe("0.000003");
  });

  it("charges a 0.05-cent meter exactly: 20 searches cost exactly 1 cent", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(1);
    for (let i = 0; i < 20; i++) {
      const response = await gateway("/v1/search/items", withKey(key));
      expect(response.status).toBe(200);
      expect(response.headers.get("x-payg-charge-cents")).toBe("0.05");
    }
    const refused = await gateway("/v1/search/items", withKey(key));
    expect(refused.status).toBe(402);
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: 0, ledgerSumMicros: 0 });
  });
});
