import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

// Keeps `npm run bench` from rotting: the same script at a tiny scale, checked for its table
// and for the accounting checks it prints.
describe("npm run bench (smoke)", () => {
  it("prints the table with every row and exact accounting", { timeout: 180_000 }, async () => {
    const root = join(import.meta.dirname, "..", "..");
    const { stdout } = await promisify(execFile)(process.execPath, [join(root, "scripts/bench.mjs")], {
      cwd: root,
      env: { ...process.env, BENCH_SCALE: "0.005", BENCH_MAX_SECONDS: "30" },
      maxBuffer: 16 * 1024 * 1024,
    });
    const table = stdout.slice(stdout.indexOf("| row |"));
    for (const row of ["1. Enforcement overhead: plain proxy", "1. Enforcement overhead: gateway", "1. Enforcement overhead at 1 connection", "2. One hot customer", "3. Many customers", "4. Stripe traffic", "5. Storage"]) {
      expect(table).toContain(row);
    }
    expect(table).toMatch(/= credit ÷ price: yes\), \d+ × 402, balance 0/);
    // Stripe calls are bounded by customers × cron runs, however many requests there were.
    const debits = [...table.matchAll(/\| (\d+) balance transactions \(at most customers × runs = (\d+)\)/g)];
    expect(debits).toHaveLength(3);
    for (const [, got, bound] of debits) {
      expect(Number(got)).toBeGreaterThan(0);
      expect(Number(got)).toBeLessThanOrEqual(Number(bound));
    }
    expect(stdout).toMatch(/Machine: \d+ cores/);
  });
});
