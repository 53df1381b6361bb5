import { createExecutionContext, env, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import fc from "fast-check";
import { HttpResponse, http } from "msw";
import { describe, expect, it } from "vitest";
import { expireHolds } from "../../../durable-objects/customer-account/request/settlement";
import worker from "../../../src/index";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { getConfig, resolveMeter } from "../../../src/lib/config";
import { eventData, isUnitEvent, SseSplitter } from "../../../src/metering/sse";
import { meterResponse } from "../../../src/proxy/metered";
import { admin, customerStub, customerWithCredit, gateway, ORIGIN, withKey } from "../helpers";
import { server } from "../setup";

/** The bodies the chat route of the last meteredOrigin() received, as forwarded by the gateway. */
const chatBodies: unknown[] = [];

/** An origin that reports usage the ways metered APIs do, and counts what it served. */
function meteredOrigin(options: { gate?: Promise<void> } = {}) {
  const calls: string[] = [];
  const sse = (events: number, extra = "") => {
    const encoder = new TextEncoder();
    return new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < events; i++) controller.enqueue(encoder.encode(`data: {"token":${i}}\n\n`));
        controller.enqueue(encoder.encode(`${extra}data: [DONE]\n\n`));
        controller.close();
      },
    });
  };
  chatBodies.length = 0;
  server.use(
    http.all(`${ORIGIN}/v1/header-tokens`, ({ request }) => {
      calls.push("header");
      const tokens = new URL(request.url).searchParams.get("tokens");
      return HttpResponse.json({ ok: true }, { headers: tokens === null ? {} : { "x-usage-tokens": tokens } });
    }),
    http.post(`${ORIGIN}/v1/json-tokens`, async ({ request }) => {
      calls.push("json");
      await options.gate;
      const tokens = new URL(request.url).searchParams.get("tokens");
      if (tokens === "garbage") return new HttpResponse("{not json", { headers: { "content-type": "application/json" } });
      return HttpResponse.json({ answer: "forty-two", echo: await request.text(), usage: { total_tokens: Number(tokens) } });
    }),
    http.get(`${ORIGIN}/v1/events`, ({ request }) => {
      calls.push("events");
      const events = Number(new URL(request.url).searchParams.get("events") ?? 10);
      return new HttpResponse(sse(events), { headers: { "content-type": "text/event-stream" } });
    }),
    http.post(`${ORIGIN}/v1/chat/completions`, async ({ request }) => {
      calls.push("chat");
      const body = (await request.json()) as { stream?: boolean; max_tokens?: number };
      chatBodies.push(body);
      const tokens = Math.min(body.max_tokens ?? 30, 30);
      if (!body.stream) return HttpResponse.json({ choices: [{ message: { content: "hi" } }], usage: { total_tokens: tokens } });
      return new HttpResponse(sse(tokens, `data: {"choices":[],"usage":{"total_tokens":${tokens}}}\n\n`), { headers: { "content-type": "text/event-stream" } });
    }),
  );
  return calls;
}

const balance = async (id: string) => (await customerStub(id).balanceCheck())!;

