import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { verifyWebhook } from "../../src/verify/payg-signature";
import { type Gateway, serveHandler, startGateway } from "./harness";

// Signed webhooks from the real `wrangler dev` to a real HTTP receiver on loopback, delivered by
// the Durable Objects' own alarms in real time.
interface Arrival {
  path: string;
  at: number;
  eventId: string | null;
  signature: string | null;
  raw: string;
  event: { id: string; type: string; created: number; data: Record<string, any> };
}

const arrivals: Arrival[] = [];
const attemptsById = new Map<string, number>();
let gateway: Gateway;
const closers: (() => Promise<void>)[] = [];
let receiverUrl = "";

beforeAll(async () => {
  const origin = await startDemoOrigin({ port: 0 });
  // /flaky drops the connection on an event's first attempt and answers 500 on its second.
  const receiver = await serveHandler(async (request) => {
    const raw = await request.text();
    const event = JSON.parse(raw);
    const path = new URL(request.url).pathname;
    arrivals.push({ path, at: Date.now(), eventId: request.headers.get("x-payg-event-id"), signature: request.headers.get("x-payg-signature"), raw, event });
    const attempt = (attemptsById.get(`${path} ${event.id}`) ?? 0) + 1;
    attemptsById.set(`${path} ${event.id}`, attempt);
    if (path === "/flaky" && attempt === 1) return Response.error();
    if (path === "/flaky" && attempt === 2) return new Response("try later", { status: 500 });
    return new Response(null, { status: 204 });
  });
  closers.push(origin.close, receiver.close);
  receiverUrl = receiver.url;
  gateway = await startGateway({ vars: { ORIGIN_URL: origin.url, ALLOW_INSECURE_WEBHOOKS: "true", WEBHOOK_TIMEOUT_MS: "2000" } });
});
afterAll(async () => {
  await gateway?.stop();
  for (const close of closers) await close();
});

const about = (path: string, customerId: string, type?: string) =>
  arrivals.filter((a) => a.path === path && a.event.data.customer_id === customerId && (!type || a.event.type === type));

async function until(done: () => boolean, ms: number, what: string) {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function customer(id: string, cents: number) {
  expect((await gateway.admin("PUT", `/customers/${id}`, { email: `${id}@example.com`, name: "Grace Hopper" })).status).toBe(201);
  const key = (await gateway.admin("POST", `/customers/${id}/keys`, {})).body.key as string;
  expect((await gateway.admin("POST", `/customers/${id}/credits`, { amount: cents, reason: "e2e" })).status).toBe(201);
  return key;
}

async function spend(key: string, n: number) {
  const statuses = await Promise.all(Array.from({ length: n }, () => gateway.fetch("/v1/x", { headers: { authorization: `Bearer ${key}` } }).then((r) => r.status)));
  return { ok: statuses.filter((s) => s === 200).length, refused: statuses.filter((s) => s === 402).length };
}

const endpoints: Record<string, { id: string; secret: string }> = {};

describe("outbound webhooks against wrangler dev", () => {
  it("refuses an http URL that is not this machine, even with ALLOW_INSECURE_WEBHOOKS", async () => {
    const refused = await gateway.admin("POST", "/webhook-endpoints", { url: "http://hooks.example.com/x" });
    expect(refused.status).toBe(400);
    expect(refused.body.error.code).toBe("invalid_request");
  });

  it("100 parallel requests crossing zero: exactly one customer.balance.depleted, within seconds; a grant restores", async () => {
    for (const [name, events] of [
      ["all", undefined],
      ["flaky", ["customer.balance.depleted"]],
    ] as const) {
      const created = await gateway.admin("POST", "/webhook-endpoints", { url: `${receiverUrl}/${name}`, ...(events ? { events } : {}) });
      expect(created.status).toBe(201);
      endpoints[name] = created.body;
    }
    const key = await customer("cus_e2e_hooks", 50);
    const crossedAt = Date.now();
    expect(await spend(key, 100)).toEqual({ ok: 50, refused: 50 });
    await until(() => about("/all", "cus_e2e_hooks", "customer.balance.depleted").length > 0, 10_000, "customer.balance.depleted");
    expect(about("/all", "cus_e2e_hooks", "customer.balance.depleted")[0]!.at - crossedAt).toBeLessThan(5_000);

    const granted = await gateway.admin("POST", "/customers/cus_e2e_hooks/credits", { amount: 300, reason: "top-up" });
    expect(granted.status).toBe(201);
    await until(() => about("/all", "cus_e2e_hooks", "customer.balance.restored").length === 2, 10_000, "customer.balance.restored");
    const restored = about("/all", "cus_e2e_hooks", "customer.balance.restored").at(-1)!;
    expect(restored.event.data).toEqual({ customer_id: "cus_e2e_hooks", balance_cents: 300, minimum_balance_cents: 0 });
    const depleted = about("/all", "cus_e2e_hooks", "customer.balance.depleted");
    expect(depleted).toHaveLength(1);
    expect(depleted[0]!.event.data).toEqual({ customer_id: "cus_e2e_hooks", balance_cents: 0, minimum_balance_cents: 0 });
    for (const a of about("/all", "cus_e2e_hooks")) {
      expect(a.eventId).toBe(a.event.id);
      expect((await verifyWebhook(a.raw, a.signature, endpoints.all!.secret)).ok).toBe(true);
    }
  });

  it("a deleted endpoint gets nothing more", async () => {
    expect((await gateway.admin("DELETE", `/webhook-endpoints/${endpoints.all!.id}`)).status).toBe(204);
    const before = about("/all", "cus_e2e_hooks").length;
    await gateway.admin("POST", "/customers/cus_e2e_hooks/credits", { amount: -300, reason: "clawback" });
    // The flaky endpoint is still there and sees the new depletion: the delete is what kept /all quiet.
    await until(() => new Set(about("/flaky", "cus_e2e_hooks").map((a) => a.event.id)).size === 2, 10_000, "the second depletion at /flaky");
    expect(about("/all", "cus_e2e_hooks")).toHaveLength(before);
  });

  it("a receiver that drops the connection, then answers 500, then 2xx gets one event id three times, signed", async () => {
    const firstId = about("/flaky", "cus_e2e_hooks")[0]!.event.id;
    // Retries after about 5 s and then 30 s more.
    await until(() => about("/flaky", "cus_e2e_hooks").filter((a) => a.event.id === firstId).length === 3, 60_000, "the third attempt");
    const attempts = about("/flaky", "cus_e2e_hooks").filter((a) => a.event.id === firstId);
    expect(new Set(attempts.map((a) => a.eventId))).toEqual(new Set([firstId]));
    expect(new Set(attempts.map((a) => a.raw)).size).toBe(1);
    for (const a of attempts) expect(await verifyWebhook(a.raw, a.signature, endpoints.flaky!.secret)).toMatchObject({ ok: true, event: { id: firstId } });
    expect(attempts[1]!.at - attempts[0]!.at).toBeGreaterThanOrEqual(4_500);
    expect(attempts[2]!.at - attempts[1]!.at).toBeGreaterThanOrEqual(29_500);

    const listed = await gateway.admin("GET", `/webhook-endpoints/${endpoints.flaky!.id}/deliveries`);
    const delivery = listed.body.deliveries.find((d: { event_id: string }) => d.event_id === firstId);
    expect(delivery).toMatchObject({ status: "succeeded", attempts: 3, last_status_code: 204, event_type: "customer.balance.depleted" });
  });
});
