/**
 * Credit leases over the real `wrangler dev` (docs/scaling.md): a leased customer under 64
 * connections is exact to the cent, and a revoked key and a top-up take effect within the stated
 * bound, 2 × heartbeat_ms plus one round trip. Every wait polls with a deadline derived from that
 * bound; nothing sleeps to assert timing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { customerWithKey, type Gateway, startGateway } from "./harness";

const LEASES = { ttl_ms: 10_000, heartbeat_ms: 1_000, max_lease_cents: 200, max_leases: 64 };
/** One round trip to the object, generously: wrangler dev on a shared 2-core machine. */
const ROUND_TRIP_MS = 1_000;
const BOUND_MS = 2 * LEASES.heartbeat_ms + ROUND_TRIP_MS;

let gateway: Gateway;
let origin: Awaited<ReturnType<typeof startDemoOrigin>>;

beforeAll(async () => {
  origin = await startDemoOrigin({ port: 0 });
  gateway = await startGateway({ vars: { ORIGIN_URL: origin.url, LEASES: JSON.stringify(LEASES) } });
});
afterAll(async () => {
  await gateway?.stop();
  await origin?.close();
});

const bearer = (key: string) => ({ headers: { authorization: `Bearer ${key}` } });

async function leasedCustomer(id: string, cents: number) {
  const customer = await customerWithKey(gateway, id, 0);
  expect((await gateway.admin("PUT", `/customers/${id}`, { metadata: { payg_leases: "on" } })).status).toBe(200);
  if (cents) expect((await gateway.admin("POST", `/customers/${id}/credits`, { amount: cents, reason: "e2e" })).status).toBe(201);
  return customer;
}

const statusOf = async (key: string) => {
  const response = await gateway.fetch("/v1/lease", bearer(key));
  await response.arrayBuffer();
  return response.status;
};

/** Sends requests until the object lists a live lease (a lease pays them from then on). */
async function untilLeased(id: string, key: string) {
  const deadline = Date.now() + 10 * BOUND_MS;
  while (Date.now() < deadline) {
    expect(await statusOf(key)).toBe(200);
    if ((await gateway.admin("GET", `/customers/${id}/leases`)).body.leases.length > 0) return;
  }
  throw new Error(`no lease granted to ${id} within ${10 * BOUND_MS} ms`);
}

/** Polls until every lease is back (idle isolates return theirs), at worst TTL + grace. */
async function untilReturned(id: string) {
  const deadline = Date.now() + 2 * LEASES.ttl_ms;
  let view = (await gateway.admin("GET", `/customers/${id}/leases`)).body;
  while (view.leases.length && Date.now() < deadline) view = (await gateway.admin("GET", `/customers/${id}/leases`)).body;
  return view;
}

describe("credit leases over wrangler dev", () => {
  it("300 cents under 64 connections: exactly 300 pass, and once the leases are back the books are exact to the cent", async () => {
    const { key } = await leasedCustomer("cus_e2e_lease_race", 300);
    const statuses: number[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < 400) {
          next++;
          statuses.push(await statusOf(key));
        }
      }),
    );
    expect(statuses.filter((s) => s === 200)).toHaveLength(300);
    expect(statuses.filter((s) => s === 402)).toHaveLength(100);
    const view = await untilReturned("cus_e2e_lease_race");
    expect(view).toMatchObject({ mode: "on", reserved_exact_cents: "0", leases: [] });
    const summary = await gateway.admin("GET", "/customers/cus_e2e_lease_race");
    expect(summary.body.balance).toMatchObject({ available_exact_cents: "0", ledger_sum_exact_cents: "0", total_exact_cents: "0" });
    const usage = summary.body.ledger_summary.find((r: { kind: string }) => r.kind === "usage");
    expect(usage).toMatchObject({ count: 300, total_cents: "-300" });
  });

  it("a revoked key stops within 2 × heartbeat_ms plus a round trip, in every request after", async () => {
    const { key, keyId } = await leasedCustomer("cus_e2e_lease_revoke", 500);
    await untilLeased("cus_e2e_lease_revoke", key);
    expect((await gateway.admin("DELETE", `/customers/cus_e2e_lease_revoke/keys/${keyId}`)).status).toBe(204);
    const revokedAt = Date.now();
    let lastServed = revokedAt;
    let refused = 0;
    // Keep asking until 5 requests in a row are refused, or the bound (and then some) has passed.
    while (refused < 5 && Date.now() < revokedAt + 3 * BOUND_MS) {
      const status = await statusOf(key);
      if (status === 200) {
        lastServed = Date.now();
        refused = 0;
      } else {
        expect(status).toBe(401);
        refused++;
      }
    }
    expect(refused).toBe(5);
    expect(lastServed - revokedAt).toBeLessThanOrEqual(BOUND_MS);
    // Nothing served after the revocation is lost: served + balance = credit once the leases are back.
    await untilReturned("cus_e2e_lease_revoke");
    const summary = await gateway.admin("GET", "/customers/cus_e2e_lease_revoke");
    expect(summary.body.balance.ledger_sum_exact_cents).toBe(summary.body.balance.total_exact_cents);
  });

  it("a top-up unblocks a leased customer within the bound", async () => {
    const { key } = await leasedCustomer("cus_e2e_lease_topup", 20);
    // Spend it all (leases pay most), until the object refuses.
    const deadline = Date.now() + 10 * BOUND_MS;
    let status = 200;
    while (status === 200 && Date.now() < deadline) status = await statusOf(key);
    expect(status).toBe(402);
    expect((await gateway.admin("POST", "/customers/cus_e2e_lease_topup/credits", { amount: 10, reason: "top-up" })).status).toBe(201);
    const toppedUpAt = Date.now();
    let servedAt: number | null = null;
    while (servedAt === null && Date.now() < toppedUpAt + 3 * BOUND_MS) if ((await statusOf(key)) === 200) servedAt = Date.now();
    expect(servedAt).not.toBeNull();
    expect(servedAt! - toppedUpAt).toBeLessThanOrEqual(BOUND_MS);
    // And exactly the 10 cents: 9 more, then refused again.
    let more = 0;
    while ((await statusOf(key)) === 200 && more < 20) more++;
    expect(more).toBe(9);
  });
});
