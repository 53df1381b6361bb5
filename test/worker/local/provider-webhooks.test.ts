import { delay, HttpResponse } from "msw";
import { afterEach, describe, expect, it } from "vitest";
import { nextAttemptAt } from "../../../durable-objects/webhook-dispatcher/schedule";
import { ConfigError, parseConfig } from "../../../src/lib/config";
import { admin, customerWithCredit, echoOrigin, gateway, uniqueId, withKey } from "../helpers";
import { createEndpoint, deliveries, dispatcher, expectSigned, pump, receiver, removeEndpoints, runAlarms } from "../provider-webhooks";

afterEach(removeEndpoints);

const fail = (status = 500) => new HttpResponse(null, { status });
const ok = () => new HttpResponse(null, { status: 200 });

async function spend(key: string, n: number) {
  const statuses = await Promise.all(Array.from({ length: n }, () => gateway("/v1/x", withKey(key)).then((r) => r.status)));
  return { ok: statuses.filter((s) => s === 200).length, refused: statuses.filter((s) => s === 402).length };
}

describe("outbound webhooks: delivery", () => {
  it("a receiver that fails twice then succeeds gets one event id three times, each signature verifying", async () => {
    echoOrigin();
    const hook = receiver((call) => (call <= 2 ? fail(503) : ok()));
    const endpoint = await createEndpoint(hook.url, ["customer.balance.depleted"]);
    const { id, key } = await customerWithCredit(2);
    expect(await spend(key, 2)).toEqual({ ok: 2, refused: 0 });

    await pump(() => hook.about(id).length >= 1, [id]);
    const [first] = await deliveries(endpoint.id);
    expect(first).toMatchObject({ customer_id: id, event_type: "customer.balance.depleted", status: "pending", attempts: 1, last_status_code: 503 });
    // The wait runs from the end of the failed attempt (last_attempt_at is its start).
    expect(first.next_attempt_at - first.last_attempt_at).toBeGreaterThanOrEqual(5_000);
    expect(first.next_attempt_at - first.last_attempt_at).toBeLessThan(6_000);

    await pump(() => hook.about(id).length >= 2);
    const [second] = await deliveries(endpoint.id);
    expect(second).toMatchObject({ status: "pending", attempts: 2, last_error: "HTTP 503" });
    expect(second.next_attempt_at - second.last_attempt_at).toBeGreaterThanOrEqual(30_000);
    expect(second.next_attempt_at - second.last_attempt_at).toBeLessThan(31_000);

    await pump(() => hook.about(id).length >= 3);
    const got = hook.about(id);
    expect(got).toHaveLength(3);
    expect(new Set(got.map((r) => r.event.id)).size).toBe(1);
    expect(got[0]!.event).toMatchObject({
      type: "customer.balance.depleted",
      created: expect.any(Number),
      data: { customer_id: id, balance_cents: 0, minimum_balance_cents: 0 },
    });
    expect(got.map((r) => r.raw)).toEqual([got[0]!.raw, got[0]!.raw, got[0]!.raw]);
    await expectSigned(got, endpoint.secret);
    const [done] = await deliveries(endpoint.id);
    expect(done).toMatchObject({ status: "succeeded", attempts: 3, last_status_code: 200, next_attempt_at: null, event_id: got[0]!.event.id });
    expect(done.event).toEqual(got[0]!.event);
  });

  it("retries a timeout and a dropped connection like a 5xx", async () => {
    echoOrigin();
    const hook = receiver(async (call) => {
      if (call === 1) await delay(3_000); // WEBHOOK_TIMEOUT_MS is 1000 in the tests
      if (call <= 2) return HttpResponse.error();
      return ok();
    });
    const endpoint = await createEndpoint(hook.url, ["customer.balance.depleted"]);
    const { id, key } = await customerWithCredit(1);
    expect(await spend(key, 1)).toEqual({ ok: 1, refused: 0 });
    await pump(() => hook.about(id).length >= 1, [id]);
    await pump(async () => (await deliveries(endpoint.id))[0]?.attempts === 1 && (await deliveries(endpoint.id))[0]?.last_error !== null);
    expect((await deliveries(endpoint.id))[0]).toMatchObject({ status: "pending", last_status_code: null, last_error: "no response within 1000 ms" });
    await pump(async () => (await deliveries(endpoint.id))[0]?.attempts === 2 && hook.about(id).length === 2);
    await pump(async () => (await deliveries(endpoint.id))[0]?.last_error !== null);
    expect((await deliveries(endpoint.id))[0]).toMatchObject({ status: "pending", last_error: expect.stringMatching(/^connection failed/) });
    await pump(async () => (await deliveries(endpoint.id))[0]?.status === "succeeded");
    expect(new Set(hook.about(id).map((r) => r.eventId))).toEqual(new Set([hook.about(id)[0]!.event.id]));
    expect(hook.about(id)).toHaveLength(3);
  });

  it("100 parallel requests crossing zero produce exactly one customer.balance.depleted", async () => {
    echoOrigin();
    const hook = receiver();
    const endpoint = await createEndpoint(hook.url);
    const { id, key } = await customerWithCredit(50);
    expect(await spend(key, 100)).toEqual({ ok: 50, refused: 50 });
    await pump(() => hook.about(id, "customer.balance.depleted").length >= 1, [id]);
    // Let anything else that might have been emitted arrive too.
    await pump(async () => (await deliveries(endpoint.id, "&status=pending")).every((d) => d.customer_id !== id), [id]);
    await runAlarms(3, [id]);
    const depleted = hook.about(id, "customer.balance.depleted");
    expect(depleted).toHaveLength(1);
    expect(depleted[0]!.event.data).toEqual({ customer_id: id, balance_cents: 0, minimum_balance_cents: 0 });
    // The grant put it under the 100-cent warning threshold once; nothing else about it was sent.
    expect(
      hook
        .about(id)
        .map((r) => r.event.type)
        .sort(),
    ).toEqual(["customer.balance.depleted", "customer.balance.low", "customer.balance.restored"]);
    const rows = (await deliveries(endpoint.id)).filter((d) => d.customer_id === id);
    expect(rows).toHaveLength(3);
    expect(rows.every((d) => d.status === "succeeded" && d.attempts === 1)).toBe(true);
    expect((await admin("GET", `/customers/${id}`)).body.webhooks_pending).toBe(0);

    // Paged newest first: the pages together are the whole list, once.
    const first = await admin("GET", `/webhook-endpoints/${endpoint.id}/deliveries?limit=2`);
    expect(first.body.deliveries).toHaveLength(2);
    const rest = await admin("GET", `/webhook-endpoints/${endpoint.id}/deliveries?limit=500&cursor=${first.body.next_cursor}`);
    const all = await deliveries(endpoint.id);
    expect([...first.body.deliveries, ...rest.body.deliveries].map((d: { id: string }) => d.id)).toEqual(all.map((d) => d.id));
  });

  it("a grant produces customer.balance.restored (and the next crossing is a new event)", async () => {
    echoOrigin();
    const hook = receiver();
    const endpoint = await createEndpoint(hook.url, ["customer.balance.depleted", "customer.balance.restored"]);
    const { id, key } = await customerWithCredit(1);
    expect(await spend(key, 2)).toEqual({ ok: 1, refused: 1 });
    await pump(() => hook.about(id, "customer.balance.depleted").length === 1, [id]);

    // A new customer starts out of credit without an event; its first grant was a restore.
    expect(hook.about(id).map((r) => [r.event.type, r.event.data.balance_cents])).toEqual([
      ["customer.balance.restored", 1],
      ["customer.balance.depleted", 0],
    ]);

    const grant = await admin("POST", `/customers/${id}/credits`, { amount: 500, reason: "top-up" });
    expect(grant.status).toBe(201);
    await pump(() => hook.about(id, "customer.balance.restored").length === 2, [id]);
    const restored = hook.about(id, "customer.balance.restored")[1]!;
    expect(restored.event.data).toEqual({ customer_id: id, balance_cents: 500, minimum_balance_cents: 0 });
    await expectSigned(hook.about(id), endpoint.secret);

    await admin("POST", `/customers/${id}/credits`, { amount: -500, reason: "clawback" });
    await pump(() => hook.about(id, "customer.balance.depleted").length === 2, [id]);
    const ids = hook.about(id).map((r) => r.event.id);
    expect(new Set(ids).size).toBe(4);
  });

  it("gives up after 24 hours of retries (failed, visible), and a manual redeliver sends the same event again", async () => {
    echoOrigin();
    let up = false;
    const hook = receiver(() => (up ? ok() : fail(500)));
    const endpoint = await createEndpoint(hook.url, ["customer.balance.depleted"]);
    const { id, key } = await customerWithCredit(1);
    await spend(key, 1);
    await pump(() => hook.about(id).length >= 1, [id]);
    const mine = async () => (await deliveries(endpoint.id)).find((d) => d.customer_id === id);
    // The wait after each failed attempt, as the admin API shows it (keyed by attempt number).
    const waits = new Map<number, number>();
    await pump(
      async () => {
        const d = await mine();
        if (d.status === "pending") waits.set(d.attempts, d.next_attempt_at - d.last_attempt_at);
        return d.status === "failed";
      },
      [],
      200,
    );

    const failed = await mine();
    expect(failed).toMatchObject({ status: "failed", attempts: 28, last_status_code: 500, last_error: "HTTP 500", next_attempt_at: null });
    // 5 s, 30 s, 2 min, 10 min, 1 h, then hourly, while within 24 hours of the first attempt.
    const expected = [5_000, 30_000, 120_000, 600_000, ...Array(23).fill(3_600_000)];
    expect(waits.size).toBeGreaterThan(20);
    for (const [attempt, wait] of waits) {
      expect(wait, `after attempt ${attempt}`).toBeGreaterThanOrEqual(expected[attempt - 1]);
      expect(wait, `after attempt ${attempt}`).toBeLessThan(expected[attempt - 1] + 1_000);
    }
    expect(hook.about(id)).toHaveLength(28);
    expect(new Set(hook.about(id).map((r) => r.eventId)).size).toBe(1);
    const listed = await deliveries(endpoint.id, "&status=failed");
    expect(listed.map((d) => d.id)).toContain(failed.id);
    expect((await admin("GET", "/webhook-endpoints")).body.endpoints.find((e: { id: string }) => e.id === endpoint.id).deliveries.failed).toBeGreaterThanOrEqual(1);

    up = true;
    const again = await admin("POST", `/webhook-endpoints/${endpoint.id}/deliveries/${failed.id}/redeliver`);
    expect(again.status).toBe(202);
    expect(again.body).toMatchObject({ id: failed.id, status: "pending", event_id: failed.event_id });
    await pump(async () => (await mine()).status === "succeeded");
    expect(await mine()).toMatchObject({ status: "succeeded", attempts: 29, last_status_code: 200 });
    expect(hook.about(id)).toHaveLength(29);
    expect(hook.about(id).at(-1)!.raw).toBe(hook.about(id)[0]!.raw);
    await expectSigned(hook.about(id).slice(-1), endpoint.secret);
  });

  it("deleting an endpoint stops its deliveries, pending retries included", async () => {
    echoOrigin();
    const hook = receiver(() => fail(502));
    const endpoint = await createEndpoint(hook.url, ["customer.balance.depleted", "customer.balance.restored"]);
    const { id, key } = await customerWithCredit(1);
    await spend(key, 1);
    await pump(() => hook.about(id, "customer.balance.depleted").length === 1, [id]);
    const sent = hook.about(id).length;
    expect((await deliveries(endpoint.id)).filter((d) => d.customer_id === id).every((d) => d.status === "pending")).toBe(true);

    expect((await admin("DELETE", `/webhook-endpoints/${endpoint.id}`)).status).toBe(204);
    expect((await admin("GET", "/webhook-endpoints")).body.endpoints.map((e: { id: string }) => e.id)).not.toContain(endpoint.id);
    expect((await admin("GET", `/webhook-endpoints/${endpoint.id}/deliveries`)).status).toBe(404);
    // Retries due and a new crossing: nothing more reaches it.
    await admin("POST", `/customers/${id}/credits`, { amount: 10, reason: "top-up" });
    await runAlarms(10, [id]);
    expect(hook.about(id)).toHaveLength(sent);
    expect((await admin("DELETE", `/webhook-endpoints/${endpoint.id}`)).status).toBe(404);
  });
});

