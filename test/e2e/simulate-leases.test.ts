import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type LeaseDesign, simulate } from "../../scripts/simulate-leases.mjs";

// The credit-lease simulation behind docs/scaling.md: its invariants at a small scale.
describe("simulate:leases", () => {
  const small = { seconds: 8, ratePerSecond: 400, isolatesPerRegion: 2, crashMeanSeconds: 10 };

  it("today's design spends exactly the credit and refuses nothing while credit is left", () => {
    const r = simulate({ ...small, creditCents: 1_000 }, { kind: "rpc" });
    expect(r.spentCents).toBe(1_000);
    expect(r.falseRefusals).toBe(0);
    expect(r.overspendCents).toBe(0);
    expect(r.accounted).toBe(true);
  });

  it("leases never spend more than the credit without an allowance, and account for every cent", () => {
    fc.assert(
      fc.property(
        fc.record({
          seed: fc.integer({ min: 1, max: 1_000_000 }),
          creditCents: fc.integer({ min: 1, max: 3_000 }),
          ratePerSecond: fc.integer({ min: 50, max: 1_500 }),
          crashMeanSeconds: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 30 })),
          leaseCents: fc.oneof(fc.constant<"auto">("auto"), fc.integer({ min: 1, max: 300 })),
          ttlMs: fc.integer({ min: 300, max: 5_000 }),
          heartbeatMs: fc.integer({ min: 50, max: 2_000 }),
          // 1: jitter as large as the round trip itself, so messages overtake each other
          jitterFraction: fc.constantFrom(0.03, 1),
        }),
        ({ leaseCents, ttlMs, heartbeatMs, ...options }) => {
          const r = simulate({ ...small, seconds: 4, ...options }, { kind: "lease", leaseCents, ttlMs, heartbeatMs });
          expect(r.overspendCents).toBe(0);
          expect(r.accounted).toBe(true);
          // Credit spent by requests plus credit settled from crashed isolates' leases never exceeds it.
          expect(r.spentCents + r.lostToCrashesCents).toBeLessThanOrEqual(options.creditCents);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("with an allowance A, the overspend stays within A", () => {
    for (const seed of [1, 2, 3]) {
      const design: LeaseDesign = { kind: "lease", leaseCents: 100, allowanceCents: 40 };
      const r = simulate({ ...small, seed, creditCents: 800 }, design);
      expect(r.overspendCents).toBeLessThanOrEqual(40);
      expect(r.accounted).toBe(true);
    }
  });

  it("is deterministic for a seed, and leases take the round trip off most requests", () => {
    const design: LeaseDesign = { kind: "lease", leaseCents: 50 };
    expect(simulate({ ...small, seed: 7 }, design)).toEqual(simulate({ ...small, seed: 7 }, design));
    const today = simulate({ ...small, seed: 7 }, { kind: "rpc" });
    const leased = simulate({ ...small, seed: 7 }, design);
    expect(leased.perRegion["eu-west"]!.p50).toBeLessThan(1);
    expect(today.perRegion["eu-west"]!.p50).toBeGreaterThan(70);
    expect(leased.objectOpsPerSecond).toBeLessThan(today.objectOpsPerSecond / 4);
  });

  it("prints its tables (npm run simulate:leases)", { timeout: 60_000 }, async () => {
    const root = join(import.meta.dirname, "..", "..");
    const { stdout } = await promisify(execFile)(process.execPath, [join(root, "scripts/simulate-leases.mjs")], {
      cwd: root,
      env: { ...process.env, SIM_SCALE: "0.05" },
    });
    for (const id of ["far", "hot", "runs_out"]) expect(stdout).toContain(`#### \`${id}\``);
    expect(stdout).toContain("| today: one RPC |");
    expect(stdout).toContain("| lease L=auto");
    expect(stdout).toMatch(/overspend within its bound in every run: yes/);
  });
});
