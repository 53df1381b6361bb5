import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Directory } from "../../../durable-objects/directory/index";
import { shardOf } from "../../../durable-objects/directory/placement";
import { connect, cron, deliverAll, settle } from "../connected/doubles";
import { ADMIN_TOKEN, admin, cookieOf, customerStub, formPost, gateway, uniqueId, withKey } from "../helpers";

/** This project runs with DIRECTORY_SHARDS = 4 (vitest.config.ts). */
const SHARDS = 4;

function shard(k: number): DurableObjectStub<Directory> {
  const ns = env.DIRECTORY as DurableObjectNamespace<Directory>;
  return ns.get(ns.idFromName(k === 0 ? "global" : `shard-${k}`));
}

/** The shards that list each customer (in their customers and rollup tables). */
async function whereListed(ids: string[]) {
  const found = new Map<string, number[]>(ids.map((id) => [id, []]));
  for (let k = 0; k < SHARDS; k++) {
    const rows = await runInDurableObject(shard(k), (_i, state) =>
      state.storage.sql
        .exec("SELECT id FROM customers UNION ALL SELECT customer_id FROM customer_rollup")
        .toArray()
        .map((r) => r.id as string),
    );
    for (const id of rows) found.get(id)?.push(k);
  }
  return found;
}

/**
 * `n` Stripe customers whose ids start with one prefix (searchable together), each funded with
 * `cents` and holding a key, each having made `requests` requests.
 */
async function customers(n: number, cents: number, requests = 1) {
  const { stripe, mail } = connect();
  const tag = uniqueId("sh");
  const made: { id: string; key: string; email: string }[] = [];
  for (let i = 0; i < n; i++) {
    const email = `${tag}.${i}@example.com`;
    const c = stripe.createCustomer({ email, name: `Shard ${tag} ${i}`, balance: -cents });
    made.push({ id: c.id, key: "", email });
  }
  await deliverAll(stripe);
  for (const c of made) {
    c.key = (await admin("POST", `/customers/${c.id}/keys`, {})).body.key as string;
    for (let r = 0; r < requests; r++) await gateway("/v1/x", withKey(c.key));
    await settle(c.id);
    await pushRollupNow(c.id);
  }
  return { stripe, mail, tag, made };
}

/** The rollup goes at most once a minute (ROLLUP_INTERVAL_SECONDS): push the latest now, so the overview is exact. */
async function pushRollupNow(id: string) {
  await runInDurableObject(customerStub(id), (_i, state) => {
    state.storage.sql.exec("UPDATE rollup_state SET pushed_at = 0");
    state.storage.sql.exec("INSERT INTO timers (name, due_at) VALUES ('rollup', 0) ON CONFLICT (name) DO UPDATE SET due_at = 0");
  });
  await evictDurableObject(customerStub(id));
  await settle(id);
}

async function pageAll(path: (cursor: string) => string, rowsOf: (body: any) => string[]) {
  const seen: string[] = [];
  let cursor: string | null = "";
  while (cursor !== null) {
    const page = await admin("GET", path(cursor));
    expect(page.status).toBe(200);
    seen.push(...rowsOf(page.body));
    cursor = page.body.next_cursor;
  }
  return seen;
}

