import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoOrigin } from "../../scripts/demo-origin.mjs";
import { customerWithKey, type Gateway, startGateway } from "./harness";

// The shipped tokens meters (wrangler.toml) in the real `wrangler dev`, in front of the demo
// origin's three LLM APIs, with the official `openai` and `@anthropic-ai/sdk` clients. A demo
// token is a word; every message before the last is a prompt prefix the demo caches. Prices per
// million tokens: gpt-4o-mini* 15 input, 7.5 cached, 60 output; o4-mini* 110 / 27.5 / 440;
// claude-haiku-4* 100 input, 10 cache read, 125 cache write, 500 output, plus 25 %.
let gateway: Gateway;
let origin: Awaited<ReturnType<typeof startDemoOrigin>>;

beforeAll(async () => {
  origin = await startDemoOrigin({ port: 0 });
  gateway = await startGateway({ vars: { ORIGIN_URL: origin.url } });
});
afterAll(async () => {
  await gateway?.stop();
  await origin?.close();
});

const openai = (key: string) => new OpenAI({ apiKey: key, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
const anthropic = (key: string) => new Anthropic({ apiKey: key, baseURL: gateway.url, maxRetries: 0 });

async function balance(id: string): Promise<string> {
  return (await gateway.admin("GET", `/customers/${id}`)).body.balance.available_exact_cents;
}

/** The admin view of one request's charge, once settled (a stream settles as it closes). */
async function settled(id: string, requestId: string) {
  for (let i = 0; i < 100; i++) {
    const charge = await gateway.admin("GET", `/customers/${id}/requests/${requestId}`);
    if (charge.status === 200 && charge.body.status === "settled") return charge.body;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`request ${requestId} never settled`);
}

const tokens = (counts: Partial<Record<"input" | "cached_input" | "cache_write" | "output" | "reasoning", number>>) => ({
  input: 0,
  cached_input: 0,
  cache_write: 0,
  output: 0,
  reasoning: 0,
  ...counts,
});

describe("openai chat completions (openai-chat preset)", () => {
  it("charges input and output at the model's prices to the micro-cent; the same prompt again is cheaper (cached input)", async () => {
    const id = "cus_e2e_tok_chat";
    const { key } = await customerWithKey(gateway, id, 10);
    const ask = () =>
      openai(key)
        .chat.completions.create({
          model: "gpt-4o-mini-2024-07-18",
          max_tokens: 37,
          messages: [
            { role: "system", content: "You answer tersely" },
            { role: "user", content: "Say hello" },
          ],
        })
        .withResponse();
    const first = await ask();
    expect(first.data.usage).toMatchObject({ prompt_tokens: 5, completion_tokens: 37, prompt_tokens_details: { cached_tokens: 0 } });
    // 5 × 15 + 37 × 60 micro-cents.
    expect(first.response.headers.get("x-payg-charge-cents")).toBe("0.002295");
    const second = await ask();
    expect(second.data.usage?.prompt_tokens_details?.cached_tokens).toBe(3);
    // 2 × 15 + 3 × 7.5 + 37 × 60 = 2,272.5, rounded up to 2,273 micro-cents.
    expect(second.response.headers.get("x-payg-charge-cents")).toBe("0.002273");
    const record = await settled(id, second.response.headers.get("x-request-id")!);
    expect(record).toMatchObject({ meter: "chat_tokens", model: "gpt-4o-mini*", tokens: tokens({ input: 2, cached_input: 3, output: 37 }), charged_exact_cents: "0.002273" });
    expect(await balance(id)).toBe("9.995432");
  });

  it("streamed, with or without the client asking for usage, is charged what the usage chunk says", async () => {
    const id = "cus_e2e_tok_chat_stream";
    const { key } = await customerWithKey(gateway, id, 10);
    for (const asked of [true, false]) {
      const { data: stream, response } = await openai(key)
        .chat.completions.create({
          model: "gpt-4o-mini",
          max_tokens: 20,
          stream: true,
          ...(asked ? { stream_options: { include_usage: true } } : {}),
          messages: [
            { role: "system", content: `Count the words ${asked}` },
            { role: "user", content: "One two" },
          ],
        })
        .withResponse();
      let text = "";
      let usage: OpenAI.CompletionUsage | null | undefined = null;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? "";
        if (chunk.usage) usage = chunk.usage;
      }
      expect(text.split(" ")).toHaveLength(20);
      // The usage chunk the gateway asked for on the client's behalf is not the client's to see.
      expect(usage === null ? null : usage.completion_tokens).toBe(asked ? 20 : null);
      // 6 × 15 + 20 × 60 micro-cents (the system prompt is 4 words).
      const record = await settled(id, response.headers.get("x-request-id")!);
      expect(record).toMatchObject({ model: "gpt-4o-mini*", tokens: tokens({ input: 6, output: 20 }), charged_exact_cents: "0.00129" });
    }
  });

  it("reasoning tokens are priced as output when the row names no reasoning price, each token once", async () => {
    const id = "cus_e2e_tok_reason";
    const { key } = await customerWithKey(gateway, id, 10);
    const { data, response } = await openai(key)
      .chat.completions.create({ model: "o4-mini", max_completion_tokens: 40, reasoning_effort: "low", messages: [{ role: "user", content: "Think hard" }] })
      .withResponse();
    expect(data.usage).toMatchObject({ completion_tokens: 40, completion_tokens_details: { reasoning_tokens: 20 } });
    // 2 × 110 + 20 × 440 + 20 × 440.
    expect(response.headers.get("x-payg-charge-cents")).toBe("0.01782");
    expect(await settled(id, response.headers.get("x-request-id")!)).toMatchObject({ model: "o4-mini*", tokens: tokens({ input: 2, output: 20, reasoning: 20 }) });
  });

  it("an unknown model is refused with 400 unknown_model before the origin, and costs nothing", async () => {
    const id = "cus_e2e_tok_unknown";
    const { key } = await customerWithKey(gateway, id, 10);
    const before = origin.received.length;
    const error = await openai(key)
      .chat.completions.create({ model: "gpt-9-ultra", messages: [{ role: "user", content: "Hi" }] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(400);
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe("unknown_model");
    expect(origin.received.length).toBe(before);
    expect(await balance(id)).toBe("10");
  });
});

describe("openai responses (openai-responses preset)", () => {
  it("JSON and streamed (response.completed), cached input cheaper", async () => {
    const id = "cus_e2e_tok_responses";
    const { key } = await customerWithKey(gateway, id, 10);
    const ask = () => openai(key).responses.create({ model: "gpt-4o-mini", instructions: "Be brief", input: "Tell me a story", max_output_tokens: 12 }).withResponse();
    const first = await ask();
    expect(first.data.output_text.split(" ")).toHaveLength(12);
    // 6 × 15 + 12 × 60.
    expect(first.response.headers.get("x-payg-charge-cents")).toBe("0.00081");
    const second = await ask();
    expect(second.data.usage?.input_tokens_details.cached_tokens).toBe(2);
    // 4 × 15 + 2 × 7.5 + 12 × 60.
    expect(second.response.headers.get("x-payg-charge-cents")).toBe("0.000795");

    const { data: stream, response } = await openai(key)
      .responses.create({ model: "gpt-4o-mini", input: "Stream a short poem", max_output_tokens: 9, stream: true })
      .withResponse();
    let completed: OpenAI.Responses.Response | null = null;
    for await (const event of stream) if (event.type === "response.completed") completed = event.response;
    expect(completed?.usage).toMatchObject({ input_tokens: 4, output_tokens: 9 });
    // 4 × 15 + 9 × 60.
    expect(await settled(id, response.headers.get("x-request-id")!)).toMatchObject({
      meter: "responses_tokens",
      tokens: tokens({ input: 4, output: 9 }),
      charged_exact_cents: "0.0006",
    });
    expect(await balance(id)).toBe("9.997795");
  });
});

describe("anthropic messages (anthropic-messages preset)", () => {
  it("prices input, cache writes, cache reads and output with the row's markup; streamed from message_start and message_delta", async () => {
    const id = "cus_e2e_tok_anthropic";
    const { key } = await customerWithKey(gateway, id, 10);
    const ask = () =>
      anthropic(key)
        .messages.create({
          model: "claude-haiku-4-5",
          max_tokens: 10,
          system: [{ type: "text", text: "You are a careful assistant", cache_control: { type: "ephemeral" } }],
          messages: [{ role: "user", content: "Hi there" }],
        })
        .withResponse();
    const first = await ask();
    expect(first.data.usage).toMatchObject({ input_tokens: 2, cache_creation_input_tokens: 5, cache_read_input_tokens: 0, output_tokens: 10 });
    // (2 × 100 + 5 × 125 + 10 × 500) × 1.25 = 7,281.25, rounded up.
    expect(first.response.headers.get("x-payg-charge-cents")).toBe("0.007282");
    const second = await ask();
    expect(second.data.usage).toMatchObject({ input_tokens: 2, cache_creation_input_tokens: 0, cache_read_input_tokens: 5 });
    // (2 × 100 + 5 × 10 + 10 × 500) × 1.25 = 6,562.5, rounded up.
    expect(second.response.headers.get("x-payg-charge-cents")).toBe("0.006563");
    expect(await settled(id, second.response.headers.get("x-request-id")!)).toMatchObject({
      meter: "messages_tokens",
      model: "claude-haiku-4*",
      tokens: tokens({ input: 2, cached_input: 5, output: 10 }),
    });

    const stream = anthropic(key).messages.stream({
      model: "claude-haiku-4-5-20251001",
      max_tokens: 8,
      system: "Answer in one line",
      messages: [{ role: "user", content: "Hello" }],
    });
    const final = await stream.finalMessage();
    expect(final.usage).toMatchObject({ input_tokens: 5, output_tokens: 8 });
    // (5 × 100 + 8 × 500) × 1.25 = 5,625 micro-cents.
    for (let i = 0; i < 100 && (await balance(id)) !== "9.98053"; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await balance(id)).toBe("9.98053");
  });
});

describe("usage by model", () => {
  it("the admin usage route splits tokens meters by model and kind", async () => {
    const id = "cus_e2e_tok_usage";
    const { key } = await customerWithKey(gateway, id, 10);
    const client = openai(key);
    await client.chat.completions.create({ model: "gpt-4o-mini", max_tokens: 4, messages: [{ role: "user", content: "a b c" }] });
    await client.chat.completions.create({ model: "gpt-4o-mini-2024-07-18", max_tokens: 6, messages: [{ role: "user", content: "d e" }] });
    await client.chat.completions.create({ model: "o4-mini", max_completion_tokens: 2, messages: [{ role: "user", content: "f" }] });
    const usage = (await gateway.admin("GET", `/customers/${id}/usage?hours=24`)).body;
    expect(usage.models.totals.last_24h).toEqual([
      { meter: "chat_tokens", model: "gpt-4o-mini*", requests: 2, tokens: tokens({ input: 5, output: 10 }), charged_exact_cents: "0.000675" },
      { meter: "chat_tokens", model: "o4-mini*", requests: 1, tokens: tokens({ input: 1, output: 2 }), charged_exact_cents: "0.00099" },
    ]);
    expect(usage.totals.last_24h).toEqual([{ meter: "chat_tokens", requests: 3, charged_exact_cents: "0.001665" }]);
  });
});
