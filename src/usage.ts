import { formatCents } from "./lib/money";

export interface UsagePoint {
  meter: string;
  /** Start of the hour (overview) or usage bucket (one customer), ms since the epoch. */
  at: number;
  requests: number;
  micros: number;
}

/** The admin API's shape of a usage point: charges as exact decimal cents, like the rest of the API. */
export function usageJson(points: UsagePoint[]) {
  return points.map((p) => ({ meter: p.meter, at: p.at, requests: p.requests, charged_exact_cents: formatCents(p.micros) }));
}

/** Requests and charges per meter over the points at or after `since`. */
export function totalsByMeter(points: UsagePoint[], since: number) {
  const totals = new Map<string, { requests: number; micros: number }>();
  for (const p of points) {
    if (p.at < since) continue;
    const t = totals.get(p.meter) ?? { requests: 0, micros: 0 };
    t.requests += p.requests;
    t.micros += p.micros;
    totals.set(p.meter, t);
  }
  return [...totals.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([meter, t]) => ({ meter, requests: t.requests, charged_exact_cents: formatCents(t.micros) }));
}