describe("meters that read units from the response (happy)", () => {
  it("charges a header-metered request exactly the units it reports, and releases the rest of the hold", async () => {
    meteredOrigin();
    const { id, key } = await customerWithCredit(20);
    const response = await gateway("/v1/header-tokens?tokens=37", withKey(key));
    expect(response.status).toBe(200);
    expect(response.headers.get("x-payg-charge-cents")).toBe("3.7");
    expect(response.headers.get("x-payg-balance-cents")).toBe("16.3");
    expect(await balance(id)).toMatchObject({ balanceMicros: 16_300_000, ledgerSumMicros: 16_300_000, grantsRemainingMicros: 16_300_000 });
    const charge = await customerStub(id).requestCharge(response.headers.get("x-request-id")!);
    expect(charge).toMatchObject({ status: "settled", held_units: 100, units: 37, over_hold_units: 0, charged_exact_cents: "3.7", reason: "completed" });
  });

  it("charges every unit a response reports, past the hold too, and records the part past it as over_hold", async () => {
    meteredOrigin();
    const { id, key } = await customerWithCredit(20);
    const response = await gateway("/v1/header-tokens?tokens=150", withKey(key));
    expect(response.headers.get("x-payg-charge-cents")).toBe("15");
    const charge = await customerStub(id).requestCharge(response.headers.get("x-request-id")!);
    expect(charge).toMatchObject({ held_units: 100, units: 150, over_hold_units: 50, charged_exact_cents: "15" });
    expect(await balance(id)).toMatchObject({ balanceMicros: 5_000_000, ledgerSumMicros: 5_000_000 });
  });

  it("charges units past the hold into debt when credit is short; the customer is refused until it is paid", async () => {
    meteredOrigin();
    const { id, key } = await customerWithCredit(12);
    // Held 100 units (10 cents) of 12 cents; the response reports 150 (15 cents): 3 cents of debt.
    const response = await gateway("/v1/header-tokens?tokens=150", withKey(key));
    expect(response.headers.get("x-payg-charge-cents")).toBe("15");
    expect(await balance(id)).toMatchObject({ balanceMicros: -3_000_000, ledgerSumMicros: -3_000_000, debtMicros: 3_000_000 });
    expect((await gateway("/v1/header-tokens?tokens=1", withKey(key))).status).toBe(402);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(402);
  });

  it("refuses a request whose hold does not fit, before the origin sees it", async () => {
    const calls = meteredOrigin();
    const { id, key } = await customerWithCredit(9);
    const refused = await gateway("/v1/header-tokens?tokens=1", withKey(key));
    expect(refused.status).toBe(402);
    expect(((await refused.json()) as { code: string }).code).toBe("insufficient_credit");
    expect(calls).toEqual([]);
    expect((await balance(id)).balanceMicros).toBe(9_000_000);
  });

  it("applies on_missing_units when the units cannot be read: the hold (default), or nothing", async () => {
    meteredOrigin();
    const { id, key } = await customerWithCredit(50);
    const missing = await gateway("/v1/header-tokens", withKey(key));
    expect(missing.headers.get("x-payg-charge-cents")).toBe("10");
    const garbage = await gateway("/v1/json-tokens?tokens=garbage", withKey(key, { method: "POST", body: "{}" }));
    expect(garbage.headers.get("x-payg-charge-cents")).toBe("0");
    expect((await balance(id)).balanceMicros).toBe(40_000_000);
  });

  it("holds at least one unit: a customer at $0 is refused before the origin, whatever the request's limit fields say", async () => {
    const calls = meteredOrigin();
    const { id, key } = await customerWithCredit(0);
    for (const body of [{ max_tokens: 0 }, { max_tokens: 0, max_completion_tokens: 4096 }, { stream: true, max_tokens: 0 }]) {
      const refused = await gateway("/v1/chat/completions", withKey(key, { method: "POST", body: JSON.stringify(body) }));
      expect(refused.status).toBe(402);
    }
    expect(calls).toEqual([]);
    expect((await balance(id)).balanceMicros).toBe(0);
  });

  it("holds the largest of the request's limit fields, times its multiplier (max_completion_tokens, max_tokens, n)", async () => {
    meteredOrigin();
    const { id, key } = await customerWithCredit(50);
    const held = async (body: unknown) => {
      const response = await gateway("/v1/chat/completions", withKey(key, { method: "POST", body: JSON.stringify({ ...(body as object), stream: true }) }));
      await response.text();
      return (await customerStub(id).requestCharge(response.headers.get("x-request-id")!))!.held_units;
    };
    // An origin may obey either field first: the hold covers the larger one.
    expect(await held({ max_tokens: 0, max_completion_tokens: 50 })).toBe(50);
    expect(await held({ max_tokens: 40, max_completion_tokens: 7 })).toBe(40);
    expect(await held({ max_tokens: 10, n: 3 })).toBe(30);
    // No limit field: hold_units (1000), times n; a zero or missing n counts as one.
    expect(await held({ n: 0 })).toBe(1000);
    expect(await held({ max_tokens: 200_000 })).toBe(1000);
  });

  it("takes the hold from the request (hold_units_from), capped by hold_units, and reads a number in the JSON body", async () => {
    meteredOrigin();
    const { id, key } = await customerWithCredit(3);
    // max_tokens 20 at 0.1 cent: a 2-cent hold fits in 3 cents where the full 100-unit hold would not.
    const small = await gateway("/v1/json-tokens?tokens=15", withKey(key, { method: "POST", body: JSON.stringify({ max_tokens: 20 }) }));
    expect(small.status).toBe(200);
    expect(small.headers.get("x-payg-charge-cents")).toBe("1.5");
    expect(((await small.json()) as { answer: string }).answer).toBe("forty-two");
    const tooBig = await gateway("/v1/json-tokens?tokens=1", withKey(key, { method: "POST", body: JSON.stringify({ max_tokens: 100_000 }) }));
    expect(tooBig.status).toBe(402);
    expect((await balance(id)).balanceMicros).toBe(1_500_000);
  });

  it("serves both modes of an OpenAI-style API with one meter: the JSON usage, or the stream's final usage chunk", async () => {
    meteredOrigin();
    const { id, key } = await customerWithCredit(10);
    const plain = await gateway("/v1/chat/completions", withKey(key, { method: "POST", body: JSON.stringify({ max_tokens: 12 }) }));
    expect(plain.headers.get("x-payg-charge-cents")).toBe("0.12");
    // The client asks for the usage chunk itself: it gets it.
    const asked = await gateway(
      "/v1/chat/completions",
      withKey(key, { method: "POST", body: JSON.stringify({ stream: true, max_tokens: 25, stream_options: { include_usage: true } }) }),
    );
    expect(asked.headers.get("x-payg-hold-units")).toBe("25");
    const text = await asked.text();
    expect(text).toContain('"usage":{"total_tokens":25}');
    expect(text.trimEnd().split("\n").at(-1)).toBe(": x-payg-charge-cents: 0.25, x-payg-balance-cents: 9.63");
    expect((await balance(id)).balanceMicros).toBe(9_630_000);
    expect(chatBodies.at(-1)).toMatchObject({ stream: true, stream_options: { include_usage: true } });
  });

  it("asks for a stream's usage chunk on the client's behalf, charges it, and takes it out of the client's stream", async () => {
    meteredOrigin();
    const { id, key } = await customerWithCredit(10);
    // A client that does not ask for usage cannot make the stream free: the gateway asks for it.
    const streamed = await gateway(
      "/v1/chat/completions",
      withKey(key, { method: "POST", body: JSON.stringify({ stream: true, max_tokens: 25, stream_options: { include_usage: false } }) }),
    );
    const text = await streamed.text();
    expect(chatBodies.at(-1)).toMatchObject({ stream: true, max_tokens: 25, stream_options: { include_usage: true } });
    // Every token event reaches the client, the usage chunk (empty choices) does not: some clients index choices[0].
    expect(text.split("\n\n").filter((e) => e.startsWith('data: {"token"'))).toHaveLength(25);
    expect(text).not.toContain("usage");
    expect(text).toContain("data: [DONE]");
    expect(text.trimEnd().split("\n").at(-1)).toBe(": x-payg-charge-cents: 0.25, x-payg-balance-cents: 9.75");
    expect(await customerStub(id).requestCharge(streamed.headers.get("x-request-id")!)).toMatchObject({ units: 25, charged_exact_cents: "0.25", reason: "completed" });
  });
});

