import { Hono } from "hono";
import { type AppEnv, allShards, mergeCohortMembers } from "../../env";
import { queryInt } from "../../http";
import { COHORTS, type Cohort } from "../../lib/config";
import { ApiError } from "../../lib/errors";

/** `/admin/cohorts…`: member counts and paged member lists, answered by the directory shards (merged by customer id). */
export const cohorts = new Hono<AppEnv>();

cohorts.get("/cohorts", async (c) => {
  const counts: Record<string, number> = {};
  for (const part of await Promise.all(allShards(c.env, c.var.config.DIRECTORY_SHARDS).map((shard) => shard.cohortCounts()))) {
    for (const [name, n] of Object.entries(part)) counts[name] = (counts[name] ?? 0) + (n as number);
  }
  return c.json({ cohorts: COHORTS.map((name) => ({ name, members: counts[name] ?? 0 })) });
});

cohorts.get("/cohorts/:cohort/members", async (c) => {
  const cohort = c.req.param("cohort");
  if (!(COHORTS as readonly string[]).includes(cohort)) throw new ApiError("not_found", `No cohort ${cohort}.`);
  const limit = queryInt(c, "limit", 50, 1, 500);
  const cursor = c.req.query("cursor") ?? null;
  const pages = await Promise.all(allShards(c.env, c.var.config.DIRECTORY_SHARDS).map((shard) => shard.cohortMembers(cohort as Cohort, cursor, limit)));
  return c.json(mergeCohortMembers(pages, limit));
});
