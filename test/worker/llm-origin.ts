import { HttpResponse, http } from "msw";
import { ORIGIN } from "./helpers";
import { server } from "./setup";

/*
 * An LLM API double at <ORIGIN>/llm/{chat,responses,messages}, answering in the shapes OpenAI and
 * Anthropic document (platform.openai.com/docs/api-reference/chat/object, …/responses/object,
 * docs.anthropic.com/en/api/messages and …/build-with-claude/streaming), with the usage the test
 * gives in `?usage=<JSON>`: as a JSON body, or streamed when the request says "stream": true.
 * `?mode=` 503 (fails), nousage (reports none), hang (streams the text, then never ends).
 */
export interface LlmSeen {
  bodies: Record<string, unknown>[];
}

export function llmOrigin(): LlmSeen {
  const seen: LlmSeen = { bodies: [] };
  server.use(
    http.post(`${ORIGIN}/llm/:api`, async ({ request, params }) => {
      const url = new URL(request.url);
      const body = (await request.json()) as Record<string, unknown>;
      seen.bodies.push(body);
      const mode = url.searchParams.get("mode");
      if (mode === "503") return HttpResponse.json({ error: { message: "overloaded" } }, { status: 503 });
      const usage = mode === "nousage" ? undefined : JSON.parse(url.searchParams.get("usage") ?? "{}");
      const api = params.api as "chat" | "responses" | "messages";
      if (body.stream !== true) return HttpResponse.json(jsonAnswer(api, body.model, usage));
      const events = streamed(api, body, usage);
      const encoder = new TextEncoder();
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          for (const e of events) controller.enqueue(encoder.encode(e));
          if (mode !== "hang") controller.close();
        },
      });
      return new HttpResponse(stream, { headers: { "content-type": "text/event-stream" } });
    }),
  );
  return seen;
}

function jsonAnswer(api: string, model: unknown, usage: unknown) {
  if (api === "chat")
    return { id: "chatcmpl-1", object: "chat.completion", created: 1, model, choices: [{ index: 0, message: { role: "assistant", content: "hi" }, finish_reason: "stop" }], usage };
  if (api === "responses") return { id: "resp_1", object: "response", status: "completed", model, output: [], usage };
  return { id: "msg_1", type: "message", role: "assistant", model, content: [{ type: "text", text: "hi" }], stop_reason: "end_turn", usage };
}

const data = (value: unknown, event?: string) => `${event ? `event: ${event}\n` : ""}data: ${JSON.stringify(value)}\n\n`;

function streamed(api: string, body: Record<string, unknown>, usage: Record<string, unknown> | undefined): string[] {
  if (api === "chat") {
    const chunk = (choices: unknown[], extra = {}) => data({ id: "chatcmpl-1", object: "chat.completion.chunk", model: body.model, choices, ...extra });
    const asked = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
    return [
      chunk([{ index: 0, delta: { role: "assistant", content: "hi" }, finish_reason: null }]),
      chunk([{ index: 0, delta: {}, finish_reason: "stop" }]),
      ...(asked && usage ? [chunk([], { usage })] : []),
      "data: [DONE]\n\n",
    ];
  }
  if (api === "responses") {
    return [
      data({ type: "response.created", sequence_number: 0, response: { id: "resp_1", status: "in_progress", usage: null } }, "response.created"),
      data({ type: "response.output_text.delta", sequence_number: 1, delta: "hi" }, "response.output_text.delta"),
      ...(usage ? [data({ type: "response.completed", sequence_number: 2, response: { id: "resp_1", status: "completed", usage } }, "response.completed")] : []),
    ];
  }
  // Anthropic: message_start has the input side (and output_tokens 1); message_delta the cumulative counts.
  const { output_tokens, ...start } = usage ?? {};
  return [
    data(
      {
        type: "message_start",
        message: { id: "msg_1", type: "message", role: "assistant", content: [], model: body.model, usage: usage ? { ...start, output_tokens: 1 } : undefined },
      },
      "message_start",
    ),
    data({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "hi" } }, "content_block_delta"),
    ...(usage ? [data({ type: "message_delta", delta: { stop_reason: "end_turn" }, usage: { output_tokens } }, "message_delta")] : []),
    data({ type: "message_stop" }, "message_stop"),
  ];
}