describe("outbound webhooks: endpoints in the admin API", () => {
  it("creates an endpoint (secret shown once, events default to all), lists it, shows it, deletes it", async () => {
    const created = await admin("POST", "/webhook-endpoints", { url: "https://hooks.example.com/payg", description: "billing" });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      id: expect.stringMatching(/^we_/),
      url: "https://hooks.example.com/payg",
      description: "billing",
      // Standard Webhooks' format: whsec_ and the base64 of 32 random bytes.
      secret: expect.stringMatching(/^whsec_[A-Za-z0-9+/]{43}=$/),
      // The public event names, written out: renaming one breaks receivers, so it must fail here.
      events: [
        "customer.balance.low",
        "customer.balance.depleted",
        "customer.balance.restored",
        "customer.payment_failed",
        "credit.expiring",
        "key.cap_reached",
        "topup.succeeded",
        "topup.failed",
        "auto_topup.updated",
        "auto_topup.paused",
        "report.failed",
      ],
    });
    const id = created.body.id as string;
    const listed = (await admin("GET", "/webhook-endpoints")).body.endpoints.find((e: { id: string }) => e.id === id);
    expect(listed).toMatchObject({ id, url: "https://hooks.example.com/payg", deliveries: { pending: 0, succeeded: 0, failed: 0 } });
    expect(listed).not.toHaveProperty("secret");
    const shown = await admin("GET", `/webhook-endpoints/${id}`);
    expect(shown.status).toBe(200);
    expect(shown.body).not.toHaveProperty("secret");
    const local = await admin("POST", "/webhook-endpoints", { url: "http://127.0.0.1:9999/hook", events: ["report.failed"] });
    expect(local.body.events).toEqual(["report.failed"]);
    expect((await admin("DELETE", `/webhook-endpoints/${local.body.id}`)).status).toBe(204);
    expect((await admin("DELETE", `/webhook-endpoints/${id}`)).status).toBe(204);
    expect((await admin("GET", `/webhook-endpoints/${id}`)).status).toBe(404);
  });

  it("refuses bad input with JSON errors and changes nothing", async () => {
    const before = (await admin("GET", "/webhook-endpoints")).body.endpoints.length;
    const cases: [unknown, string][] = [
      ["{not json", "invalid_json"],
      [{}, "invalid_request"],
      [{ url: "not a url" }, "invalid_request"],
      [{ url: "ftp://hooks.example.com/x" }, "invalid_request"],
      [{ url: "http://hooks.example.com/x" }, "invalid_request"],
      [{ url: "http://10.0.0.1/x" }, "invalid_request"],
      [{ url: "https://hooks.example.com/x", events: [] }, "invalid_request"],
      [{ url: "https://hooks.example.com/x", events: ["customer.balance.empty"] }, "invalid_request"],
      [{ url: "https://hooks.example.com/x", events: ["report.failed", "report.failed"] }, "invalid_request"],
      [{ url: "https://hooks.example.com/x", events: "report.failed" }, "invalid_request"],
      [{ url: "https://hooks.example.com/x", description: "x".repeat(501) }, "invalid_request"],
      [{ url: "https://hooks.example.com/x", secret: "mine" }, "invalid_request"],
      [{ url: `https://hooks.example.com/${"x".repeat(2100)}` }, "invalid_request"],
    ];
    for (const [body, code] of cases) {
      const response = await admin("POST", "/webhook-endpoints", body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.body.error).toMatchObject({ code, message: expect.any(String), requestId: expect.any(String) });
    }
    expect((await admin("POST", "/webhook-endpoints", { url: "http://hooks.example.com/x" })).body.error.message).toMatch(/https/);
    expect((await admin("GET", "/webhook-endpoints")).body.endpoints).toHaveLength(before);

    const hook = await createEndpoint("https://hooks.example.com/listing", ["report.failed"]);
    for (const query of ["status=done", "limit=0", "limit=x", "cursor=-1"]) {
      const response = await admin("GET", `/webhook-endpoints/${hook.id}/deliveries?${query}`);
      expect(response.status, query).toBe(400);
      expect(response.body.error.code).toBe("invalid_request");
    }
    expect((await admin("GET", "/webhook-endpoints/we_nope/deliveries")).body.error.code).toBe("not_found");
    expect((await admin("POST", "/webhook-endpoints/we_nope/deliveries/whd_nope/redeliver")).status).toBe(404);
    expect((await admin("POST", `/webhook-endpoints/${hook.id}/deliveries/whd_nope/redeliver`)).body.error.code).toBe("not_found");
    expect((await admin("GET", "/webhook-endpoints/we_nope")).status).toBe(404);
    expect((await admin("DELETE", "/webhook-endpoints/we_nope")).status).toBe(404);
    const wrongMethod = await admin("PUT", "/webhook-endpoints", {});
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.body.error.code).toBe("method_not_allowed");
    const anonymous = await gateway("/admin/webhook-endpoints");
    expect(anonymous.status).toBe(401);
  });

  it("caps the number of endpoints at 16 with 409", async () => {
    const existing = (await admin("GET", "/webhook-endpoints")).body.endpoints.length as number;
    for (let i = existing; i < 16; i++) await createEndpoint(`https://hooks.example.com/${i}`, ["report.failed"]);
    const refused = await admin("POST", "/webhook-endpoints", { url: "https://hooks.example.com/17" });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe("conflict");
  });
});

