import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ModelPrices } from "../../../src/lib/meters";
import { holdCost, tokensCost } from "../../../src/tokens/prices";
import { countsOf } from "../../../src/tokens/usage";
import { admin, customerWithCredit, gateway, settledCharge, withKey } from "../helpers";
import { llmOrigin } from "../llm-origin";

// Tokens meters (units = "tokens") against the LLM double of ../llm-origin.ts, with the project's
// meters (vitest.config.ts), in cents per million tokens: llm_chat (openai-chat) small* 1000 input,
// 100 cached, 4000 output, +10 %; "*" 10000 for everything; hold_units 100. llm_responses
// (openai-responses) small* as llm_chat with reasoning at 8000, no "*" row. llm_messages
// (anthropic-messages) haiku* 1000 input, 100 cache read, 1250 cache write, 5000 output.
// The official SDK clients against the demo origin are in test/e2e/tokens.test.ts.

function post(key: string, api: "chat" | "responses" | "messages", body: unknown, query: Record<string, string> = {}) {
  const search = new URLSearchParams(query).toString();
  return gateway(
    `/llm/${api}${search ? `?${search}` : ""}`,
    withKey(key, { method: "POST", headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) }),
  );
}
const usage = (u: unknown) => ({ usage: JSON.stringify(u) });

const record = (id: string, response: Response) => settledCharge(id, response.headers.get("x-request-id")!);

async function balance(id: string): Promise<string> {
  return (await admin("GET", `/customers/${id}`)).body.balance.available_exact_cents;
}

const none = { input: 0, cached_input: 0, cache_write: 0, output: 0, reasoning: 0 };

describe("tokens: prices by model and kind", () => {
  it("openai-chat: input less cached, cached, output less reasoning, reasoning; each at its price, plus the row's markup", async () => {
    llmOrigin();
    const { id, key } = await customerWithCredit(10);
    const response = await post(
      key,
      "chat",
      { model: "small-2025", messages: [{ role: "user", content: "hi" }] },
      usage({ prompt_tokens: 30, completion_tokens: 20, prompt_tokens_details: { cached_tokens: 10 }, completion_tokens_details: { reasoning_tokens: 5 } }),
    );
    expect(response.status).toBe(200);
    // (20 × 1000 + 10 × 100 + 15 × 4000 + 5 × 4000) × 1.1 micro-cents.
    expect(response.headers.get("x-payg-charge-cents")).toBe("0.1111");
    expect(await record(id, response)).toMatchObject({
      meter: "llm_chat",
      model: "small*",
      tokens: { input: 20, cached_input: 10, cache_write: 0, output: 15, reasoning: 5 },
      charged_exact_cents: "0.1111",
    });
    expect(await balance(id)).toBe("9.8889");
  });

  it('a model no other row matches is priced by the "*" row; a table without one refuses it with 400 unknown_model before the origin', async () => {
    const seen = llmOrigin();
    const { id, key } = await customerWithCredit(10);
    const priced = await post(key, "chat", { model: "another/vendor-model", messages: [] }, usage({ prompt_tokens: 2, completion_tokens: 3 }));
    expect(priced.headers.get("x-payg-charge-cents")).toBe("0.05");
    expect((await record(id, priced)).model).toBe("*");
    const refused = await post(key, "responses", { model: "another/vendor-model", input: "hi" }, usage({ input_tokens: 2, output_tokens: 3 }));
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as any).error).toMatchObject({ code: "unknown_model", details: { model: "another/vendor-model" } });
    expect(seen.bodies).toHaveLength(1);
    expect(await balance(id)).toBe("9.95");
  });

  it.each([
    ["not JSON", "{nope", "invalid_json"],
    ["no model", JSON.stringify({ messages: [] }), "invalid_request"],
    ["a model that is not a string", JSON.stringify({ model: 7, messages: [] }), "invalid_request"],
  ])("a body with %s is refused with 400 before the origin and costs nothing", async (_name, body, code) => {
    const seen = llmOrigin();
    const { id, key } = await customerWithCredit(10);
    const response = await post(key, "chat", body, usage({ prompt_tokens: 1, completion_tokens: 1 }));
    expect(response.status).toBe(400);
    expect(((await response.json()) as any).error.code).toBe(code);
    expect(seen.bodies).toHaveLength(0);
    expect(await balance(id)).toBe("10");
  });

  it("openai-responses: the same split, reasoning at its own price, JSON and from the streamed response.completed", async () => {
    llmOrigin();
    // The hold without max_output_tokens: 4,096 tokens (the default hold_units) at the reasoning price, 32.77 cents.
    const { id, key } = await customerWithCredit(100);
    const reported = usage({ input_tokens: 10, input_tokens_details: { cached_tokens: 4 }, output_tokens: 8, output_tokens_details: { reasoning_tokens: 3 } });
    // 6 × 1000 + 4 × 100 + 5 × 4000 + 3 × 8000 micro-cents.
    const json = await post(key, "responses", { model: "small", input: "hi" }, reported);
    expect(json.headers.get("x-payg-charge-cents")).toBe("0.0504");
    const streamed = await post(key, "responses", { model: "small", input: "hi", stream: true }, reported);
    expect(streamed.headers.get("x-payg-hold-cents")).not.toBeNull();
    expect(await streamed.text()).toContain("response.completed");
    expect(await record(id, streamed)).toMatchObject({ tokens: { input: 6, cached_input: 4, cache_write: 0, output: 5, reasoning: 3 }, charged_exact_cents: "0.0504" });
    expect(await balance(id)).toBe("99.8992");
  });

  it("anthropic-messages: the four fields as reported (they do not overlap), JSON and streamed (message_start, then message_delta's cumulative output)", async () => {
    llmOrigin();
    const { id, key } = await customerWithCredit(10);
    const reported = usage({ input_tokens: 7, cache_read_input_tokens: 20, cache_creation_input_tokens: 3, output_tokens: 9 });
    // 7 × 1000 + 20 × 100 + 3 × 1250 + 9 × 5000 micro-cents.
    const json = await post(key, "messages", { model: "haiku-4", max_tokens: 50, messages: [] }, reported);
    expect(json.headers.get("x-payg-charge-cents")).toBe("0.05775");
    const streamed = await post(key, "messages", { model: "haiku-4", max_tokens: 50, messages: [], stream: true }, reported);
    await streamed.text();
    expect(await record(id, streamed)).toMatchObject({
      model: "haiku*",
      tokens: { input: 7, cached_input: 20, cache_write: 3, output: 9, reasoning: 0 },
      charged_exact_cents: "0.05775",
    });
    expect(await balance(id)).toBe("9.8845");
  });
});

