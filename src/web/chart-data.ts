import { parseCentsDecimal } from "../lib/money";
import { HOUR_MS } from "../lib/time";

/** What a chart element carries to the page's script (uPlot): x in ms, y as integers. */
export interface ChartData {
  unit: "requests" | "tokens" | "money";
  currency: string;
  x: number[];
  series: { label: string; values: number[] }[];
}

export interface UsageRow {
  meter: string;
  at: number;
  requests: number;
  charged_exact_cents: string;
}

/** A tokens meter's usage by model (the admin API's `models.series`). */
export interface ModelUsageRow {
  meter: string;
  model: string;
  at: number;
  tokens: Record<string, number>;
  charged_exact_cents: string;
}

/** Hourly points over the last `hours` hours, zero-filled, one series per label. */
function hourly<Row extends { at: number }>(rows: Row[], hours: number, labelOf: (row: Row) => string, amountOf: (row: Row) => number, now: number) {
  const last = Math.floor(now / HOUR_MS) * HOUR_MS;
  const first = last - (hours - 1) * HOUR_MS;
  const x = Array.from({ length: hours }, (_, i) => first + i * HOUR_MS);
  const labels = [...new Set(rows.map(labelOf))].sort();
  const series = labels.map((label) => ({ label, values: x.map(() => 0) }));
  for (const row of rows) {
    const hour = Math.floor(row.at / HOUR_MS) * HOUR_MS;
    if (hour < first || hour > last) continue;
    series[labels.indexOf(labelOf(row))]!.values[(hour - first) / HOUR_MS]! += amountOf(row);
  }
  return { x, series };
}

const micros = (row: { charged_exact_cents: string }) => parseCentsDecimal(row.charged_exact_cents) ?? 0;

/**
 * Hourly points per meter from the admin API's usage rows: requests, or charges as integer
 * micro-cents (the page formats them with src/lib/money.ts).
 */
export function hourlyChart(rows: UsageRow[], hours: number, unit: "requests" | "money", currency: string, now = Date.now()): ChartData {
  return { unit, currency, ...hourly(rows, hours, (r) => r.meter, unit === "requests" ? (r) => r.requests : micros, now) };
}

/** Hourly points per model of a tokens meter: tokens of every kind, or charges in micro-cents. */
export function hourlyModelChart(rows: ModelUsageRow[], hours: number, unit: "tokens" | "money", currency: string, now = Date.now()): ChartData {
  const tokens = (r: ModelUsageRow) => Object.values(r.tokens).reduce((a, b) => a + b, 0);
  return { unit, currency, ...hourly(rows, hours, (r) => r.model, unit === "tokens" ? tokens : micros, now) };
}
