// The demo origin's LLM APIs, answering as each provider documents its own (JSON, or server-sent
// events with "stream": true): OpenAI chat completions (/v1/chat/completions), OpenAI Responses
// (/v1/responses) and Anthropic messages (/v1/messages). A token is a word. Each answer writes
// exactly its output limit in words (max_completion_tokens or max_tokens, max_output_tokens,
// max_tokens; 16 when none, at most 4,096), and reports its usage as the real API does,
// prompt caching included: every message before the last is a prompt prefix, and a prefix seen
// before is served from the cache (OpenAI: cached tokens, automatic; Anthropic: cache reads, and a
// first sight with a cache_control block is a cache write). With "reasoning_effort" (chat) or
// "reasoning" (Responses), half the output tokens are reasoning tokens, which the client never sees.

const WORDS = "the quick brown fox jumps over the lazy dog while the gateway counts every token".split(" ");

const words = (text) =>
  String(text ?? "")
    .split(/\s+/)
    .filter(Boolean).length;
/** A message's text: a string, or content blocks with text. */
const textOf = (content) => (Array.isArray(content) ? content.map((b) => (typeof b === "string" ? b : (b?.text ?? ""))).join(" ") : String(content ?? ""));
const bounded = (raw, fallback, min, max) => {
  const n = Math.floor(Number(raw ?? fallback));
  return Number.isFinite(n) ? Math.min(Math.max(n, min), max) : fallback;
};