describe("tokens: holds", () => {
  it("holds the output limit × n at the output price plus one token per body byte at the dearest input price, with the markup", async () => {
    llmOrigin();
    const { id, key } = await customerWithCredit(10);
    const body = { model: "small", max_tokens: 50, max_completion_tokens: 20, n: 2, messages: [{ role: "user", content: "hello" }] };
    const response = await post(key, "chat", body, usage({ prompt_tokens: 3, completion_tokens: 4 }));
    const bytes = new TextEncoder().encode(JSON.stringify(body)).byteLength;
    const held = Math.ceil(((bytes * 1000 + 100 * 4000) * 110) / 100);
    const charge = await record(id, response);
    expect(charge.held_units).toBe(held);
    expect(charge.held_units).toBe(holdCost(testRow(), bytes, 100));
    // Without a limit, the meter's hold_units (100 tokens) bounds the output.
    const bare = await post(key, "chat", { model: "small", messages: [] }, usage({ prompt_tokens: 1, completion_tokens: 1 }));
    expect((await record(id, bare)).held_units).toBe(
      Math.ceil(((new TextEncoder().encode(JSON.stringify({ model: "small", messages: [] })).byteLength * 1000 + 100 * 4000) * 110) / 100),
    );
  });

  it("a hold the credit cannot cover is refused with the 402 template before the origin", async () => {
    const seen = llmOrigin();
    const { id, key } = await customerWithCredit(1);
    const refused = await post(key, "chat", { model: "small", max_tokens: 1000, messages: [] }, usage({ prompt_tokens: 1, completion_tokens: 1 }));
    expect(refused.status).toBe(402);
    expect(((await refused.json()) as any).code).toBe("insufficient_credit");
    expect(seen.bodies).toHaveLength(0);
    expect(await balance(id)).toBe("1");
  });

  it("settles to what the usage says, past the hold too (into debt)", async () => {
    llmOrigin();
    const { id, key } = await customerWithCredit(1);
    const response = await post(key, "chat", { model: "small", messages: [] }, usage({ prompt_tokens: 0, completion_tokens: 500 }));
    // 500 × 4000 × 1.1 micro-cents: 2.2 cents, on 1 cent of credit.
    expect(response.headers.get("x-payg-charge-cents")).toBe("2.2");
    const charge = await record(id, response);
    expect(charge.over_hold_units).toBe(2_200_000 - (charge.held_units as number));
    expect(await balance(id)).toBe("-1.2");
  });

  it("a response without usage is charged its hold; a refundable failure gives it all back, and neither invents tokens", async () => {
    llmOrigin();
    const { id, key } = await customerWithCredit(10);
    const missing = await post(key, "chat", { model: "small", max_tokens: 10, messages: [] }, { mode: "nousage" });
    const charged = await record(id, missing);
    expect(charged).toMatchObject({ reason: "units_missing", model: "small*", tokens: null });
    expect(charged.charged_exact_cents).toBe(missing.headers.get("x-payg-charge-cents"));
    expect(Number(charged.charged_exact_cents)).toBeGreaterThan(0);
    const failed = await post(key, "chat", { model: "small", max_tokens: 10, messages: [] }, { mode: "503" });
    expect([failed.status, failed.headers.get("x-payg-charge-cents")]).toEqual([503, "0"]);
    const models = (await admin("GET", `/customers/${id}/usage?hours=1`)).body.models;
    expect(models.totals.range).toEqual([{ meter: "llm_chat", model: "small*", requests: 1, tokens: none, charged_exact_cents: charged.charged_exact_cents }]);
  });

  it("openai-chat streams: the gateway asks for the usage chunk and keeps it from a client that did not; a client that hangs up first pays the hold", async () => {
    const seen = llmOrigin();
    const { id, key } = await customerWithCredit(10);
    const streamed = await post(key, "chat", { model: "small", stream: true, messages: [] }, usage({ prompt_tokens: 2, completion_tokens: 3 }));
    const text = await streamed.text();
    expect(seen.bodies[0]).toMatchObject({ stream_options: { include_usage: true } });
    expect(text).not.toContain('"usage"');
    expect(await record(id, streamed)).toMatchObject({ tokens: { ...none, input: 2, output: 3 }, charged_exact_cents: "0.0154" });

    const hanging = await post(key, "chat", { model: "small", stream: true, messages: [] }, { ...usage({ prompt_tokens: 2, completion_tokens: 3 }), mode: "hang" });
    const reader = hanging.body!.getReader();
    await reader.read();
    await reader.cancel();
    const gone = await record(id, hanging);
    expect(gone).toMatchObject({ reason: "client_gone", tokens: null });
    expect(gone.charged_exact_cents).not.toBe("0");
  });
});

