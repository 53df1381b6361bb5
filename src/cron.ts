import { directoryStub, visitDue } from "../durable-objects/directory/contract";
import type { Config } from "./lib/config";

/** The cron trigger: one batch here; if more are due, the directory's alarm carries on. */
export async function runCron(env: Env, config: Config, now: number) {
  const directory = directoryStub(env);
  const result = await visitDue(env, config, now, (at, limit) => directory.claimDue(at, limit));
  if (result.more) await directory.continueSweep(now);
  return result;
}
