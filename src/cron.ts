import { allShards, budgetShares, directoryShard, visitDue } from "../durable-objects/directory/contract";
import type { Config } from "./lib/config";

/**
 * The cron trigger fans out to the directory shards: it tells each where it stands and its share
 * of the Stripe budget (by the calls each asked for in the last minute), visits one batch taken
 * evenly from all of them, and every shard with more to do carries on from its own alarm. Its
 * subrequests: 3 per shard and CRON_BATCH_SIZE visits (or one per shard, whichever is more).
 */
export async function runCron(env: Env, config: Config, now: number) {
  const n = config.DIRECTORY_SHARDS;
  const shards = allShards(env, n);
  const demand = config.stripeEnabled && n > 1 ? await Promise.all(shards.map((shard) => shard.stripeDemand())) : shards.map(() => 0);
  const shares = budgetShares(demand);
  const perShard = Math.max(1, Math.floor(config.CRON_BATCH_SIZE / n));
  const claims = await Promise.all(shards.map((shard, k) => shard.claimDue(now, perShard, { shard: k, shards: n, sharePpm: shares[k]! })));
  const customerIds = claims.flatMap((claim) => claim.customerIds);
  const result = await visitDue(env, config, now, () => ({ customerIds, more: false }));
  await Promise.all(shards.map((shard, k) => (claims[k]!.more ? shard.continueSweep(now) : undefined)));
  // Shards past today's count (DIRECTORY_SHARDS was lowered) move their customers out from their alarms.
  const widest = claims[0]!.widest ?? n;
  for (let k = n; k < widest; k++) await directoryShard(env, k).continueSweep(now, { shard: k, shards: n, sharePpm: 1 });
  return { ...result, more: claims.some((claim) => claim.more), batching: claims.filter((claim) => claim.batching).length };
}
