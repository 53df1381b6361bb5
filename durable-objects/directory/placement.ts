/**
 * Where a customer's directory entry lives: shard `shardOf(id, n)` of n, by FNV-1a (32 bits) of
 * its id, stable across deployments and isolates. Shard 0 keeps the name the single directory
 * always had ("global"), so a deployment staying at one shard keeps its data, and the singletons
 * (signed-out dashboard sessions, the test outbox) stay there whatever the count.
 */
export function shardOf(customerId: string, shards: number): number {
  if (shards <= 1) return 0;
  let hash = 0x811c9dc5;
  for (let i = 0; i < customerId.length; i++) {
    hash ^= customerId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % shards;
}

export function shardName(shard: number): string {
  return shard === 0 ? "global" : `shard-${shard}`;
}

/** Which shard this object is, and of how many: told by every cron run (an object cannot read its own name). */
export interface Placement {
  shard: number;
  shards: number;
  /** This shard's fraction of the Stripe budget, in millionths (the cron rebalances it by demand). */
  sharePpm: number;
}

/**
 * The budget's split among shards, in millionths: half of it evenly (a shard whose customers
 * wake up is never starved), half by the calls each asked for in the last minute.
 */
export function budgetShares(demand: number[]): number[] {
  const n = demand.length;
  const total = demand.reduce((a, b) => a + b, 0);
  return demand.map((d) => Math.floor(1_000_000 * (total === 0 ? 1 / n : 0.5 / n + (0.5 * d) / total)));
}