export function demoLlm() {
  const cache = new Set();
  /** A prompt as turns of text: its prefix (all but the last) is what the cache can serve. */
  function cached(turns) {
    const prefix = turns.slice(0, -1);
    const tokens = prefix.reduce((n, t) => n + words(t), 0);
    const key = JSON.stringify(prefix);
    const hit = tokens > 0 && cache.has(key);
    if (tokens > 0) cache.add(key);
    return { total: turns.reduce((n, t) => n + words(t), 0), prefix: tokens, hit };
  }
  const output = (limit, reasoning) => {
    const perChoice = bounded(limit, 16, 1, 4_096);
    const hidden = reasoning ? Math.floor(perChoice / 2) : 0;
    return { perChoice, hidden, text: Array.from({ length: perChoice - hidden }, (_, i) => WORDS[i % WORDS.length]) };
  };

  /** OpenAI chat completions: `n` choices (1-8), one chunk per word when streamed, the usage chunk only with stream_options.include_usage. */
  function chat(res, request) {
    if (!Array.isArray(request.messages)) return invalid(res, "messages must be an array.", "messages");
    const prompt = cached(request.messages.map((m) => textOf(m?.content)));
    const choices = bounded(request.n, 1, 1, 8);
    const out = output(request.max_completion_tokens ?? request.max_tokens, typeof request.reasoning_effort === "string");
    const usage = {
      prompt_tokens: prompt.total,
      completion_tokens: out.perChoice * choices,
      total_tokens: prompt.total + out.perChoice * choices,
      prompt_tokens_details: { cached_tokens: prompt.hit ? prompt.prefix : 0, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: out.hidden * choices, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    };
    const id = `chatcmpl-demo${Date.now().toString(36)}`;
    const created = Math.floor(Date.now() / 1000);
    const model = request.model;
    if (request.stream !== true) {
      return json(res, 200, {
        id,
        object: "chat.completion",
        created,
        model,
        choices: Array.from({ length: choices }, (_, index) => ({
          index,
          message: { role: "assistant", content: out.text.join(" "), refusal: null },
          logprobs: null,
          finish_reason: "length",
        })),
        usage,
      });
    }
    const chunk = (choices, extra = {}) => `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices, ...extra })}\n\n`;
    const events = [];
    for (let index = 0; index < choices; index++) {
      for (const [i, w] of out.text.entries()) events.push(chunk([{ index, delta: i === 0 ? { role: "assistant", content: w } : { content: ` ${w}` }, finish_reason: null }]));
    }
    for (let index = 0; index < choices; index++) events.push(chunk([{ index, delta: {}, finish_reason: "length" }]));
    if (request.stream_options?.include_usage === true) events.push(chunk([], { usage }));
    events.push("data: [DONE]\n\n");
    stream(res, events);
  }

  /** OpenAI Responses: `input` a string or message items; streamed as typed events ending with response.completed. */
  function responses(res, request) {
    const input = typeof request.input === "string" ? [request.input] : Array.isArray(request.input) ? request.input.map((m) => textOf(m?.content)) : null;
    if (!input) return invalid(res, "input must be a string or an array.", "input");
    const prompt = cached([...(request.instructions ? [request.instructions] : []), ...input]);
    const out = output(request.max_output_tokens, request.reasoning !== undefined && request.reasoning !== null);
    const id = `resp_demo${Date.now().toString(36)}`;
    const text = out.text.join(" ");
    const message = { type: "message", id: `msg_${id}`, status: "completed", role: "assistant", content: [{ type: "output_text", text, annotations: [], logprobs: [] }] };
    const response = (status, extra) => ({
      id,
      object: "response",
      created_at: Math.floor(Date.now() / 1000),
      status,
      model: request.model,
      output: [],
      parallel_tool_calls: true,
      tool_choice: "auto",
      tools: [],
      error: null,
      incomplete_details: null,
      instructions: request.instructions ?? null,
      metadata: {},
      temperature: null,
      top_p: null,
      max_output_tokens: request.max_output_tokens ?? null,
      usage: null,
      ...extra,
    });
    const usage = {
      input_tokens: prompt.total,
      input_tokens_details: { cached_tokens: prompt.hit ? prompt.prefix : 0, cache_write_tokens: 0 },
      output_tokens: out.perChoice,
      output_tokens_details: { reasoning_tokens: out.hidden },
      total_tokens: prompt.total + out.perChoice,
    };
    const done = response("completed", { output: [message], usage });
    if (request.stream !== true) return json(res, 200, done);
    let seq = 0;
    const event = (type, data) => `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`;
    const part = { item_id: message.id, output_index: 0, content_index: 0 };
    const events = [
      event("response.created", { response: response("in_progress") }),
      event("response.in_progress", { response: response("in_progress") }),
      event("response.output_item.added", { output_index: 0, item: { ...message, status: "in_progress", content: [] } }),
      event("response.content_part.added", { ...part, part: { type: "output_text", text: "", annotations: [] } }),
      ...out.text.map((w, i) => event("response.output_text.delta", { ...part, delta: i === 0 ? w : ` ${w}`, logprobs: [] })),
      event("response.output_text.done", { ...part, text, logprobs: [] }),
      event("response.content_part.done", { ...part, part: message.content[0] }),
      event("response.output_item.done", { output_index: 0, item: message }),
      event("response.completed", { response: done }),
    ];
    stream(res, events);
  }

  /** Anthropic messages: max_tokens required; streamed as message_start … message_delta (cumulative usage) … message_stop. */
  function messages(res, request) {
    if (!Array.isArray(request.messages)) return anthropicError(res, "messages: Field required");
    if (typeof request.max_tokens !== "number") return anthropicError(res, "max_tokens: Field required");
    const system = request.system === undefined ? [] : [textOf(request.system)];
    const turns = [...system, ...request.messages.map((m) => textOf(m?.content))];
    const prompt = cached(turns);
    const marked = JSON.stringify([request.system, request.messages]).includes('"cache_control"');
    const read = prompt.hit ? prompt.prefix : 0;
    const written = !prompt.hit && marked ? prompt.prefix : 0;
    const out = output(request.max_tokens, false);
    const usage = { input_tokens: prompt.total - read - written, cache_creation_input_tokens: written, cache_read_input_tokens: read, output_tokens: out.perChoice };
    const id = `msg_demo${Date.now().toString(36)}`;
    const base = { id, type: "message", role: "assistant", model: request.model, stop_sequence: null };
    if (request.stream !== true) return json(res, 200, { ...base, content: [{ type: "text", text: out.text.join(" ") }], stop_reason: "max_tokens", usage });
    const event = (type, data) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    stream(res, [
      event("message_start", { message: { ...base, content: [], stop_reason: null, usage: { ...usage, output_tokens: 1 } } }),
      event("content_block_start", { index: 0, content_block: { type: "text", text: "" } }),
      event("ping", {}),
      ...out.text.map((w, i) => event("content_block_delta", { index: 0, delta: { type: "text_delta", text: i === 0 ? w : ` ${w}` } })),
      event("content_block_stop", { index: 0 }),
      event("message_delta", { delta: { stop_reason: "max_tokens", stop_sequence: null }, usage: { output_tokens: out.perChoice } }),
      event("message_stop", {}),
    ]);
  }

  const routes = { "/v1/chat/completions": chat, "/v1/responses": responses, "/v1/messages": messages };
  /** Answers `path` when it is one of the three APIs (POST); false otherwise. */
  return function handleLlm(req, res, path, body) {
    const route = routes[path];
    if (!route || req.method !== "POST") return false;
    let request;
    try {
      request = JSON.parse(body);
    } catch {
      request = null;
    }
    if (request === null || typeof request !== "object" || Array.isArray(request)) {
      path === "/v1/messages" ? anthropicError(res, "The body is not a JSON object.") : invalid(res, "The body is not a JSON object.", null);
    } else {
      route(res, request);
    }
    return true;
  };
}

/** One write per event, each on its own turn of the event loop (so a client sees a real stream). */
function stream(res, events) {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  let i = 0;
  const next = () => {
    if (res.destroyed) return;
    if (i === events.length) return res.end();
    res.write(events[i++]);
    setImmediate(next);
  };
  next();
}

function json(res, status, value) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(value));
}

function invalid(res, message, param) {
  json(res, 400, { error: { message, type: "invalid_request_error", param, code: null } });
}

function anthropicError(res, message) {
  json(res, 400, { type: "error", error: { type: "invalid_request_error", message } });
}
