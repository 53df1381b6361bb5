import { Hono } from "hono";
import { type AppEnv, directoryStub } from "../../env";
import { queryInt } from "../../http";
import { COHORTS, type Cohort } from "../../lib/config";
import { ApiError } from "../../lib/errors";

/** `/admin/cohorts…`: member counts and paged member lists, answered by the directory. */
export const cohorts = new Hono<AppEnv>();

cohorts.get("/cohorts", async (c) => {
  const counts = await directoryStub(c.env).cohortCounts();
  return c.json({ cohorts: COHORTS.map((name) => ({ name, members: counts[name] ?? 0 })) });
});

cohorts.get("/cohorts/:cohort/members", async (c) => {
  const cohort = c.req.param("cohort");
  if (!(COHORTS as readonly string[]).includes(cohort)) throw new ApiError("not_found", `No cohort ${cohort}.`);
  const limit = queryInt(c, "limit", 50, 1, 500);
  return c.json(await directoryStub(c.env).cohortMembers(cohort as Cohort, c.req.query("cursor") ?? null, limit));
});
