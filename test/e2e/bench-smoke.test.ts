import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const IDS = [
  "plain",
  "rpc_only",
  "floor",
  "gateway",
  "plain_1conn",
  "floor_1conn",
  "gateway_1conn",
  "floor_hot",
  "hot",
  "hot_no_group_commit",
  "storage",
  "storage_month",
  "many_customers",
  "gateway_rpc_delay_40ms",
  "gateway_rpc_delay_40ms_leases",
  "hot_leases",
  "plain_stream",
  "js_stream",
  "gateway_stream",
  "stripe_calls_10c",
  "stripe_calls_100c",
  "stripe_calls_100c_4x",
  "sweep_2000",
  "cap",
  "hold",
  "idempotency",
  "postpaid",
];
/** The gateway rows whose requests the counted pass counts (scripts/bench/counts.mjs). */
const COUNTED = [
  "gateway",
  "gateway_1conn",
  "hot",
  "hot_no_group_commit",
  "many_customers",
  "gateway_rpc_delay_40ms",
  "gateway_rpc_delay_40ms_leases",
  "hot_leases",
  "gateway_stream",
  "cap",
  "hold",
  "idempotency",
  "postpaid",
];
const COUNT_FIELDS = ["rows_written_per_request", "rows_written_per_request_lifetime", "rows_read_per_request", "rpcs_per_request", "cpu_us_per_request", "cost_per_million_usd"];

/** Every counted row has every count, each a number ≥ 0; a plain charge is one object request. */
function expectCounts(rows: BenchRow[], ids: string[]) {
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const id of ids) {
    const row = byId.get(id)!;
    for (const field of COUNT_FIELDS) {
      expect(typeof row[field], `${id}.${field}`).toBe("number");
      expect(row[field] as number, `${id}.${field}`).toBeGreaterThanOrEqual(0);
    }
    expect(row.rows_written_per_request_lifetime as number, id).toBeGreaterThanOrEqual(row.rows_written_per_request as number);
    expect(row.rows_written_per_request as number, id).toBeGreaterThan(0);
    expect(row.cost_per_million_usd as number, id).toBeGreaterThan(0.3);
  }
  expect(byId.get("gateway")!.rpcs_per_request).toBe(1);
}

interface BenchRow {
  id: string;
  rps: number | null;
  p50_ms: number | null;
  p99_ms: number | null;
  requests?: number;
  runs?: unknown[];
  [field: string]: unknown;
}