describe("streams are cut at zero", () => {
  it("a 50-event stream on 20 units of credit delivers exactly 20 events, then the error event; the balance ends at exactly 0", async () => {
    meteredOrigin();
    const { id, key } = await customerWithCredit(20);
    const response = await gateway("/v1/events?events=50", withKey(key));
    expect(response.status).toBe(200);
    const text = await response.text();
    const events = text.split("\n\n").filter(Boolean);
    expect(events.filter((e) => e.startsWith("data: {"))).toHaveLength(20);
    const error = events.find((e) => e.startsWith("event: error"))!;
    expect(JSON.parse(error.split("\ndata: ")[1]!)).toMatchObject({ code: "insufficient_credit", customer_id: id, available_balance_cents: 0 });
    expect(events.at(-1)).toBe(": x-payg-charge-cents: 20, x-payg-balance-cents: 0");
    expect(await balance(id)).toMatchObject({ balanceMicros: 0, ledgerSumMicros: 0 });
    expect(await customerStub(id).requestCharge(response.headers.get("x-request-id")!)).toMatchObject({ units: 20, charged_exact_cents: "20", reason: "cut_off" });
  });

  it("a client that hangs up pays for every event it was handed, the last piece included", async () => {
    const { id, key } = await customerWithCredit(100);
    const config = getConfig(env);
    const meter = resolveMeter(config, "GET", "/v1/events");
    const stub = customerStub(id);
    const held = await stub.authorize({
      keyHash: await sha256Hex(key),
      meter: meter.name,
      priceMicros: meter.priceMicros,
      requestId: "req_gone",
      hold: { units: 8, onMissing: "hold" },
    });
    expect(held).toMatchObject({ outcome: "ok", heldUnits: 8 });
    const events = Array.from({ length: 50 }, (_, i) => `data: {"token":${i}}\n\n`).join("");
    const origin = new Response(events, { headers: { "content-type": "text/event-stream" } });
    const pending: Promise<unknown>[] = [];
    const { response } = await meterResponse({ config, meter, stub: stub as never, requestId: "req_gone", heldUnits: 8, waitUntil: (p) => pending.push(p) }, origin);
    // The client reads one piece (the paid events that had arrived) and hangs up before asking for more.
    const reader = response.body!.getReader();
    const piece = new TextDecoder().decode((await reader.read()).value);
    const handed = (piece.match(/data: \{/g) ?? []).length;
    expect(handed).toBeGreaterThan(0);
    await reader.cancel("client went away");
    await Promise.all(pending);
    expect(await stub.requestCharge("req_gone")).toMatchObject({ status: "settled", units: handed, charged_exact_cents: String(handed), reason: "client_gone" });
    expect(await balance(id)).toMatchObject({ balanceMicros: (100 - handed) * 1_000_000, ledgerSumMicros: (100 - handed) * 1_000_000 });
  });

  it("two streams and plain requests racing for the last cents never take the balance below the minimum", async () => {
    meteredOrigin();
    const { id, key } = await customerWithCredit(30);
    const [a, b, ...plain] = await Promise.all([
      gateway("/v1/events?events=40", withKey(key)).then((r) => r.text()),
      gateway("/v1/events?events=40", withKey(key)).then((r) => r.text()),
      ...Array.from({ length: 10 }, () => gateway("/v1/x", withKey(key)).then((r) => r.status)),
    ]);
    const delivered = [a, b].map((t) => (t as string).split("\n\n").filter((e) => e.startsWith("data: {")).length);
    const passed = (plain as number[]).filter((s) => s === 200).length;
    expect(delivered[0]! + delivered[1]! + passed).toBe(30);
    expect(await balance(id)).toMatchObject({ balanceMicros: 0, ledgerSumMicros: 0 });
  });
});

describe("holds never leak", () => {
  it("a hold whose request went silent is settled by the alarm as charged in full, whatever on_missing_units says", async () => {
    const { id, key } = await customerWithCredit(20);
    const stub = customerStub(id);
    const longAgo = Date.now() - 10 * 60_000;
    const held = await stub.authorize({
      keyHash: await sha256Hex(key),
      meter: "json_tokens",
      priceMicros: 100_000,
      requestId: "req_orphan",
      hold: { units: 30, onMissing: "zero" },
      now: longAgo,
    });
    expect(held).toMatchObject({ outcome: "ok", heldUnits: 30 });
    expect((await balance(id)).balanceMicros).toBe(17_000_000);
    await runDurableObjectAlarm(stub);
    // The gateway lost track of a response it forwarded (its worker went away, or a stream's client
    // stopped reading): the origin did the work, so the hold is not given back.
    expect(await stub.requestCharge("req_orphan")).toMatchObject({ status: "settled", charged_exact_cents: "3", reason: "expired" });
    expect(await balance(id)).toMatchObject({ balanceMicros: 17_000_000, ledgerSumMicros: 17_000_000 });
    // A stream that resumes afterwards gets no more units and is cut.
    expect(await stub.extendHold({ requestId: "req_orphan", units: 10 })).toMatchObject({ grantedUnits: 0 });
    expect(await stub.keepHold({ requestId: "req_orphan" })).toBe(false);
  });
});

describe("long responses keep their hold", () => {
  it("a stream still arriving when its hold would have expired is kept, and charged the units it reports", async () => {
    // Gates between the stream's events: the first lets time pass, the second holds the stream open.
    const gates = [Promise.withResolvers<void>(), Promise.withResolvers<void>()];
    const pieces: (string | number)[] = ['data: {"token":0}\n\n', 0, 'data: {"token":1}\n\n', 1, 'data: {"usage":{"total_tokens":30}}\n\ndata: [DONE]\n\n'];
    const encoder = new TextEncoder();
    server.use(
      http.post(`${ORIGIN}/v1/chat/completions`, () => {
        let i = 0;
        const stream = new ReadableStream<Uint8Array>({
          async pull(controller) {
            const piece = pieces[i++];
            if (piece === undefined) return controller.close();
            if (typeof piece === "number") await gates[piece]!.promise;
            const text = typeof piece === "number" ? pieces[i++] : piece;
            if (typeof text === "string") controller.enqueue(encoder.encode(text));
          },
        });
        return new HttpResponse(stream, { headers: { "content-type": "text/event-stream" } });
      }),
    );
    const { id, key } = await customerWithCredit(20);
    // This worker renews a hold every half origin timeout (50 ms) while its response arrives.
    const ctx = createExecutionContext();
    const request = new Request("http://gateway.test/v1/chat/completions", withKey(key, { method: "POST", body: JSON.stringify({ stream: true, max_tokens: 1000 }) }));
    const response = await worker.fetch(request, { ...env, GOVERNANCE: { origin_timeout_ms: 100 } } as never, ctx);
    const requestId = response.headers.get("x-request-id")!;
    const expiresAt = () =>
      runInDurableObject(customerStub(id), (_instance, state) => state.storage.sql.exec("SELECT expires_at FROM holds WHERE request_id = ?", requestId).one().expires_at as number);
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = decoder.decode((await reader.read()).value);
    const firstExpiry = await expiresAt();
    await scheduler.wait(80);
    gates[0]!.resolve();
    text += decoder.decode((await reader.read()).value);
    for (let i = 0; i < 50 && (await expiresAt()) === firstExpiry; i++) await scheduler.wait(10);
    // The alarm at the first expiry finds the hold kept: the stream is alive, not abandoned.
    await runInDurableObject(customerStub(id), (instance) => expireHolds((instance as unknown as { context: Parameters<typeof expireHolds>[0] }).context, firstExpiry));
    expect(await customerStub(id).requestCharge(requestId)).toMatchObject({ status: "open" });
    gates[1]!.resolve();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    await waitOnExecutionContext(ctx);
    expect(text).toContain('"total_tokens":30');
    // 30 tokens at 0.01 cent: 0.3 cents.
    expect(await customerStub(id).requestCharge(requestId)).toMatchObject({ status: "settled", units: 30, charged_exact_cents: "0.3" });
    expect((await balance(id)).balanceMicros).toBe(20_000_000 - 300_000);
  });
});

describe("a client that hangs up on an sse:json stream", () => {
  it("after the usage event pays the units it reported, not the hold", async () => {
    // The metered stream itself, with no HTTP pump in front that would keep a read pending: the
    // client reads the usage event and hangs up while the origin is still open.
    const encoder = new TextEncoder();
    const origin = new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(encoder.encode('data: {"token":0}\n\ndata: {"usage":{"total_tokens":30}}\n\n'));
        },
      }),
      { headers: { "content-type": "text/event-stream" } },
    );
    const { id, key } = await customerWithCredit(20);
    const config = getConfig(env);
    const meter = resolveMeter(config, "POST", "/v1/chat/completions");
    const stub = customerStub(id);
    const held = await stub.authorize({
      keyHash: await sha256Hex(key),
      meter: meter.name,
      priceMicros: meter.priceMicros,
      requestId: "req_hangup",
      hold: { units: 1000, onMissing: "hold" },
    });
    expect(held).toMatchObject({ outcome: "ok", heldUnits: 1000 });
    const pending: Promise<unknown>[] = [];
    const { response } = await meterResponse({ config, meter, stub: stub as never, requestId: "req_hangup", heldUnits: 1000, waitUntil: (p) => pending.push(p) }, origin);
    const reader = response.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain('"total_tokens":30');
    await reader.cancel("client went away");
    await Promise.all(pending);
    // 30 tokens at 0.01 cent, not the 1,000 held.
    expect(await stub.requestCharge("req_hangup")).toMatchObject({ status: "settled", units: 30, charged_exact_cents: "0.3", reason: "client_gone" });
    expect((await balance(id)).balanceMicros).toBe(20_000_000 - 300_000);
  });
});

