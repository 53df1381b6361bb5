/**
 * What the worker and the customer objects may know of the Directory objects: where a customer's
 * shard is, the snapshot a customer pushes, the stubs, one cron batch (visitDue, which both the
 * worker's cron and a shard's own alarm run), and the merge of the shards' answers.
 */
import type { Cohort } from "../../src/lib/config";
import { shardName, shardOf } from "./placement";

export { mergeCohortMembers, mergeCustomerPages, sumOverviews } from "./merge";
export { budgetShares, type Placement, shardOf } from "./placement";
export { type Claim, visitDue } from "./sweep";

/** Shard k of the directory (0 is the single directory of old, "global"). */
export function directoryShard(env: Env, shard: number) {
  return env.DIRECTORY.get(env.DIRECTORY.idFromName(shardName(shard)));
}

/** Shard 0: also where the singletons live (signed-out dashboard sessions, the test outbox). */
export function directoryStub(env: Env) {
  return directoryShard(env, 0);
}

/** The shard that lists this customer and holds the Stripe budget its calls take from. */
export function directoryFor(env: Env, customerId: string, shards: number) {
  return directoryShard(env, shardOf(customerId, shards));
}

export function allShards(env: Env, shards: number) {
  return Array.from({ length: shards }, (_, k) => directoryShard(env, k));
}

export interface DirectorySnapshot {
  customerId: string;
  email: string | null;
  name: string | null;
  deleted: boolean;
  cohorts: { cohort: Cohort; entered_at: number }[];
  dueAt: number | null;
  /** dueAt without the periodic reconcile (absent from a customer not upgraded yet: then dueAt is all the sweep knows). */
  workAt?: number | null;
  /** While reports are batched: since when this customer's unreported usage has waited (null: nothing held). */
  heldSince?: number | null;
  seq: number;
}
