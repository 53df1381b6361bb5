import { describe, expect, it } from "vitest";
import { simulate } from "../../scripts/simulate-control-plane.mjs";

/** The model behind docs/operating/scaling.md's table: its claims hold at every size it prints. */
describe("npm run simulate:control-plane", () => {
  it("keeps Stripe calls within the budget and every report within max_report_delay_seconds, at 10k and 100k customers", { timeout: 120_000 }, () => {
    for (const customers of [10_000, 100_000]) {
      const r = simulate(customers, { days: 2 });
      expect(r.peakCallsPerSecond, `${customers}`).toBeLessThanOrEqual(r.budgetPerSecond);
      expect(r.reportsPerSecond).toBeLessThanOrEqual(r.perEndpointPerSecond);
      expect(r.worstReportDelaySeconds, `${customers}`).toBeLessThanOrEqual(r.maxReportDelaySeconds);
    }
  });

  it("reports every cycle while the budget allows, and batches only past it", { timeout: 60_000 }, () => {
    expect(simulate(10_000, { days: 2 })).toMatchObject({ batchingShare: 0, worstReportDelaySeconds: 0 });
    expect(simulate(10_000, { days: 2, perEndpointPerSecond: 1 }).batchingShare).toBeGreaterThan(0);
  });
});
