/**
 * Where an event ends: a line terminator (CRLF, LF, or a CR not followed by LF) followed by
 * another, the blank line. Line endings may be mixed within a stream, as the SSE grammar allows.
 */
const BLANK_LINE = /(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r)/;

/**
 * Server-sent events, split as the browser's EventSource does: an event ends at a blank line
 * (LF, CRLF or CR line endings, mixed or not). Each event is passed on byte for byte; the gateway
 * only looks at its `data:` lines.
 */
export class SseSplitter {
  private buffer = "";
  private readonly decoder = new TextDecoder();

  /** Feeds bytes; returns the complete events (each with its terminating blank line). */
  push(chunk: Uint8Array): string[] {
    this.buffer += this.decoder.decode(chunk, { stream: true });
    const events: string[] = [];
    for (;;) {
      const end = BLANK_LINE.exec(this.buffer);
      if (!end) break;
      const cut = end.index + end[0].length;
      events.push(this.buffer.slice(0, cut));
      this.buffer = this.buffer.slice(cut);
    }
    return events;
  }

  /** What is left when the stream ends (an incomplete event, which EventSource discards). */
  rest(): string {
    const rest = this.buffer + this.decoder.decode();
    this.buffer = "";
    return rest;
  }
}

/** The event's data (its `data:` lines joined by newlines), or null when it has none. */
export function eventData(event: string): string | null {
  const lines = event.split(/\r\n|\n|\r/).filter((line) => line === "data" || line.startsWith("data:"));
  if (!lines.length) return null;
  return lines.map((line) => (line === "data" ? "" : line.slice(5).replace(/^ /, ""))).join("\n");
}

/** `sse:events`: every event with data is one unit, except a final `[DONE]`. */
export function isUnitEvent(event: string): boolean {
  // The common event has data and is not [DONE]: decided without splitting it into lines.
  if (!DATA_LINE.test(event)) return false;
  if (!event.includes("[DONE]")) return true;
  const data = eventData(event);
  return data !== null && data.trim() !== "[DONE]";
}

/** A line that is `data` or starts with `data:` (what eventData() reads). */
const DATA_LINE = /(?:^|[\r\n])data(?::|[\r\n]|$)/;

export function sseComment(text: string): string {
  return `: ${text}\n\n`;
}

export function sseEvent(type: string, data: unknown): string {
  return `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** The event with its data replaced (its `id:`, `event:` and `retry:` lines kept, so a client can still resume from it). */
export function withEventData(event: string, data: string): string {
  const kept = event.split(/\r\n|\n|\r/).filter((line) => line !== "" && line !== "data" && !line.startsWith("data:"));
  return `${[...kept, ...data.split("\n").map((line) => `data: ${line}`)].join("\n")}\n\n`;
}
