// The counts in the table and the JSON, and the cost per million requests they add up to.
import { costPerMillion, PRICES } from "./counts.mjs";
import { fmt } from "./load.mjs";

/** The rows `--counts` runs: plain and the floor (their CPU, the gateway row's cells) and the rows of the cost table. */
export const COUNTS_IDS = ["plain", "floor", "gateway", "hot", "gateway_stream", "cap", "hold", "idempotency", "postpaid"];

/** The cost table's lines: what is priced, from which row, and per how many of what. */
const LINES = [
  { id: "gateway", line: "a plain charge (100 customers, 32 connections)", per: "1M requests" },
  { id: "hot", line: "a hot customer (one customer, 64 connections, group commit)", per: "1M requests" },
  { id: "cap", line: "a charge on a key with a spend cap", per: "1M requests" },
  { id: "idempotency", line: "a request with an Idempotency-Key", per: "1M requests" },
  { id: "hold", line: "a held request settled from the response", per: "1M requests" },
  { id: "postpaid", line: "a post-paid charge", per: "1M requests" },
  { id: "gateway_stream", line: "a metered stream (sse:events, held 17 at a time)", per: "1B events (1M × 1,000)", events: 1000 },
];

const r = (v, digits) => (Number.isFinite(v) ? Number(v.toFixed(digits)) : null);

/** A row's counts with its CPU (the median timed run's) and cost, or null when it was not counted. */
function priced(stats, id) {
  const c = stats.counts(id);
  if (!c) return null;
  const cpu = stats.m(id)?.cpu_us_per_request ?? null;
  const cost = costPerMillion({ ...c, cpu_us_per_request: cpu });
  return { ...c, cpu_us_per_request: cpu, cost };
}

export function costRows(stats) {
  const table = [];
  for (const { id, line, per, events } of LINES) {
    const p = priced(stats, id);
    if (!p) continue;
    // A stream is one request of many events: its cost per request scaled to 1,000 events.
    const scale = events ? events / Math.max(1, p.events / Math.max(1, p.requests)) : 1;
    table.push({
      id,
      line,
      per,
      total: r(p.cost.total * scale, 4),
      lines: Object.fromEntries(Object.entries(p.cost.lines).map(([k, v]) => [k, r(v * scale, 4)])),
    });
  }
  return { prices: PRICES, table };
}

export function countsJson(stats, id) {
  const p = priced(stats, id);
  if (!p) return {};
  const per = (map) => Object.fromEntries(Object.entries(map).map(([k, v]) => [k, r(v, 4)]));
  return {
    rows_written_per_request: r(p.rows_written_per_request, 4),
    rows_written_per_request_lifetime: r(p.rows_written_per_request_lifetime, 4),
    rows_read_per_request: r(p.rows_read_per_request, 4),
    rpcs_per_request: r(p.rpcs_per_request, 4),
    duration_ms_per_request: r(p.duration_ms_per_request, 4),
    cpu_us_per_request: r(p.cpu_us_per_request, 1),
    cost_per_million_usd: r(p.cost.total, 4),
    counted: {
      requests: p.requests,
      rpcs_per_request_lifetime: r(p.rpcs_per_request_lifetime, 4),
      alarms_per_request: r(p.alarms_per_request, 4),
      rpcs_by_method: per(p.rpcs_by_method),
      written_on_path_by_table: per(p.written_on_path_by_table),
      written_by_table_lifetime: per(p.written_by_table),
      cost_lines: per(p.cost.lines),
    },
  };
}

/** The table's last cell: the counts of a counted row, the CPU of any other timed row. */
export function countsCell(stats, id) {
  const p = priced(stats, id);
  const cpu = stats.m(id)?.cpu_us_per_request;
  if (!p) return Number.isFinite(cpu) ? `${fmt(cpu)} µs CPU` : "";
  return (
    `${fmt(p.rpcs_per_request, 2)} DO req, ${fmt(p.rows_written_per_request, 2)} rows written (${fmt(p.rows_written_per_request_lifetime, 2)} over the life), ` +
    `${fmt(p.rows_read_per_request, 1)} read, ${fmt(p.duration_ms_per_request, 2)} ms DO duration, ${fmt(cpu)} µs CPU: $${fmt(p.cost.total, 3)} per million`
  );
}

export function countsSummary(stats) {
  const { table } = stats.costs;
  if (!table.length) return [];
  const cpuRatio = stats.ratios.cpu_gateway_vs_floor;
  return [
    "",
    `Cost per million at Cloudflare's list prices (read ${PRICES.read_on}; rows over their life, CPU of the timed run):`,
    ...table.map((t) => `  ${t.id.padEnd(15)} $${fmt(t.total, 3)} per ${t.per}: ${t.line}`),
    ...(Number.isFinite(cpuRatio)
      ? [
          `  CPU per request: gateway = ×${fmt(cpuRatio, 2)} of the floor's, paired (${fmt(stats.pairedCpu.gateway_us)} µs ÷ ${fmt(stats.pairedCpu.floor_us)} µs over ${stats.pairedCpu.chunk_ratios.length} interleaved chunks a side; chunks ×${fmt(Math.min(...stats.pairedCpu.chunk_ratios), 2)}–×${fmt(Math.max(...stats.pairedCpu.chunk_ratios), 2)}); the timed runs' medians ×${fmt(stats.ratios.cpu_gateway_vs_floor_timed_runs, 2)}`,
        ]
      : []),
  ];
}
