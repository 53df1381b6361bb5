import { parseCentsDecimal } from "../lib/money";
import { HOUR_MS } from "../lib/time";

/** What a chart element carries to the page's script (uPlot): x in ms, y as integers. */
export interface ChartData {
  unit: "requests" | "money";
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

/**
 * Hourly points per meter over the last `hours` hours, zero-filled, from the admin API's usage
 * rows: requests, or charges as integer micro-cents (the page formats them with src/money.ts).
 */
export function hourlyChart(rows: UsageRow[], hours: number, unit: ChartData["unit"], currency: string, now = Date.now()): ChartData {
  const last = Math.floor(now / HOUR_MS) * HOUR_MS;
  const first = last - (hours - 1) * HOUR_MS;
  const x = Array.from({ length: hours }, (_, i) => first + i * HOUR_MS);
  const meters = [...new Set(rows.map((r) => r.meter))].sort();
  const series = meters.map((meter) => ({ label: meter, values: x.map(() => 0) }));
  for (const row of rows) {
    const hour = Math.floor(row.at / HOUR_MS) * HOUR_MS;
    if (hour < first || hour > last) continue;
    const values = series[meters.indexOf(row.meter)]!.values;
    values[(hour - first) / HOUR_MS]! += unit === "requests" ? row.requests : (parseCentsDecimal(row.charged_exact_cents) ?? 0);
  }
  return { unit, currency, x, series };
}
