export interface Region {
  name: string;
  rttMs: number;
  share: number;
}
export interface SimOptions {
  seed?: number;
  seconds?: number;
  ratePerSecond?: number;
  creditCents?: number;
  priceCents?: number;
  regions?: Region[];
  isolatesPerRegion?: number;
  crashMeanSeconds?: number;
  serviceMs?: number;
  shedAfterMs?: number;
  localMs?: number;
  jitterFraction?: number;
}
export interface LeaseDesign {
  kind: "lease";
  leaseCents?: number | "auto";
  maxLeaseCents?: number;
  ttlMs?: number;
  graceMs?: number;
  lowWater?: number;
  heartbeatMs?: number;
  grantFraction?: number;
  minGrantCents?: number;
  allowanceCents?: number;
  recallFactor?: number;
  idleReturnMs?: number;
}
export type Design = { kind: "rpc" } | LeaseDesign;
export interface SimResult {
  design: string;
  perRegion: Record<string, { requests: number; p50: number; p95: number; p99: number }>;
  requests: number;
  served: number;
  servedPerSecond: number;
  servedLocally: number;
  refused: number;
  falseRefusals: number;
  shed: number;
  crashes: number;
  lostInCrash: number;
  recalls: number;
  creditCents: number;
  spentCents: number;
  objectOpsPerSecond: number;
  overspendCents: number;
  overspendBoundCents: number;
  lostToCrashesCents: number;
  maxReservedCents: number;
  liveReserveCents: number;
  firstRefusalAtMs: number | null;
  balanceCents: number;
  ledger: { direct: number; settled: number; expired: number; lostToCrashes: number; lateRefund: number };
  accounted: boolean;
}
export const REGIONS: Region[];
export const DEFAULTS: Required<SimOptions>;
export const LEASE_DEFAULTS: Required<Omit<LeaseDesign, "kind">>;
export const LEASE_SIZES: (number | "auto")[];
export const SCENARIOS: { id: string; title: string; options: SimOptions; extra?: LeaseDesign[] }[];
export function prng(seed: number): () => number;
export function simulate(options?: SimOptions, design?: Design): SimResult;
export function runAll(options?: { scale?: number; seed?: number }): { scenario: (typeof SCENARIOS)[number]; options: SimOptions; results: SimResult[] }[];
export function formatTables(all: ReturnType<typeof runAll>): string;