describe("Idempotency-Key on billed requests", () => {
  const post = (key: string, idem: string, body: string, path = "/v1/json-tokens?tokens=7") =>
    gateway(path, withKey(key, { method: "POST", body, headers: { "idempotency-key": idem } }));

  it("a retry replays byte-identical output, marked Idempotent-Replayed, with no second charge and no second origin call", async () => {
    const calls = meteredOrigin();
    const { id, key } = await customerWithCredit(20);
    const first = await post(key, "idem-1", '{"q":1}');
    const firstBody = await first.arrayBuffer();
    const again = await post(key, "idem-1", '{"q":1}');
    expect(again.status).toBe(200);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(new Uint8Array(await again.arrayBuffer())).toEqual(new Uint8Array(firstBody));
    expect(calls).toEqual(["json"]);
    expect((await balance(id)).balanceMicros).toBe(19_300_000);
  });

  it("the same key with another method, path or body is 422; while the first is in flight, 409", async () => {
    let open!: () => void;
    const calls = meteredOrigin({ gate: new Promise((r) => (open = r)) });
    const { id, key } = await customerWithCredit(20);
    const first = post(key, "idem-2", '{"q":1}');
    await new Promise((r) => setTimeout(r, 50));
    const during = await post(key, "idem-2", '{"q":1}');
    expect(during.status).toBe(409);
    expect(((await during.json()) as any).error.code).toBe("idempotency_in_progress");
    open();
    expect((await first).status).toBe(200);
    const mismatch = await post(key, "idem-2", '{"q":2}');
    expect(mismatch.status).toBe(422);
    expect(((await mismatch.json()) as any).error.code).toBe("idempotency_mismatch");
    expect((await post(key, "idem-2", '{"q":1}', "/v1/json-tokens?tokens=8")).status).toBe(422);
    expect(calls).toEqual(["json"]);
    expect((await balance(id)).balanceMicros).toBe(19_300_000);
  });

  it("is scoped to the API key that made the request: another key of the customer with the same Idempotency-Key makes a new request", async () => {
    const calls = meteredOrigin();
    const { id, key } = await customerWithCredit(20);
    const other = (await admin("POST", `/customers/${id}/keys`, { name: "second" })).body.key as string;
    const first = await post(key, "shared-idem", '{"q":1}');
    await first.text();
    const second = await post(other, "shared-idem", '{"q":1}');
    await second.text();
    expect(second.status).toBe(200);
    expect(second.headers.get("idempotent-replayed")).toBeNull();
    expect(second.headers.get("x-request-id")).not.toBe(first.headers.get("x-request-id"));
    expect(calls).toEqual(["json", "json"]);
    expect((await balance(id)).balanceMicros).toBe(20_000_000 - 2 * 700_000);
    // Each key replays its own.
    expect((await post(other, "shared-idem", '{"q":1}')).headers.get("idempotent-replayed")).toBe("true");
    expect(calls).toHaveLength(2);
  });

  it("an origin 5xx that stays charged is kept and replayed; one that is refunded forgets the key", async () => {
    server.use(http.post(`${ORIGIN}/v1/fails/:status`, ({ params }) => HttpResponse.json({ failed: true }, { status: Number(params.status) })));
    const { id, key } = await customerWithCredit(20);
    const send = (status: number) => gateway(`/v1/fails/${status}`, withKey(key, { method: "POST", body: "{}", headers: { "idempotency-key": `fail-${status}` } }));
    const failed = await send(500);
    expect(failed.status).toBe(500);
    await failed.text();
    const replay = await send(500);
    expect(replay.status).toBe(500);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect((await balance(id)).balanceMicros).toBe(19_000_000);
    // 503 is in refund_on: refunded, so its key is forgotten and a retry is a new request.
    const refunded = await send(503);
    expect(refunded.status).toBe(503);
    await refunded.text();
    const retried = await send(503);
    expect(retried.headers.get("idempotent-replayed")).toBeNull();
    expect((await balance(id)).balanceMicros).toBe(19_000_000);
  });

  it("a streamed response is not replayable: the retry gets 409 and is not charged", async () => {
    meteredOrigin();
    const { id, key } = await customerWithCredit(20);
    const first = await gateway("/v1/events?events=3", withKey(key, { headers: { "idempotency-key": "idem-3" } }));
    await first.text();
    const before = (await balance(id)).balanceMicros;
    const retry = await gateway("/v1/events?events=3", withKey(key, { headers: { "idempotency-key": "idem-3" } }));
    expect(retry.status).toBe(409);
    expect(((await retry.json()) as any).error.code).toBe("idempotency_not_replayable");
    expect((await balance(id)).balanceMicros).toBe(before);
  });
});