describe("tokens: cost is exact", () => {
  it("tokensCost is the exact rational total, rounded up once to a micro-cent", () => {
    fc.assert(
      fc.property(
        fc.record({ input: fc.nat(1e9), cached_input: fc.nat(1e9), cache_write: fc.nat(1e9), output: fc.nat(1e9), reasoning: fc.nat(1e9) }),
        fc.record({ input: fc.nat(1e9), cached_input: fc.nat(1e9), cache_write: fc.nat(1e9), output: fc.nat(1e9), reasoning: fc.nat(1e9) }),
        fc.nat(500),
        (counts, perMillion, markup) => {
          const row = { ...testRow(), perMillion, markupPercent: markup };
          const exact =
            Object.keys(counts).reduce((sum, k) => sum + BigInt(counts[k as keyof typeof counts]) * BigInt(perMillion[k as keyof typeof perMillion]), 0n) * BigInt(100 + markup);
          const cost = BigInt(Math.min(tokensCost(row, counts), Number.MAX_SAFE_INTEGER));
          const scale = 100_000_000n;
          // cost is the least whole micro-cent at or above the exact total (or the largest amount).
          if (cost < 1_000_000_000_000_000n) expect(cost * scale >= exact && (cost - 1n) * scale < exact).toBe(true);
        },
      ),
    );
  });

  it("a detail past its total is not counted twice", () => {
    expect(
      countsOf("openai-chat", { prompt_tokens: 5, completion_tokens: 2, prompt_tokens_details: { cached_tokens: 9 }, completion_tokens_details: { reasoning_tokens: 7 } }),
    ).toEqual({
      ...none,
      cached_input: 5,
      reasoning: 2,
    });
    expect(countsOf("openai-chat", { prompt_tokens: "5", completion_tokens: -1 })).toBeNull();
  });
});

/** The llm_chat small* row, as compiled. */
function testRow(): ModelPrices {
  return {
    model: "small*",
    pattern: /^small.*$/,
    perMillion: { input: 1_000_000_000, cached_input: 100_000_000, cache_write: 1_000_000_000, output: 4_000_000_000, reasoning: 4_000_000_000 },
    markupPercent: 10,
  };
}
