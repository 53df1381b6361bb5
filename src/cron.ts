import { customerStub, directoryStub } from "./env";

/** Customers visited per cron invocation; the rest wait for the next minute (see README). */
export const CRON_BATCH = 200;
const CONCURRENCY = 16;

/**
 * Visits only customers the directory lists as due (usage to report, emails to send). Each
 * visit runs in that customer's object, so Stripe and MailChannels calls count against the
 * object's own subrequest budget, and this invocation makes at most CRON_BATCH + 1 calls.
 */
export async function runCron(env: Env, now: number): Promise<{ visited: number; failed: number; more: boolean }> {
  const { customerIds, more } = await directoryStub(env).claimDue(now, CRON_BATCH);
  let failed = 0;
  let next = 0;
  const worker = async () => {
    while (next < customerIds.length) {
      const id = customerIds[next++]!;
      try {
        await customerStub(env, id).runCycle(now);
      } catch (error) {
        failed++;
        console.error(`cron: customer ${id} cycle failed`, error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, customerIds.length) }, worker));
  return { visited: customerIds.length, failed, more };
}
