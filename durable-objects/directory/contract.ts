/**
 * What the worker and the customer objects may know of the Directory object: the snapshot a
 * customer pushes, the stub, and one cron batch (visitDue), which both the worker's cron and the
 * directory's own alarm run.
 */
import type { Cohort } from "../../src/lib/config";

export { type Claim, visitDue } from "./sweep";

/** The one directory across customers. */
export function directoryStub(env: Env) {
  return env.DIRECTORY.get(env.DIRECTORY.idFromName("global"));
}

export interface DirectorySnapshot {
  customerId: string;
  email: string | null;
  name: string | null;
  deleted: boolean;
  cohorts: { cohort: Cohort; entered_at: number }[];
  dueAt: number | null;
  seq: number;
}
