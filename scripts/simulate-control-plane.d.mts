export interface ControlPlaneOptions {
  seed?: number;
  days?: number;
  callsPerSecond?: number;
  perEndpointPerSecond?: number;
  checkoutReservedPercent?: number;
  minReportCents?: number;
  maxReportDelaySeconds?: number;
  reconcileIntervalSeconds?: number;
  rollupIntervalSeconds?: number;
  cronBatchSize?: number;
  visitMs?: number;
  shardCounts?: number[];
}
export interface ControlPlaneResult {
  customers: number;
  active: number;
  callsPerSecond: number;
  peakCallsPerSecond: number;
  budgetPerSecond: number;
  reportsPerSecond: number;
  perEndpointPerSecond: number;
  worstReportDelaySeconds: number;
  maxReportDelaySeconds: number;
  batchingShare: number;
  cycleSeconds: number;
  reconcileEverySeconds: number;
  centsUsed: number;
  centsReported: number;
  perShard: { shards: number; directoryRequestsPerSecond: number; sweepCeilingPerSecond: number }[];
}
export const CLASSES: { name: string; share: number; centsPerDay: number; continuous: boolean }[];
export const DEFAULTS: Required<ControlPlaneOptions>;
export const SIZES: number[];
export function prng(seed: number): () => number;
export function simulate(customers: number, options?: ControlPlaneOptions): ControlPlaneResult;
export function runAll(options?: ControlPlaneOptions): ControlPlaneResult[];
export function formatTables(results: ControlPlaneResult[]): string;
