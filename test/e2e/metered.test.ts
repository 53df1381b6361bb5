import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { customerWithKey, type Gateway, startGateway } from "./harness";

// Billed from the response, over real HTTP, against the demo origin: an sse:json meter on its
// OpenAI-compatible chat API (one price per completion token), a header meter and a per-event
// stream meter. The shipped tokens meter (per model and token kind) is in tokens.test.ts.
let metered: Gateway;
let origin: Awaited<ReturnType<typeof startDemoOrigin>>;

const PRICING = {
  currency: "usd",
  default_price_cents: "1",
  meters: [
    {
      name: "chat_tokens",
      methods: ["POST"],
      path: "/v1/chat/completions",
      price_cents: "0.01",
      units: "sse:json:usage.completion_tokens",
      hold_units: 4096,
      hold_units_from: ["json:max_completion_tokens", "json:max_tokens"],
      hold_multiplier_from: "json:n",
      stripe_event_name: "chat_tokens",
    },
    { name: "tokens", path: "/v1/tokens", price_cents: "1", units: "header:x-usage-tokens", hold_units: 10 },
    { name: "events", path: "/v1/stream", price_cents: "1", units: "sse:events", hold_units: 8 },
  ],
};

beforeAll(async () => {
  origin = await startDemoOrigin({ port: 0 });
  metered = await startGateway({ vars: { ORIGIN_URL: origin.url, PRICING: JSON.stringify(PRICING) } });
});
afterAll(async () => {
  await metered?.stop();
  await origin?.close();
});

const chat = (key: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  metered.fetch("/v1/chat/completions", {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "demo-1", messages: [{ role: "user", content: "Hello there" }], ...body }),
  });

const originCalls = (customer: string, path: string) => origin.received.filter((r) => r.path === path && r.headers["x-payg-customer-id"] === customer).length;

async function balance(gateway: Gateway, id: string): Promise<string> {
  return (await gateway.admin("GET", `/customers/${id}`)).body.balance.available_exact_cents;
}

/** The admin view of one request's charge, once it has settled (a stream settles as it closes). */
async function settledCharge(gateway: Gateway, id: string, requestId: string) {
  for (let i = 0; i < 100; i++) {
    const charge = await gateway.admin("GET", `/customers/${id}/requests/${requestId}`);
    if (charge.status === 200 && charge.body.status === "settled") return charge.body;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`request ${requestId} never settled`);
}