describe("outbound webhooks: rules", () => {
  it("retries 5 s, 30 s, 2 min, 10 min, 1 h, then hourly, and stops 24 hours after the round began", () => {
    const start = 1_800_000_000_000;
    let now = start;
    const waits: number[] = [];
    for (let failures = 1; ; failures++) {
      const next = nextAttemptAt(failures, start, now);
      if (next === null) break;
      waits.push(next - now);
      now = next;
    }
    expect(waits).toEqual([5_000, 30_000, 120_000, 600_000, ...Array(23).fill(3_600_000)]);
    expect(now - start).toBeLessThanOrEqual(24 * 3_600_000);
    expect(now + 3_600_000 - start).toBeGreaterThan(24 * 3_600_000);
    // A manual redeliver starts a new round: the same schedule again from then.
    expect(nextAttemptAt(1, now, now)).toBe(now + 5_000);
  });

  it("records an event handed over twice once, with one delivery per endpoint", async () => {
    const hook = receiver();
    const endpoint = await createEndpoint(hook.url, ["topup.succeeded"]);
    const customerId = uniqueId();
    const body = JSON.stringify({ id: `evt_${customerId}`, type: "topup.succeeded", created: 1, data: { customer_id: customerId, balance_cents: 1 } });
    const event = { id: `evt_${customerId}`, type: "topup.succeeded" as const, customerId, body };
    expect(await dispatcher().accept([event])).toEqual({ accepted: 1 });
    expect(await dispatcher().accept([event, event])).toEqual({ accepted: 0 });
    await pump(() => hook.about(customerId).length === 1);
    await runAlarms(3);
    expect(hook.about(customerId)).toHaveLength(1);
    expect(hook.about(customerId)[0]!.raw).toBe(body);
    expect((await deliveries(endpoint.id)).filter((d) => d.customer_id === customerId)).toHaveLength(1);
  });

  it("reads ALLOW_INSECURE_WEBHOOKS as a boolean switch and WEBHOOK_TIMEOUT_MS as milliseconds", () => {
    const base = { ORIGIN_URL: "http://origin.test", PRICING: { currency: "usd", default_price_cents: "1" } };
    expect(parseConfig(base)).toMatchObject({ ALLOW_INSECURE_WEBHOOKS: false, WEBHOOK_TIMEOUT_MS: 10_000 });
    for (const on of ["true", "1", true]) expect(parseConfig({ ...base, ALLOW_INSECURE_WEBHOOKS: on }).ALLOW_INSECURE_WEBHOOKS).toBe(true);
    for (const off of ["false", "0", "", false]) expect(parseConfig({ ...base, ALLOW_INSECURE_WEBHOOKS: off }).ALLOW_INSECURE_WEBHOOKS).toBe(false);
    expect(() => parseConfig({ ...base, ALLOW_INSECURE_WEBHOOKS: "maybe" })).toThrow(ConfigError);
    expect(parseConfig({ ...base, WEBHOOK_TIMEOUT_MS: "2500" }).WEBHOOK_TIMEOUT_MS).toBe(2_500);
    expect(() => parseConfig({ ...base, WEBHOOK_TIMEOUT_MS: "60000" })).toThrow(/WEBHOOK_TIMEOUT_MS/);
  });
});
