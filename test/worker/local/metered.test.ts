import { createExecutionContext, env, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { http, HttpResponse } from "msw";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { expireHolds } from "../../../durable-objects/customer-account/hold-settlement";
import { getConfig, resolveMeter } from "../../../src/config";
import worker from "../../../src/index";
import { meterResponse } from "../../../src/proxy/metered";
import { sha256Hex } from "../../../src/keys";
import { eventData, isUnitEvent, SseSplitter } from "../../../src/metering/sse";
import { server } from "../setup";
import { customerStub, customerWithCredit, gateway, ORIGIN, withKey } from "../helpers";

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

  it("charges the hold when a response reports more, and records the rest as over_hold (visible, never charged)", async () => {
    meteredOrigin();
    const { id, key } = await customerWithCredit(20);
    const response = await gateway("/v1/header-tokens?tokens=150", withKey(key));
    expect(response.headers.get("x-payg-charge-cents")).toBe("10");
    const charge = await customerStub(id).requestCharge(response.headers.get("x-request-id")!);
    expect(charge).toMatchObject({ units: 150, over_hold_units: 50, charged_exact_cents: "10" });
    expect((await balance(id)).balanceMicros).toBe(10_000_000);
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
    const streamed = await gateway("/v1/chat/completions", withKey(key, { method: "POST", body: JSON.stringify({ stream: true, max_tokens: 25 }) }));
    expect(streamed.headers.get("x-payg-hold-units")).toBe("25");
    const text = await streamed.text();
    expect(text).toContain('"usage":{"total_tokens":25}');
    expect(text.trimEnd().split("\n").at(-1)).toBe(": x-payg-charge-cents: 0.25, x-payg-balance-cents: 9.63");
    expect((await balance(id)).balanceMicros).toBe(9_630_000);
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

  it("a client that disconnects after 5 events pays for 5", async () => {
    meteredOrigin();
    const { id, key } = await customerWithCredit(100);
    const response = await gateway("/v1/events?events=50", withKey(key));
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let seen = "";
    while ((seen.match(/data: \{/g) ?? []).length < 5) seen += decoder.decode((await reader.read()).value);
    await reader.cancel();
    const requestId = response.headers.get("x-request-id")!;
    for (let i = 0; i < 50 && (await customerStub(id).requestCharge(requestId))?.status !== "settled"; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await customerStub(id).requestCharge(requestId)).toMatchObject({ status: "settled", units: 5, charged_exact_cents: "5", reason: "client_gone" });
    expect((await balance(id)).balanceMicros).toBe(95_000_000);
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
  it("a hold whose request never settles is released by the alarm, charged as on_missing_units says", async () => {
    const { id, key } = await customerWithCredit(20);
    const stub = customerStub(id);
    const longAgo = Date.now() - 10 * 60_000;
    const held = await stub.authorize({ keyHash: await sha256Hex(key), meter: "json_tokens", priceMicros: 100_000, requestId: "req_orphan", hold: { units: 30, onMissing: "zero" }, now: longAgo });
    expect(held).toMatchObject({ outcome: "ok", heldUnits: 30 });
    expect((await balance(id)).balanceMicros).toBe(17_000_000);
    await runDurableObjectAlarm(stub);
    expect(await stub.requestCharge("req_orphan")).toMatchObject({ status: "settled", charged_exact_cents: "0", reason: "expired" });
    expect(await balance(id)).toMatchObject({ balanceMicros: 20_000_000, ledgerSumMicros: 20_000_000 });
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
    const expiresAt = () => runInDurableObject(customerStub(id), (_instance, state) => state.storage.sql.exec("SELECT expires_at FROM holds WHERE request_id = ?", requestId).one().expires_at as number);
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = decoder.decode((await reader.read()).value);
    const firstExpiry = await expiresAt();
    await scheduler.wait(80);
    gates[0]!.resolve();
    text += decoder.decode((await reader.read()).value);
    for (let i = 0; i < 50 && (await expiresAt()) === firstExpiry; i++) await scheduler.wait(10);
    // The alarm at the first expiry finds the hold kept: the stream is alive, not abandoned.
    await runInDurableObject(customerStub(id), (instance) => expireHolds((instance as unknown as { room: Parameters<typeof expireHolds>[0] }).room, firstExpiry));
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
    const held = await stub.authorize({ keyHash: await sha256Hex(key), meter: meter.name, priceMicros: meter.priceMicros, requestId: "req_hangup", hold: { units: 1000, onMissing: "hold" } });
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