// Keeps `npm run bench` from rotting: the same script at a tiny scale and one repetition,
// checked for its table, its JSON file and the accounting checks it prints.
describe("npm run bench (smoke)", () => {
  it("prints the table with every row id, exact accounting, and writes the JSON", { timeout: 420_000 }, async () => {
    const root = join(import.meta.dirname, "..", "..");
    const jsonPath = join(mkdtempSync(join(tmpdir(), "payg-bench-smoke-")), "bench.json");
    const { stdout } = await promisify(execFile)(process.execPath, [join(root, "scripts/bench.mjs")], {
      cwd: root,
      env: { ...process.env, BENCH_SCALE: "0.005", BENCH_REPEAT: "1", BENCH_MAX_SECONDS: "30", BENCH_JSON: jsonPath },
      maxBuffer: 16 * 1024 * 1024,
    });
    const table = stdout.slice(stdout.indexOf("| id |"));
    for (const id of IDS) expect(table).toContain(`| \`${id}\` |`);
    expect(stdout).toMatch(/floor {3}= ×\d+\.\d\d of plain pass-through/);
    expect(stdout).toMatch(/gateway = ×\d+\.\d\d of the floor/);
    // Every repetition of both hot rows spends exactly the credit and leaves 0.
    const exact = /= credit ÷ price in every run: yes\), \d+ × 402, balance 0 \|/g;
    expect(table.match(exact)).toHaveLength(2);
    expect(table).toMatch(/bounded in every run: yes/);
    expect(table).toMatch(/\| `storage_month` \|.*every cent reported or pending: yes; balance = ledger sum: yes; bounded: yes \|/);
    // Stripe calls are bounded by customers × cron runs, however many requests there were.
    const debits = [...table.matchAll(/\| (\d+) balance transactions at most in a run \(at most customers × runs = (\d+)\)/g)];
    expect(debits).toHaveLength(3);
    for (const [, got, bound] of debits) {
      expect(Number(got)).toBeGreaterThan(0);
      expect(Number(got)).toBeLessThanOrEqual(Number(bound));
    }
    expect(stdout).toMatch(/Machine: \d+ cores/);

    const json = JSON.parse(readFileSync(jsonPath, "utf8")) as {
      machine: Record<string, unknown>;
      ratios: Record<string, number | null>;
      rows: BenchRow[];
    };
    for (const field of ["cores", "cpu_model", "memory_gib", "node", "workerd", "date", "scale", "repeat"]) {
      expect(json.machine).toHaveProperty(field);
    }
    expect(json.machine.repeat).toBe(1);
    expect(json.rows.map((r) => r.id)).toEqual(IDS);
    for (const row of json.rows) {
      if (row.id === "sweep_2000") {
        // Every cent charged reported, and the budget kept every call under Stripe's limit.
        expect(row.cents_reported).toBe(row.cents_charged);
        expect(row.cents_charged as number).toBeGreaterThan(0);
        expect(row.stripe_429_answered).toBe(0);
        for (const field of ["customers", "stripe_calls", "cycle_seconds"]) expect(row[field], field).toBeGreaterThan(0);
        continue;
      }
      if (row.id === "storage") {
        expect(row.ledger_rows).toBeGreaterThan(0);
        continue;
      }
      if (row.id === "storage_month") {
        // 30 simulated days at any scale (coarser steps below 1): every step served, the old rows
        // gone by the retention timers, and nothing lost on the way.
        expect(row.simulated_days).toBe(30);
        expect(row.statuses).toEqual({ 200: row.steps });
        expect(row.reports_archived as number).toBeGreaterThan(0);
        expect((row.tables as Record<string, number>).reports).toBe(row.reports_kept);
        expect(row.reports_kept as number).toBeLessThanOrEqual((row.bound as { reports: number }).reports);
        expect(row.usage_rows as number).toBeLessThanOrEqual((row.bound as { usage_rows: number }).usage_rows);
        expect(row).toMatchObject({ usage_accounted: true, balance_equals_ledger_sum: true, bounded: true });
        continue;
      }
      expect(row.rps, row.id).toBeGreaterThan(0);
      expect(row.p50_ms, row.id).toBeGreaterThan(0);
      expect(row.p99_ms!, row.id).toBeGreaterThanOrEqual(row.p50_ms!);
      expect(row.runs, row.id).toHaveLength(1);
    }
    const byId = new Map(json.rows.map((r) => [r.id, r]));
    expect(byId.get("hot")!.exact).toBe(true);
    expect(byId.get("hot_no_group_commit")!.exact).toBe(true);
    expect(byId.get("hot")!.balance_cents).toBe("0");
    // The delayed row pays two artificial 40 ms waits per request.
    expect(byId.get("gateway_rpc_delay_40ms")!.p50_ms).toBeGreaterThanOrEqual(80);
    // Leased customers: every micro-cent of credit served or back in the balance once the leases returned.
    for (const id of ["gateway_rpc_delay_40ms_leases", "hot_leases"]) expect(byId.get(id), id).toMatchObject({ overspend_micros: 0, settled: true, books_exact: true });
    expect(byId.get("gateway_rpc_delay_40ms_leases")!.all_credit_served).toBe(true);
    expect(byId.get("plain_stream")!.events).toBe(byId.get("plain_stream")!.events_expected);
    expect(byId.get("js_stream")!.events).toBe(byId.get("js_stream")!.events_expected);
    // Every event of every metered stream arrived, and the customers paid exactly for them.
    expect(byId.get("gateway_stream")!.events).toBe(byId.get("gateway_stream")!.events_expected);
    expect(byId.get("gateway_stream")!.exact).toBe(true);
    expect(table).toMatch(/charged = events × price in every run: yes/);
    expect(json.ratios.floor_vs_plain).toBeGreaterThan(0);
    expect(json.ratios.gateway_vs_floor).toBeGreaterThan(0);
    expect(json.ratios.gateway_stream_vs_js_stream).toBeGreaterThan(0);
    expectCounts(json.rows, COUNTED);
    expect(json.ratios.cpu_gateway_vs_floor).toBeGreaterThan(0);
    expect(stdout).toMatch(/Cost per million at Cloudflare's list prices/);
  });

  it("counts what a billed request costs with --counts", { timeout: 360_000 }, async () => {
    const root = join(import.meta.dirname, "..", "..");
    const jsonPath = join(mkdtempSync(join(tmpdir(), "payg-bench-counts-")), "bench.json");
    const { stdout } = await promisify(execFile)(process.execPath, [join(root, "scripts/bench.mjs"), "--counts"], {
      cwd: root,
      // Enough requests that every warm-up reaches every customer (an object's first charge after a
      // start places its cohorts and is written with its effects).
      env: { ...process.env, BENCH_SCALE: "0.5", BENCH_MAX_SECONDS: "30", BENCH_JSON: jsonPath },
      maxBuffer: 16 * 1024 * 1024,
    });
    const json = JSON.parse(readFileSync(jsonPath, "utf8")) as {
      machine: Record<string, unknown>;
      ratios: Record<string, number>;
      paired_cpu: { ratio: number; floor_us: number; gateway_us: number; chunk_ratios: number[] };
      cost_per_million_usd: { id: string; total: number }[];
      cron_idle: { customers: number; rpcs_per_run: number };
      rows: BenchRow[];
    };
    expect(json.machine.counts_mode).toBe(true);
    expect(json.rows.map((r) => r.id)).toEqual(["plain", "floor", "gateway", "hot", "gateway_stream", "cap", "hold", "idempotency", "postpaid"]);
    expectCounts(json.rows, ["gateway", "hot", "gateway_stream", "cap", "hold", "idempotency", "postpaid"]);
    expect(json.cost_per_million_usd.map((line) => line.id)).toEqual(["gateway", "hot", "cap", "idempotency", "hold", "postpaid", "gateway_stream"]);
    // The CPU ratio is paired: 8 interleaved chunks a side, the ratio of their sums.
    expect(json.paired_cpu.chunk_ratios).toHaveLength(8);
    expect(json.ratios.cpu_gateway_vs_floor).toBeCloseTo(json.paired_cpu.gateway_us / json.paired_cpu.floor_us, 2);
    expect(stdout).toMatch(/\| `gateway` \|.*\| 1\.00 DO req, \d+\.\d\d rows written/);
    // The writes cut (docs/design/one-row-per-charge.md): a plain, a capped key's and a post-paid
    // charge write their charge row only (v22 layout, the journal).
    const byId = new Map(json.rows.map((r) => [r.id, r]));
    expect(byId.get("gateway")!.rows_written_per_request).toBeLessThanOrEqual(1.1);
    expect(byId.get("cap")!.rows_written_per_request).toBeLessThanOrEqual(1.1);
    expect(byId.get("postpaid")!.rows_written_per_request).toBeLessThanOrEqual(1.1);
    // An Idempotency-Key's charge: its charge row, then its one idempotency row (docs/design/idempotency-in-two-rows.md).
    expect(byId.get("idempotency")!.rows_written_per_request).toBeLessThanOrEqual(2.2);
    // A held request writes its hold's row and its settlement's UPDATE only (docs/design/journaled-holds.md).
    expect(byId.get("hold")!.rows_written_per_request).toBeLessThanOrEqual(2.2);
    // The cron's visit to customers with nothing due writes nothing (a shard's share only on change).
    expect(json.cron_idle).toMatchObject({ runs: 5, rows_written_per_run: 0 });
    expect(json.cron_idle.rpcs_per_run).toBeGreaterThanOrEqual(1);
    expect(json.cron_idle.customers).toBeGreaterThan(100);
  });

  it("runs one row alone with --only", { timeout: 120_000 }, async () => {
    const root = join(import.meta.dirname, "..", "..");
    const jsonPath = join(mkdtempSync(join(tmpdir(), "payg-bench-only-")), "bench.json");
    const { stdout } = await promisify(execFile)(process.execPath, [join(root, "scripts/bench.mjs"), "--only", "sweep_2000"], {
      cwd: root,
      env: { ...process.env, BENCH_SCALE: "0.005", BENCH_REPEAT: "1", BENCH_MAX_SECONDS: "30", BENCH_JSON: jsonPath },
      maxBuffer: 16 * 1024 * 1024,
    });
    const table = stdout.slice(stdout.indexOf("| id |"));
    expect(table).toContain("| `sweep_2000` |");
    expect(table).not.toContain("| `plain` |");
    const json = JSON.parse(readFileSync(jsonPath, "utf8")) as { rows: BenchRow[] };
    expect(json.rows.map((r) => r.id)).toEqual(["sweep_2000"]);
    expect(json.rows[0]).toMatchObject({ stripe_429_answered: 0, cents_reported: json.rows[0]!.cents_charged });
  });
});