describe("an sse:json chat_tokens meter against an OpenAI-compatible origin", () => {
  it("charges the completion tokens the JSON body reports, to the micro-cent", async () => {
    const { key } = await customerWithKey(metered, "cus_e2e_chat", 10);
    const response = await chat(key, { max_tokens: 37 });
    expect(response.status).toBe(200);
    const body = await response.json();
    expect(body.usage.completion_tokens).toBe(37);
    expect(response.headers.get("x-payg-charge-cents")).toBe("0.37");
    expect(response.headers.get("x-payg-balance-cents")).toBe("9.63");
    expect(await balance(metered, "cus_e2e_chat")).toBe("9.63");
    const charge = await settledCharge(metered, "cus_e2e_chat", response.headers.get("x-request-id")!);
    expect(charge).toMatchObject({ meter: "chat_tokens", held_units: 37, units: 37, over_hold_units: 0, charged_exact_cents: "0.37", reason: "completed" });
  });

  it("a streamed completion that asks for usage passes through untouched and ends with its charge as an SSE comment", async () => {
    const { key } = await customerWithKey(metered, "cus_e2e_chat_stream", 10);
    const response = await chat(key, { max_tokens: 50, stream: true, stream_options: { include_usage: true } });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/event-stream");
    expect(response.headers.get("x-payg-hold-units")).toBe("50");
    const text = await response.text();
    const data = text.split("\n\n").filter((e) => e.startsWith("data: "));
    expect(data).toHaveLength(50 + 2 + 1); // a chunk per token, the finish chunk, the usage chunk, [DONE]
    expect(JSON.parse(data[51]!.slice(6)).usage.completion_tokens).toBe(50);
    expect(data[52]).toBe("data: [DONE]");
    expect(text.endsWith(": x-payg-charge-cents: 0.5, x-payg-balance-cents: 9.5\n\n")).toBe(true);
    expect(await balance(metered, "cus_e2e_chat_stream")).toBe("9.5");
    expect(await settledCharge(metered, "cus_e2e_chat_stream", response.headers.get("x-request-id")!)).toMatchObject({ units: 50, charged_exact_cents: "0.5" });
  });

  it("a streamed completion that does not ask for usage is still charged: the gateway asks the origin for it and keeps it from the client", async () => {
    const { key } = await customerWithKey(metered, "cus_e2e_chat_nousage", 10);
    const response = await chat(key, { max_tokens: 40, stream: true });
    const text = await response.text();
    const data = text.split("\n\n").filter((e) => e.startsWith("data: "));
    // A chunk per token, the finish chunk and [DONE]; no chunk with empty choices reaches the client.
    expect(data).toHaveLength(40 + 1 + 1);
    expect(data.every((d) => d === "data: [DONE]" || JSON.parse(d.slice(6)).choices.length === 1)).toBe(true);
    const forwarded = origin.received.find((r) => r.headers["x-request-id"] === response.headers.get("x-request-id"))!;
    expect(JSON.parse(forwarded.body)).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    expect(text.endsWith(": x-payg-charge-cents: 0.4, x-payg-balance-cents: 9.6\n\n")).toBe(true);
    expect(await settledCharge(metered, "cus_e2e_chat_nousage", response.headers.get("x-request-id")!)).toMatchObject({ units: 40, charged_exact_cents: "0.4" });
  });

  it("no completions at $0: max_tokens 0 holds at least one token, the larger limit field is held, and n multiplies the hold", async () => {
    const { key } = await customerWithKey(metered, "cus_e2e_chat_zero", 0);
    for (const body of [{ max_tokens: 0 }, { max_tokens: 0, max_completion_tokens: 4096 }, { max_tokens: 0, stream: true }]) {
      const refused = await chat(key, body);
      expect(refused.status).toBe(402);
      expect((await refused.json()).code).toBe("insufficient_credit");
    }
    expect(originCalls("cus_e2e_chat_zero", "/v1/chat/completions")).toBe(0);
    // 5 cents: max_completion_tokens 4,096 (40.96 cents) is held even though max_tokens says 0.
    const { key: poor } = await customerWithKey(metered, "cus_e2e_chat_five", 5);
    expect((await chat(poor, { max_tokens: 0, max_completion_tokens: 4096 })).status).toBe(402);
    // n = 3 completions of 100 tokens: 3 cents held and charged, for the 300 tokens the origin wrote.
    const three = await chat(poor, { max_tokens: 100, n: 3 });
    expect(three.status).toBe(200);
    expect((await three.json()).usage.completion_tokens).toBe(300);
    expect(three.headers.get("x-payg-charge-cents")).toBe("3");
    expect(await settledCharge(metered, "cus_e2e_chat_five", three.headers.get("x-request-id")!)).toMatchObject({ held_units: 300, units: 300 });
    expect(await balance(metered, "cus_e2e_chat_five")).toBe("2");
  });

  it("an Idempotency-Key on a request the origin failed with 500 (charged) replays the 500: one origin call, one charge", async () => {
    const { key } = await customerWithKey(metered, "cus_e2e_idem_500", 10);
    const send = () => metered.fetch("/fault/500", { method: "POST", headers: { authorization: `Bearer ${key}`, "idempotency-key": "pay-once-500" }, body: "{}" });
    const first = await send();
    expect(first.status).toBe(500);
    const firstBytes = new Uint8Array(await first.arrayBuffer());
    let again: Response;
    for (let i = 0; ; i++) {
      again = await send();
      if (again.status !== 409 || i === 50) break;
      await again.arrayBuffer();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(again.status).toBe(500);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(new Uint8Array(await again.arrayBuffer())).toEqual(firstBytes);
    expect(originCalls("cus_e2e_idem_500", "/fault/500")).toBe(1);
    expect(await balance(metered, "cus_e2e_idem_500")).toBe("9");
    // A 503 is refunded: its key is forgotten, and the retry is a new request (refunded again).
    const unavailable = () => metered.fetch("/fault/503", { method: "POST", headers: { authorization: `Bearer ${key}`, "idempotency-key": "pay-once-503" }, body: "{}" });
    expect((await unavailable()).status).toBe(503);
    await new Promise((r) => setTimeout(r, 200));
    expect((await unavailable()).status).toBe(503);
    expect(originCalls("cus_e2e_idem_500", "/fault/503")).toBe(2);
    expect(await balance(metered, "cus_e2e_idem_500")).toBe("9");
  });

  it("a hold the credit cannot cover is refused with 402 before the origin hears of it", async () => {
    const { key } = await customerWithKey(metered, "cus_e2e_chat_poor", 5);
    // No max_tokens: the hold is the meter's hold_units, 4,096 tokens = 40.96 cents.
    const refused = await chat(key, {});
    expect(refused.status).toBe(402);
    expect(await refused.json()).toMatchObject({ code: "insufficient_credit", customer_id: "cus_e2e_chat_poor", available_balance_cents: 5 });
    expect(originCalls("cus_e2e_chat_poor", "/v1/chat/completions")).toBe(0);
    expect(await balance(metered, "cus_e2e_chat_poor")).toBe("5");
    // Asking for at most 100 tokens holds 1 cent: it goes through and pays for what it used.
    const allowed = await chat(key, { max_tokens: 100 });
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get("x-payg-charge-cents")).toBe("1");
    expect(originCalls("cus_e2e_chat_poor", "/v1/chat/completions")).toBe(1);
  });

  it("an Idempotency-Key retry gets the first response byte for byte, without a second origin call or charge; another body under it is 422", async () => {
    const { key } = await customerWithKey(metered, "cus_e2e_chat_idem", 10);
    const first = await chat(key, { max_tokens: 20 }, { "idempotency-key": "order-7f3a" });
    expect(first.status).toBe(200);
    const firstBytes = new Uint8Array(await first.arrayBuffer());
    // The first response is kept once its body has been read to the end (just now).
    let again: Response;
    for (let i = 0; ; i++) {
      again = await chat(key, { max_tokens: 20 }, { "idempotency-key": "order-7f3a" });
      if (again.status !== 409 || i === 50) break;
      await again.arrayBuffer();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(again.status).toBe(200);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(new Uint8Array(await again.arrayBuffer())).toEqual(firstBytes);
    expect(originCalls("cus_e2e_chat_idem", "/v1/chat/completions")).toBe(1);
    expect(await balance(metered, "cus_e2e_chat_idem")).toBe("9.8");

    const mismatch = await chat(key, { max_tokens: 21 }, { "idempotency-key": "order-7f3a" });
    expect(mismatch.status).toBe(422);
    expect((await mismatch.json()).error.code).toBe("idempotency_mismatch");
    expect(originCalls("cus_e2e_chat_idem", "/v1/chat/completions")).toBe(1);
    expect(await balance(metered, "cus_e2e_chat_idem")).toBe("9.8");
  });
});

describe("a header meter and a per-event stream meter", () => {
  const get = (key: string, path: string, init: RequestInit = {}) => metered.fetch(path, { ...init, headers: { authorization: `Bearer ${key}` } });

  it("charges exactly the units the origin's header reports, past the hold too (that part recorded as over_hold)", async () => {
    const { key } = await customerWithKey(metered, "cus_e2e_header", 100);
    const exact = await get(key, "/v1/tokens?tokens=7");
    expect(exact.status).toBe(200);
    expect(exact.headers.get("x-payg-charge-cents")).toBe("7");
    expect(await balance(metered, "cus_e2e_header")).toBe("93");

    const over = await get(key, "/v1/tokens?tokens=25");
    expect(over.status).toBe(200);
    expect(over.headers.get("x-payg-charge-cents")).toBe("25");
    expect(await balance(metered, "cus_e2e_header")).toBe("68");
    const charge = await settledCharge(metered, "cus_e2e_header", over.headers.get("x-request-id")!);
    expect(charge).toMatchObject({ meter: "tokens", held_units: 10, units: 25, over_hold_units: 15, charged_exact_cents: "25" });

    const unknown = await metered.admin("GET", "/customers/cus_e2e_header/requests/req_nobody_sent");
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("not_found");
  });

  it("a hold given back after its grant was voided is booked as the void: the request costs only its units", async () => {
    const { key } = await customerWithKey(metered, "cus_e2e_void_hold", 20);
    const grant = (await metered.admin("GET", "/customers/cus_e2e_void_hold/grants")).body.grants[0];
    // In flight: 10 cents held (hold_units 10 at 1 cent); the grant is voided meanwhile (its other 10 cents).
    const pending = get(key, "/v1/tokens?tokens=3&delay_ms=1500");
    for (let i = 0; i < 100 && (await balance(metered, "cus_e2e_void_hold")) !== "10"; i++) await new Promise((r) => setTimeout(r, 20));
    expect((await metered.admin("DELETE", `/customers/cus_e2e_void_hold/grants/${grant.id}`)).status).toBe(200);
    const response = await pending;
    expect(response.headers.get("x-payg-charge-cents")).toBe("3");
    expect(await settledCharge(metered, "cus_e2e_void_hold", response.headers.get("x-request-id")!)).toMatchObject({ units: 3, charged_exact_cents: "3" });
    const usage = (await metered.admin("GET", "/customers/cus_e2e_void_hold/usage?hours=24")).body;
    expect(usage.totals.last_24h.find((m: { meter: string }) => m.meter === "tokens")).toMatchObject({ charged_exact_cents: "3" });
    const { entries } = (await metered.admin("GET", "/customers/cus_e2e_void_hold/ledger")).body;
    expect(entries.filter((e: { kind: string }) => e.kind === "void").map((e: { amount_exact_cents: string }) => e.amount_exact_cents)).toEqual(["-7", "-10"]);
    expect(await balance(metered, "cus_e2e_void_hold")).toBe("0");
  });

  it("a 50-event stream on 20 cents delivers 20 events, then an error event from the 402 template, and leaves the balance at 0", async () => {
    const { key } = await customerWithKey(metered, "cus_e2e_cutoff", 20);
    const response = await get(key, "/v1/stream?events=50");
    expect(response.status).toBe(200);
    const events = (await response.text()).split("\n\n").filter(Boolean);
    const data = events.filter((e) => e.startsWith("id: "));
    expect(data).toHaveLength(20);
    const error = events.find((e) => e.startsWith("event: error"));
    expect(error).toBeDefined();
    expect(JSON.parse(error!.split("\ndata: ")[1]!)).toMatchObject({ code: "insufficient_credit", customer_id: "cus_e2e_cutoff", available_balance_cents: 0 });
    expect(await balance(metered, "cus_e2e_cutoff")).toBe("0");
    expect(await settledCharge(metered, "cus_e2e_cutoff", response.headers.get("x-request-id")!)).toMatchObject({ units: 20, charged_exact_cents: "20", reason: "cut_off" });
  });

  it("a client that hangs up after 5 events pays for what was sent: at least those 5, never an event the origin did not write", async () => {
    const { key } = await customerWithKey(metered, "cus_e2e_gone", 100);
    const abort = new AbortController();
    const response = await metered.fetch("/v1/stream?events=50&interval_ms=200", { headers: { authorization: `Bearer ${key}` }, signal: abort.signal });
    expect(response.status).toBe(200);
    const requestId = response.headers.get("x-request-id")!;
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    while ((text.match(/\n\n/g) ?? []).length < 5) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended early");
      text += decoder.decode(value, { stream: true });
    }
    expect((text.match(/^id: /gm) ?? []).length).toBe(5);
    abort.abort();
    const charge = await settledCharge(metered, "cus_e2e_gone", requestId);
    // Between the client and the worker, wrangler dev's proxy and the sockets may still have taken
    // an event or two after the client's 5th: those were sent and are charged. The origin stops
    // when the gateway hangs up on it, long before its 50th event.
    const written = origin.received.find((r) => r.headers["x-request-id"] === requestId)!.events!;
    expect(charge.reason).toBe("client_gone");
    expect(charge.units).toBeGreaterThanOrEqual(5);
    expect(charge.units).toBeLessThanOrEqual(written);
    expect(written).toBeLessThan(50);
    expect(charge.charged_exact_cents).toBe(String(charge.units));
    expect(await balance(metered, "cus_e2e_gone")).toBe(String(100 - charge.units));
  });
});
