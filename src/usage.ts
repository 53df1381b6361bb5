import { TOKEN_KINDS, type TokenKind } from "./lib/meters";
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

/** A tokens meter's usage of one model in one bucket: requests, tokens per kind, and their charge. */
export interface ModelUsagePoint {
  meter: string;
  model: string;
  at: number;
  requests: number;
  tokens: Record<TokenKind, number>;
  micros: number;
}

export function modelUsageJson(points: ModelUsagePoint[]) {
  return points.map((p) => ({ meter: p.meter, model: p.model, at: p.at, requests: p.requests, tokens: p.tokens, charged_exact_cents: formatCents(p.micros) }));
}

/** Requests, tokens per kind and charges per meter and model over the points at or after `since`. */
export function totalsByModel(points: ModelUsagePoint[], since: number) {
  const totals = new Map<string, ModelUsagePoint>();
  for (const p of points) {
    if (p.at < since) continue;
    const key = `${p.meter}\u0000${p.model}`;
    const t = totals.get(key) ?? {
      meter: p.meter,
      model: p.model,
      at: since,
      requests: 0,
      tokens: Object.fromEntries(TOKEN_KINDS.map((k) => [k, 0])) as Record<TokenKind, number>,
      micros: 0,
    };
    t.requests += p.requests;
    for (const kind of TOKEN_KINDS) t.tokens[kind] += p.tokens[kind];
    t.micros += p.micros;
    totals.set(key, t);
  }
  return [...totals.values()]
    .sort((a, b) => a.meter.localeCompare(b.meter) || a.model.localeCompare(b.model))
    .map((t) => ({ meter: t.meter, model: t.model, requests: t.requests, tokens: t.tokens, charged_exact_cents: formatCents(t.micros) }));
}
