import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ADMIN_TOKEN, admin, cookieOf, customerStub, echoOrigin, formPost, gateway, uniqueId, withKey } from "../helpers";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A customer with payg_leases on, one key and `cents` of credit. */
async function leasedCustomer(prefix: string, cents: number) {
  const id = uniqueId(prefix);
  expect((await admin("PUT", `/customers/${id}`, { email: `${id}@example.com`, metadata: { payg_leases: "on" } })).status).toBe(201);
  const key = (await admin("POST", `/customers/${id}/keys`, {})).body.key as string;
  await admin("POST", `/customers/${id}/credits`, { amount: cents, reason: "test grant" });
  return { id, key };
}

describe("credit leases through the gateway", () => {
  it("pays a leased customer's requests from a lease, exact to the cent, and refuses exactly when the credit is gone", async () => {
    echoOrigin();
    const { id, key } = await leasedCustomer("cus_lease", 30);
    const stub = customerStub(id);
    const statuses: number[] = [];
    let leased = 0;
    let paidLocally = 0;
    for (let i = 0; i < 40; i++) {
      const response = await gateway("/v1/things", withKey(key));
      await response.arrayBuffer();
      statuses.push(response.status);
      // The object names the grant that paid; a lease paid with no round trip to it.
      if (response.status === 200 && !response.headers.has("x-payg-grant")) paidLocally++;
      if ((await stub.leases())!.leases.length > 0) leased++;
    }
    // 30 cents at 1 cent a request: 30 served, then refused, whether a lease or the object paid.
    expect(statuses.filter((s) => s === 200)).toHaveLength(30);
    expect(statuses.slice(30).every((s) => s === 402)).toBe(true);
    expect(leased).toBeGreaterThan(0);
    expect(paidLocally).toBeGreaterThan(0);
    const books = (await stub.balanceCheck())!;
    expect(books.balanceMicros).toBe(0);
    expect(books.ledgerSumMicros).toBe(0);
    expect((await stub.leases())!.reserved_micros).toBe(0);
  });

  it("keeps the direct path for a customer without payg_leases: no lease is ever granted", async () => {
    echoOrigin();
    const id = uniqueId("cus_nolease");
    expect((await admin("PUT", `/customers/${id}`, { email: `${id}@example.com` })).status).toBe(201);
    const key = (await admin("POST", `/customers/${id}/keys`, {})).body.key as string;
    await admin("POST", `/customers/${id}/credits`, { amount: 5, reason: "test grant" });
    for (let i = 0; i < 7; i++) await (await gateway("/v1/things", withKey(key))).arrayBuffer();
    const view = (await customerStub(id).leases())!;
    expect(view.mode).toBe("off");
    expect(view.leases).toEqual([]);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(0);
  });

  it("shows the live leases and their reserves on the admin API, and 404 for an unknown customer", async () => {
    echoOrigin();
    const { id, key } = await leasedCustomer("cus_leaseview", 100);
    for (let i = 0; i < 5; i++) await (await gateway("/v1/things", withKey(key))).arrayBuffer();
    const view = await admin("GET", `/customers/${id}/leases`);
    expect(view.status).toBe(200);
    const object = (await customerStub(id).leases())!;
    expect(object.leases.length).toBeGreaterThan(0);
    const lease = object.leases[0]!;
    expect(view.body).toMatchObject({ mode: "on", reserved_exact_cents: String(object.reserved_micros / 1_000_000) });
    expect((view.body.leases as unknown[])[0]).toMatchObject({
      id: lease.id,
      isolate: lease.isolate,
      granted_exact_cents: String(lease.granted_micros / 1_000_000),
      reserve_exact_cents: String(lease.reserve_micros / 1_000_000),
    });
    // What the balance shows as taken is the reserve plus what was settled: 100 cents in all.
    const summary = (await admin("GET", `/customers/${id}`)).body as { balance: { available_exact_cents: string } };
    expect(Number(summary.balance.available_exact_cents) + object.reserved_micros / 1_000_000 + lease.spent_micros / 1_000_000).toBeLessThanOrEqual(100);
    const unknown = await admin("GET", `/customers/${uniqueId("cus_nobody")}/leases`);
    expect(unknown.status).toBe(404);
    expect((unknown.body.error as { code: string }).code).toBe("not_found");
  });

  it("the dashboard's customer page shows the live leases and their reserves", async () => {
    echoOrigin();
    const { id, key } = await leasedCustomer("cus_leasedash", 100);
    for (let i = 0; i < 5; i++) await (await gateway("/v1/things", withKey(key))).arrayBuffer();
    const lease = (await customerStub(id).leases())!.leases[0]!;
    const signIn = await gateway("/dashboard/sign-in", formPost({ token: ADMIN_TOKEN, next: "/dashboard" }));
    const html = await (await gateway(`/dashboard/customers/${id}`, { headers: { cookie: cookieOf(signIn) } })).text();
    expect(html).toContain("Credit leases");
    expect(html).toContain(`data-lease="${lease.id}"`);
    expect(html).toMatch(/data-leases-reserved="true">\d+(\.\d+)?</);
    // A customer without leases shows no panel.
    const other = uniqueId("cus_noleasedash");
    await admin("PUT", `/customers/${other}`, { email: `${other}@example.com` });
    const plain = await (await gateway(`/dashboard/customers/${other}`, { headers: { cookie: cookieOf(signIn) } })).text();
    expect(plain).not.toContain("Credit leases");
  });

  it("an isolate that goes quiet after a busy spell returns its lease once idle: never left to expire with its unspent reserve charged", { timeout: 60_000 }, async () => {
    echoOrigin();
    const { id, key } = await leasedCustomer("cus_leasequiet", 10_000);
    const stub = customerStub(id);
    // Busy for 19 s, just short of one watcher's 20 s window: the last request leaves the lease
    // live, and only a watcher armed by a later request of the spell is still there to return it.
    let served = 0;
    const start = Date.now();
    while (Date.now() - start < 19_000) {
      const response = await gateway("/v1/things", withKey(key));
      await response.arrayBuffer();
      if (response.status === 200) served++;
      await sleep(250);
    }
    // Returned within a few seconds of idleness, long before the object's expiry (TTL 10 s + grace after the last sync).
    for (let i = 0; i < 60 && (await stub.leases())!.leases.length > 0; i++) await sleep(100);
    expect((await stub.leases())!.leases).toEqual([]);
    const books = (await stub.balanceCheck())!;
    const expired = await runInDurableObject(stub, (_instance, state) => state.storage.sql.exec("SELECT * FROM ledger WHERE kind = 'lease_expired'").toArray());
    expect(expired).toEqual([]);
    expect(books.balanceMicros).toBe((10_000 - served) * 1_000_000);
  });

  it("a lease granted by a slow first sync is still watched: returned once the isolate is idle", { timeout: 30_000 }, async () => {
    echoOrigin();
    const { id, key } = await leasedCustomer("cus_leaseslow", 1_000);
    const stub = customerStub(id);
    // The object busy for 2.5 s: the first request's sync (which asks for the lease) is answered
    // after the watcher's first tick, which then sees no lease yet, only a sync on its way.
    const busy = runInDurableObject(stub, (_instance, state) => state.blockConcurrencyWhile(() => sleep(2_500)));
    await sleep(50);
    expect((await gateway("/v1/things", withKey(key))).status).toBe(200);
    await busy;
    expect((await stub.leases())!.leases).toHaveLength(1);
    // No more requests: the watcher returns it after ~2 s idle, long before the object's expiry.
    for (let i = 0; i < 80 && (await stub.leases())!.leases.length > 0; i++) await sleep(100);
    expect((await stub.leases())!.leases).toEqual([]);
    expect((await stub.balanceCheck())!.balanceMicros).toBe(999 * 1_000_000);
  });
});
