import type { Config } from "../../src/lib/config";
import { log } from "../../src/lib/log";
import { customerStub } from "../customer-account/contract";

const CONCURRENCY = 16;

export interface Claim {
  customerIds: string[];
  more: boolean;
  /** Whether this shard batches reports now (customers due outnumber its Stripe budget). */
  batching?: boolean;
  /** The most shards there have ever been (shard 0 knows): shards past today's count are drained. */
  widest?: number;
}

/**
 * Visits one batch of customers the directory lists as due (usage to report, emails to send).
 * Each visit runs in that customer's object, so its Stripe and MailChannels calls count against
 * the object's own subrequest budget; this invocation makes at most CRON_BATCH_SIZE + 2 calls.
 * With `perSecond` (a shard's alarm with Stripe on), visits start no faster than that.
 */
export async function visitDue(env: Env, config: Config, now: number, claim: (now: number, limit: number) => Promise<Claim> | Claim, perSecond: number | null = null) {
  const { customerIds, more } = await claim(now, config.CRON_BATCH_SIZE);
  let failed = 0;
  let next = 0;
  const started = Date.now();
  const worker = async () => {
    while (next < customerIds.length) {
      const index = next++;
      const id = customerIds[index]!;
      // Paced: visit i starts (i + 1) / perSecond seconds in (a visit mostly makes one Stripe call,
      // and the cron's own batch has just emptied the bucket).
      const startAt = perSecond === null ? 0 : started + ((index + 1) * 1000) / perSecond;
      if (startAt > Date.now()) await new Promise((resolve) => setTimeout(resolve, startAt - Date.now()));
      try {
        await customerStub(env, id).runCycle(now);
      } catch (error) {
        failed++;
        log.error(`cron: customer ${id} cycle failed`, error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, customerIds.length) }, worker));
  return { visited: customerIds.length, failed, more };
}