describe("a directory in 4 shards (DIRECTORY_SHARDS = 4)", () => {
  it("lists each customer in the one shard its id hashes to; the overview sums the shards, search merges them, paged", async () => {
    const { tag, made } = await customers(16, 500);
    const listed = await whereListed(made.map((c) => c.id));
    for (const c of made) expect(listed.get(c.id)).toEqual([shardOf(c.id, SHARDS), shardOf(c.id, SHARDS)]);
    // 16 customers spread over more than one shard.
    expect(new Set(made.map((c) => shardOf(c.id, SHARDS))).size).toBeGreaterThan(1);

    const overview = (await admin("GET", "/overview")).body;
    const parts = await Promise.all([0, 1, 2, 3].map((k) => shard(k).overview()));
    expect(overview.customers).toBe(parts.reduce((n, p) => n + p.customers, 0));
    expect(overview.credit_outstanding.total_exact_cents).toBe(String(parts.reduce((n, p) => n + p.outstandingMicros, 0) / 1_000_000));
    expect(overview.customers).toBeGreaterThanOrEqual(16);
    // Each customer's one request is in the hourly usage, whatever its shard.
    const requests = overview.usage_totals.last_24h.find((m: { meter: string }) => m.meter === "api_requests").requests;
    expect(requests).toBeGreaterThanOrEqual(16);
    expect(requests).toBe(
      parts
        .flatMap((p) => p.usage)
        .filter((u) => u.meter === "api_requests")
        .reduce((n, u) => n + u.requests, 0),
    );

    // Search: every shard at once, merged by id, 3 a page, each customer once.
    const seen = await pageAll(
      (cursor) => `/customers?q=${tag}&limit=3${cursor ? `&cursor=${cursor}` : ""}`,
      (b) => b.customers.map((c: { id: string }) => c.id),
    );
    expect(seen).toEqual(made.map((c) => c.id).sort());

    // The dashboard reads the same: its overview and its customer search.
    const signedIn = await gateway("/dashboard/sign-in", formPost({ token: ADMIN_TOKEN, next: "/dashboard" }));
    const cookie = cookieOf(signedIn);
    const page = await (await gateway(`/dashboard/customers?q=${tag}`, { headers: { cookie } })).text();
    for (const c of made) expect(page).toContain(c.id);
    expect(await (await gateway("/dashboard", { headers: { cookie } })).text()).toContain(`<dd>${overview.customers}</dd>`);
  });

  it("the cron visits every shard: each customer's usage is reported once, and cohorts and their emails work across shards", async () => {
    const { stripe, mail, made } = await customers(12, 2, 3);
    // 3 requests of 1 cent on 2 cents: 2 served, then 402: every customer is out of credit.
    await cron();
    for (const c of made) {
      const usage = stripe.balanceTransactions(c.id).filter((t) => String(t.metadata?.payg_report).startsWith("payg_usage"));
      expect(usage.map((t) => t.amount)).toEqual([2]);
      expect(mail.sentTo(c.email).filter((m) => m.subject === "You're out of API credit")).toHaveLength(1);
    }
    await cron(Date.now() + 60_000);
    for (const c of made) expect(stripe.balanceTransactions(c.id).filter((t) => String(t.metadata?.payg_report).startsWith("payg_usage"))).toHaveLength(1);

    const counts = (await admin("GET", "/cohorts")).body.cohorts;
    const perShard = await Promise.all([0, 1, 2, 3].map((k) => shard(k).cohortCounts()));
    expect(counts.find((c: { name: string }) => c.name === "out_of_credits").members).toBe(perShard.reduce((n, p) => n + (p.out_of_credits ?? 0), 0));
    const members = await pageAll(
      (cursor) => `/cohorts/out_of_credits/members?limit=5${cursor ? `&cursor=${cursor}` : ""}`,
      (b) => b.members.map((m: { customer_id: string }) => m.customer_id),
    );
    expect(new Set(members).size).toBe(members.length);
    expect([...members].sort()).toEqual(members);
    for (const c of made) expect(members).toContain(c.id);
  });

  it("going from 1 shard to 4: the customers of an existing single directory move to their shards, and nothing is lost or counted twice", async () => {
    const { stripe, made } = await customers(10, 300, 2);
    const ids = made.map((c) => c.id);
    // The state a deployment at DIRECTORY_SHARDS = 1 left: every customer in "global", which
    // believes itself the only shard. (Rows are moved there as the old code would have written them.)
    for (let k = 1; k < SHARDS; k++) {
      const rows = await runInDurableObject(shard(k), (_i, state) => {
        const sql = state.storage.sql;
        const mine = ids.filter((id) => sql.exec("SELECT 1 FROM customers WHERE id = ?", id).toArray().length);
        const out = mine.map((id) => ({
          customer: sql.exec("SELECT * FROM customers WHERE id = ?", id).one(),
          rollup: sql.exec("SELECT * FROM customer_rollup WHERE customer_id = ?", id).toArray(),
          cohorts: sql.exec("SELECT * FROM cohort_members WHERE customer_id = ?", id).toArray(),
          usage: sql.exec("SELECT * FROM usage_hourly WHERE customer_id = ?", id).toArray(),
        }));
        for (const id of mine)
          for (const [t, col] of [
            ["customers", "id"],
            ["customer_rollup", "customer_id"],
            ["cohort_members", "customer_id"],
            ["usage_hourly", "customer_id"],
          ])
            sql.exec(`DELETE FROM ${t} WHERE ${col} = ?`, id);
        return out;
      });
      await runInDurableObject(shard(0), (_i, state) => {
        const sql = state.storage.sql;
        const insert = (table: string, row: Record<string, unknown>) =>
          sql.exec(
            `INSERT INTO ${table} (${Object.keys(row).join(", ")}) VALUES (${Object.keys(row)
              .map(() => "?")
              .join(", ")})`,
            ...(Object.values(row) as SqlStorageValue[]),
          );
        for (const r of rows) {
          insert("customers", r.customer);
          for (const x of r.rollup) insert("customer_rollup", x);
          for (const x of r.cohorts) insert("cohort_members", x);
          for (const x of r.usage) insert("usage_hourly", x);
        }
        sql.exec("UPDATE shard_state SET shard = 0, shards = 1, widest = 1, placed_for = 1, move_cursor = ''");
      });
    }
    const before = (await admin("GET", "/overview")).body;
    for (const [id, where] of await whereListed(ids)) expect([id, where]).toEqual([id, [0, 0]]);

    // The first cron run at 4 shards tells "global" it is shard 0 of 4: it moves the others out from its alarm.
    await cron();
    for (let i = 0; i < 10; i++) {
      const moving = await runInDurableObject(shard(0), (_i, state) => {
        const s = state.storage.sql.exec("SELECT shards, placed_for FROM shard_state").one();
        return s.shards !== s.placed_for;
      });
      if (!moving) break;
      await runDurableObjectAlarm(shard(0));
    }
    const listed = await whereListed(ids);
    for (const id of ids) expect([id, listed.get(id)]).toEqual([id, [shardOf(id, SHARDS), shardOf(id, SHARDS)]]);
    const after = (await admin("GET", "/overview")).body;
    expect(after.customers).toBe(before.customers);
    expect(after.credit_outstanding).toEqual(before.credit_outstanding);
    expect(after.usage_totals).toEqual(before.usage_totals);
    // Their cron went on through the move: each one's 2 cents reported exactly once.
    await cron(Date.now() + 60_000);
    for (const id of ids) {
      expect(
        stripe
          .balanceTransactions(id)
          .filter((t) => String(t.metadata?.payg_report).startsWith("payg_usage"))
          .map((t) => t.amount),
      ).toEqual([2]);
    }
  });
});
