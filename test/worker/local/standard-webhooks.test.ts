import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse } from "msw";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it } from "vitest";
import type { WebhookDispatcher } from "../../../durable-objects/webhook-dispatcher";
import { type EndpointRow, signingSecrets } from "../../../durable-objects/webhook-dispatcher/store";
import { standardWebhookHeaders } from "../../../src/lib/signing";
import { verifyWebhook } from "../../../src/verify/payg-signature";
import { admin, customerWithCredit, echoOrigin, gateway, uniqueId, withKey } from "../helpers";
import { createEndpoint, expectSigned, pump, type Received, receiver, removeEndpoints, verifiesWith } from "../provider-webhooks";

// Standard Webhooks (https://github.com/standard-webhooks/standard-webhooks, spec/standard-webhooks.md):
// every delivery is checked with the `standardwebhooks` npm library, as a receiver would.
afterEach(removeEndpoints);

/** One crossing of zero: a customer.balance.depleted event for a new customer. */
async function deplete(): Promise<string> {
  echoOrigin();
  const { id, key } = await customerWithCredit(1);
  expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
  return id;
}

async function rotate(endpointId: string, body?: unknown) {
  return admin("POST", `/webhook-endpoints/${endpointId}/rotate-secret`, body);
}

describe("Standard Webhooks signatures on every delivery", () => {
  it("webhook-id is the event's id on every attempt; each attempt verifies with the library and with X-Payg-Signature", async () => {
    const hook = receiver((call) => new HttpResponse(null, { status: call === 1 ? 500 : 200 }));
    const endpoint = await createEndpoint(hook.url, ["customer.balance.depleted"]);
    expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const id = await deplete();
    await pump(() => hook.about(id).length >= 2, [id]);
    const [first, second] = hook.about(id) as [Received, Received];
    expect(first.headers["webhook-id"]).toBe(first.event.id);
    expect(second.headers["webhook-id"]).toBe(first.event.id);
    expect(first.headers["webhook-timestamp"]).toMatch(/^\d{10}$/);
    expect(first.headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
    await expectSigned([first, second], endpoint.secret);
    expect(verifiesWith(first, `whsec_${btoa("another secret of thirty-two bytes")}`)).toBe(false);
  });
});

describe("POST /admin/webhook-endpoints/{id}/rotate-secret", () => {
  it("signs with the new and the old secret during the overlap, then with the new one only", async () => {
    const hook = receiver();
    const endpoint = await createEndpoint(hook.url, ["customer.balance.depleted"]);
    const before = await deplete();
    await pump(() => hook.about(before).length === 1, [before]);

    const rotated = await rotate(endpoint.id, { rotation_overlap_seconds: 2 });
    expect(rotated.status).toBe(200);
    expect(rotated.body).toMatchObject({ id: endpoint.id, secret: expect.stringMatching(/^whsec_/), previous_secret_expires_at: expect.any(Number) });
    const fresh = rotated.body.secret as string;
    expect(fresh).not.toBe(endpoint.secret);
    // Shown once: reading the endpoint shows when the overlap ends, never a secret.
    const shown = (await admin("GET", `/webhook-endpoints/${endpoint.id}`)).body;
    expect(shown).not.toHaveProperty("secret");
    expect(shown.previous_secret_expires_at).toBe(rotated.body.previous_secret_expires_at);

    const during = await deplete();
    await pump(() => hook.about(during).length === 1, [during]);
    const [overlap] = hook.about(during) as [Received];
    expect(overlap.headers["webhook-signature"]!.split(" ")).toHaveLength(2);
    await expectSigned([overlap], fresh);
    await expectSigned([overlap], endpoint.secret);

    await new Promise((resolve) => setTimeout(resolve, Math.max(0, rotated.body.previous_secret_expires_at - Date.now()) + 50));
    const after = await deplete();
    await pump(() => hook.about(after).length === 1, [after]);
    const [late] = hook.about(after) as [Received];
    await expectSigned([late], fresh);
    expect(late.headers["webhook-signature"]!.split(" ")).toHaveLength(1);
    expect(verifiesWith(late, endpoint.secret)).toBe(false);
    expect(await verifyWebhook(late.raw, late.signature, endpoint.secret)).toMatchObject({ ok: false });
    expect((await admin("GET", `/webhook-endpoints/${endpoint.id}`)).body.previous_secret_expires_at).toBeNull();
  });

  it("defaults to a day's overlap; 0 switches at once; bad input and unknown endpoints change nothing", async () => {
    const hook = receiver();
    const endpoint = await createEndpoint(hook.url, ["customer.balance.depleted"]);
    const t0 = Date.now();
    const rotated = await rotate(endpoint.id);
    expect(rotated.status).toBe(200);
    expect(rotated.body.previous_secret_expires_at).toBeGreaterThanOrEqual(t0 + 86_400_000);
    expect(rotated.body.previous_secret_expires_at).toBeLessThan(Date.now() + 86_400_000 + 1);

    for (const bad of [{ rotation_overlap_seconds: -1 }, { rotation_overlap_seconds: 1.5 }, { rotation_overlap_seconds: 8 * 86_400 }, { other: 1 }, "{nope"]) {
      const refused = await rotate(endpoint.id, bad);
      expect(refused.status).toBe(400);
      expect(refused.body.error.code).toMatch(/^invalid_(request|json)$/);
    }
    expect((await rotate("we_unknown")).status).toBe(404);

    const now = await rotate(endpoint.id, { rotation_overlap_seconds: 0 });
    // The secret from the first rotation stopped at once; the original still has its day.
    const id = await deplete();
    await pump(() => hook.about(id).length === 1, [id]);
    const [r] = hook.about(id) as [Received];
    await expectSigned([r], now.body.secret);
    expect(verifiesWith(r, rotated.body.secret)).toBe(false);
    expect(verifiesWith(r, endpoint.secret)).toBe(true);
  });
});

describe("the dispatcher's v2 migration", () => {
  it("an endpoint made before rotation existed (secret of hex digits) keeps its secret and verifies with the library", async () => {
    const ns = env.WEBHOOK_DISPATCHER as DurableObjectNamespace<WebhookDispatcher>;
    const stub = ns.get(ns.idFromName(uniqueId("dispatcher")));
    const legacy = `whsec_${"0123456789abcdef".repeat(4)}`;
    // As version 1 left it: no previous_secrets column, a secret in the old format.
    await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      sql.exec("ALTER TABLE endpoints DROP COLUMN previous_secrets");
      sql.exec("UPDATE schema_version SET version = 1");
      sql.exec("INSERT INTO endpoints (id, url, events, description, secret, created_at) VALUES ('we_old', 'https://hooks.example.com/x', NULL, NULL, ?, 1)", legacy);
    });
    await evictDurableObject(stub);
    const row = await runInDurableObject(stub, (_instance, state) => state.storage.sql.exec("SELECT * FROM endpoints WHERE id = 'we_old'").one() as unknown as EndpointRow);
    expect(row).toMatchObject({ secret: legacy, previous_secrets: "[]" });
    expect(signingSecrets(row, Date.now())).toEqual([legacy]);
    expect(await stub.getEndpoint("we_old")).toMatchObject({ id: "we_old", previous_secret_expires_at: null });
    // The hex digits after whsec_ are valid base64, so the library reads the same key the gateway signs with.
    const body = JSON.stringify({ id: "evt_1", type: "report.failed", created: 1, data: {} });
    const headers = await standardWebhookHeaders(signingSecrets(row, Date.now()), "evt_1", body);
    expect(new Webhook(legacy).verify(body, headers)).toEqual(JSON.parse(body));
  });
});