/**
 * What EventSource makes of a whole stream, by the SSE line grammar (CRLF, LF or CR, mixed): how
 * many events it dispatches with data other than [DONE]. Written apart from SseSplitter.
 */
function unitsPerSpec(text: string): number {
  let units = 0;
  let data: string[] | null = null;
  const line = /([^\r\n]*)(\r\n|\n|\r)/y;
  for (let match = line.exec(text); match; match = line.exec(text)) {
    const content = match[1]!;
    if (content === "") {
      if (data !== null && data.join("\n").trim() !== "[DONE]") units++;
      data = null;
    } else if (content === "data" || content.startsWith("data:")) {
      (data ??= []).push(content === "data" ? "" : content.slice(5).replace(/^ /, ""));
    }
  }
  return units;
}

describe("sse:events counting (property)", () => {
  it("the splitter counts the events EventSource dispatches, however the bytes are cut and the line endings mixed", () => {
    // Lines (blank ones end events) with any terminator, and a few stray pieces of text.
    const content = fc.oneof(fc.constantFrom("", "", "data: é€🙂", "data", "data:[DONE]", "id: 1", ": c"), fc.string({ maxLength: 6 }));
    const line = fc.tuple(content, fc.constantFrom("\n", "\r", "\r\n")).map(([text, end]) => text + end);
    const piece = fc.oneof({ arbitrary: line, weight: 4 }, { arbitrary: fc.constantFrom("\r", "\n", "data: x"), weight: 1 });
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 12 }), (pieces, cuts) => {
        const text = pieces.join("");
        const bytes = new TextEncoder().encode(text);
        const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const splitter = new SseSplitter();
        const events: string[] = [];
        let from = 0;
        for (const to of [...at, bytes.length]) {
          events.push(...splitter.push(bytes.subarray(from, to)));
          from = to;
        }
        // Every byte passes, in order; the units are EventSource's (an unfinished last event is none).
        expect(events.join("") + splitter.rest()).toBe(text);
        expect(events.filter(isUnitEvent).length).toBe(unitsPerSpec(text));
      }),
      { numRuns: 1000 },
    );
  });

  it("an event is a unit exactly when it has data that is not [DONE], whatever its lines and line endings", () => {
    const line = fc.oneof(
      fc.constantFrom("data", "data:", "data: [DONE]", "data:[DONE]", "data: [DONE] ", "id: 7", "event: ping", ": comment", "retry: 10", "datum: x", " data: x"),
      fc.string({ maxLength: 12 }).map((t) => `data: ${t.replace(/[\r\n]/g, "")}`),
    );
    fc.assert(
      fc.property(fc.array(line, { minLength: 1, maxLength: 5 }), fc.constantFrom("\n", "\r\n", "\r"), (lines, eol) => {
        const event = lines.join(eol) + eol + eol;
        const data = eventData(event);
        expect(isUnitEvent(event)).toBe(data !== null && data.trim() !== "[DONE]");
      }),
    );
  });
});
