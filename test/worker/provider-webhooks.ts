import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { Webhook } from "standardwebhooks";
import { expect } from "vitest";
import type { WebhookDispatcher } from "../../durable-objects/webhook-dispatcher";
import { verifyWebhook } from "../../src/verify/payg-signature";
import { admin, customerStub, uniqueId } from "./helpers";
import { server } from "./setup";

export interface Received {
  eventId: string | null;
  signature: string | null;
  /** Every header as it arrived (lower-case names). */
  headers: Record<string, string>;
  raw: string;
  event: { id: string; type: string; created: number; data: Record<string, any> };
}

/**
 * A provider's webhook receiver on this machine, behind MSW. `answer` decides each response from
 * its 1-based call number (default 200); every request is recorded as it arrived.
 */
export function receiver(answer: (call: number, request: Request) => Response | Promise<Response> = () => new HttpResponse(null, { status: 200 })) {
  const url = `http://localhost/hooks/${uniqueId("r")}`;
  const received: Received[] = [];
  server.use(
    http.post(url, async ({ request }) => {
      const raw = await request.text();
      received.push({
        eventId: request.headers.get("x-payg-event-id"),
        signature: request.headers.get("x-payg-signature"),
        headers: Object.fromEntries(request.headers),
        raw,
        event: JSON.parse(raw),
      });
      return answer(received.length, request as unknown as Request);
    }),
  );
  return {
    url,
    received,
    /** What arrived about one customer, optionally of one type (other tests' customers cross too). */
    about: (customerId: string, type?: string) => received.filter((r) => r.event.data.customer_id === customerId && (!type || r.event.type === type)),
  };
}

/** Registers an endpoint; removed again by `removeEndpoints` so later tests do not feed it. */
const created: string[] = [];
export async function createEndpoint(url: string, events?: string[]) {
  const response = await admin("POST", "/webhook-endpoints", { url, ...(events ? { events } : {}) });
  expect(response.status).toBe(201);
  created.push(response.body.id);
  return response.body as { id: string; secret: string; url: string; events: string[] };
}

export async function removeEndpoints() {
  for (const id of created.splice(0)) await admin("DELETE", `/webhook-endpoints/${id}`);
}

export function dispatcher(): DurableObjectStub<WebhookDispatcher> {
  const ns = env.WEBHOOK_DISPATCHER as DurableObjectNamespace<WebhookDispatcher>;
  return ns.get(ns.idFromName("global"));
}

/**
 * Runs the customer's and the dispatcher's alarms until `done()` (they also fire by themselves).
 * Each dispatcher alarm run delivers what was due at the time it was set for: one step of the
 * retry schedule, however far ahead.
 */
export async function pump(done: () => boolean | Promise<boolean>, customerIds: string[] = [], maxSteps = 100) {
  for (let step = 0; step < maxSteps; step++) {
    if (await done()) return;
    await runAlarms(1, customerIds);
  }
  throw new Error(`still waiting after ${maxSteps} alarm steps`);
}

/** `steps` rounds of the customers' and the dispatcher's alarms, whatever they do. */
export async function runAlarms(steps: number, customerIds: string[] = []) {
  for (let step = 0; step < steps; step++) {
    for (const id of customerIds) await runDurableObjectAlarm(customerStub(id));
    await runDurableObjectAlarm(dispatcher());
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The endpoint's deliveries (newest first), as the admin API shows them. */
export async function deliveries(endpointId: string, query = "") {
  const page = await admin("GET", `/webhook-endpoints/${endpointId}/deliveries?limit=500${query}`);
  expect(page.status).toBe(200);
  return page.body.deliveries as any[];
}

/**
 * Every delivery must verify as a receiver would: with the `standardwebhooks` library (webhook-id
 * being the event's id) and with the copyable helper's deprecated X-Payg-Signature.
 */
export async function expectSigned(received: Received[], secret: string) {
  for (const r of received) {
    expect(r.eventId).toBe(r.event.id);
    expect(r.headers["webhook-id"]).toBe(r.event.id);
    expect(new Webhook(secret).verify(r.raw, r.headers)).toEqual(r.event);
    expect(await verifyWebhook(r.raw, r.signature, secret)).toMatchObject({ ok: true, event: { id: r.event.id } });
  }
}

/** Whether a delivery verifies with `secret` through the `standardwebhooks` library. */
export function verifiesWith(r: Received, secret: string): boolean {
  try {
    new Webhook(secret).verify(r.raw, r.headers);
    return true;
  } catch {
    return false;
  }
}
