import type { customerStub } from "../env";
import type { CompiledMeter, Config } from "../lib/config";
import { log } from "../lib/log";
import { mergeValues } from "../lib/merge";
import type { ModelPrices, TokenCounts, TokenPreset } from "../lib/meters";
import { formatCents } from "../lib/money";
import { renderJson } from "../lib/template";
import { eventData, isUnitEvent, SseSplitter, sseComment, sseEvent } from "../metering/sse";
import { asUnits, unitsInJson } from "../metering/units";
import { tokensCost } from "../tokens/prices";
import { StreamUsage, usageOfBody } from "../tokens/usage";
import { readUpTo } from "./idempotency";

type Stub = ReturnType<typeof customerStub>;
type SettleReason = Parameters<Stub["settleHold"]>[0]["reason"];
type SettleResult = Awaited<ReturnType<Stub["settleHold"]>>;

/** A JSON response read for its units is buffered up to this size; past it, its units count as unreadable. */
export const JSON_UNITS_MAX_BYTES = 8 * 1_048_576;

export interface MeterContext {
  config: Config;
  meter: CompiledMeter;
  stub: Stub;
  requestId: string;
  heldUnits: number;
  /** The gateway asked for a streamed response's usage chunk (empty `choices`) and the client did not: it is taken out. */
  stripUsageChunk?: boolean;
  /** A tokens meter's request: its preset and the models table's row for its model (units are micro-cents). */
  tokens?: { preset: TokenPreset; row: ModelPrices };
  /** Keeps the invocation alive until settlement is written, whatever the client does. */
  waitUntil(promise: Promise<unknown>): void;
}

export interface Metered {
  response: Response;
  /** The body goes to the client as it arrives (not replayable under an Idempotency-Key). */
  streamed: boolean;
}

export const isEventStream = (response: Response) => (response.headers.get("content-type") ?? "").toLowerCase().startsWith("text/event-stream");

/**
 * A response billed from what it says: the hold taken before forwarding settles to the units it
 * reports (a header, a number in its JSON, or its server-sent events), within the hold.
 */
export async function meterResponse(ctx: MeterContext, origin: Response): Promise<Metered> {
  const units = ctx.meter.units;
  switch (units.kind) {
    case "header": {
      const settled = await settle(ctx, asUnits(origin.headers.get(units.name)));
      return { response: withCharge(new Response(origin.body, origin), settled), streamed: false };
    }
    case "json":
    case "sse_json": {
      // The same meter serves both modes of an API like OpenAI's: a JSON body, or a stream whose
      // events carry the number (its final usage chunk).
      if (isEventStream(origin) && origin.body) {
        let found: number | null = null;
        const reader: UnitReader = {
          see: (data) => {
            const read = unitsInJson(data, units.path);
            if (read !== null) found = read;
          },
          units: () => found,
        };
        return streamedUnits(ctx, origin, reader);
      }
      const [toClient, toRead] = origin.body ? origin.body.tee() : [null, null];
      const bytes = await readUpTo(kept(ctx, toRead), JSON_UNITS_MAX_BYTES);
      const read = bytes === null ? null : unitsInJson(new TextDecoder().decode(bytes), units.path);
      const settled = await settle(ctx, read);
      return { response: withCharge(new Response(toClient, origin), settled), streamed: false };
    }
    case "tokens": {
      const { preset, row } = ctx.tokens!;
      if (isEventStream(origin) && origin.body) {
        const usage = new StreamUsage(preset);
        const reader: UnitReader = {
          see: (data) => usage.see(jsonOf(data)),
          units: () => {
            const counts = usage.counts();
            return counts ? tokensCost(row, counts) : null;
          },
          tokens: () => usage.counts(),
        };
        return streamedUnits(ctx, origin, reader);
      }
      const [toClient, toRead] = origin.body ? origin.body.tee() : [null, null];
      const bytes = await readUpTo(kept(ctx, toRead), JSON_UNITS_MAX_BYTES);
      const counts = bytes === null ? null : usageOfBody(preset, jsonOf(new TextDecoder().decode(bytes)));
      const settled = await settle(ctx, counts ? tokensCost(row, counts) : null, undefined, counts);
      return { response: withCharge(new Response(toClient, origin), settled), streamed: false };
    }
    case "sse_events": {
      if (!isEventStream(origin) || !origin.body) {
        const settled = await settle(ctx, null);
        return { response: withCharge(new Response(origin.body, origin), settled), streamed: false };
      }
      const response = new Response(countedEvents(ctx, origin.body), origin);
      response.headers.delete("content-length");
      response.headers.set("x-payg-hold-units", String(ctx.heldUnits));
      return { response, streamed: true };
    }
    default:
      throw new Error(`meter ${ctx.meter.name} is billed per request`);
  }
}

/**
 * While a response billed from its body is still arriving, its hold is kept from the object's
 * alarm (which settles holds nobody settled, origin_timeout_ms + 60 s after the last sign of
 * life, as charged in full): called on every piece read, it renews the hold at most every half
 * origin timeout. A renewal waits for the object's answer only once the hold may have lapsed (a
 * client that stopped reading for that long): false means the alarm settled it, and a stream
 * still running is then cut, never continued for free.
 */
export function holdKeeper(ctx: MeterContext): () => Promise<boolean> | null {
  const every = ctx.config.GOVERNANCE.origin_timeout_ms / 2;
  let last = Date.now();
  return () => {
    const now = Date.now();
    if (now - last < every) return null;
    const lapsed = now - last >= ctx.config.GOVERNANCE.origin_timeout_ms;
    last = now;
    const renewed = ctx.stub.keepHold({ requestId: ctx.requestId }).catch((error) => {
      log.warn(`request ${ctx.requestId}: keeping its hold failed`, error);
      return true;
    });
    ctx.waitUntil(renewed);
    return lapsed ? renewed : null;
  };
}

/** A body read whole, its hold kept while it arrives. */
export function kept(ctx: MeterContext, body: ReadableStream<Uint8Array> | null): ReadableStream<Uint8Array> | null {
  if (!body) return null;
  const keep = holdKeeper(ctx);
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        keep();
        controller.enqueue(chunk);
      },
    }),
  );
}

/** The error event of a stream whose hold the alarm settled (the client stopped reading past the origin timeout). */
const HOLD_LAPSED = { code: "hold_expired", message: "This stream was idle past the gateway's timeout; its hold was charged and the stream ends here." };

async function settle(ctx: MeterContext, units: number | null, reason: SettleReason = units === null ? "units_missing" : "completed", tokens?: TokenCounts | null) {
  const settling = ctx.stub.settleHold({ requestId: ctx.requestId, units, reason, ...(tokens !== undefined ? { tokens } : {}) });
  ctx.waitUntil(settling);
  return settling;
}

function withCharge(response: Response, settled: { chargedMicros: number; balanceMicros: number }): Response {
  response.headers.set("x-payg-charge-cents", formatCents(settled.chargedMicros));
  response.headers.set("x-payg-balance-cents", formatCents(settled.balanceMicros));
  return response;
}

/**
 * A stream's one settlement: the first call settles the hold, later ones answer null. The
 * invocation is kept alive until it is written, whatever the client does.
 */
export function streamSettlement(ctx: MeterContext): (units: number | null, reason: SettleReason, tokens?: TokenCounts | null) => Promise<SettleResult | null> {
  let finished = false;
  let resolveDone!: () => void;
  ctx.waitUntil(new Promise<void>((resolve) => (resolveDone = resolve)));
  return async (units, reason, tokens) => {
    if (finished) return null;
    finished = true;
    try {
      return await ctx.stub.settleHold({ requestId: ctx.requestId, units, reason, ...(tokens !== undefined ? { tokens } : {}) });
    } catch (error) {
      // The object's alarm releases a hold nobody settled (on_missing_units applies).
      log.error(`request ${ctx.requestId}: settling its stream failed`, error);
      return null;
    } finally {
      resolveDone();
    }
  };
}

/** Workers cannot send HTTP trailers: a stream's settled charge is its last line, an SSE comment clients ignore. */
function chargeComment(settled: { chargedMicros: number; balanceMicros: number }): string {
  return sseComment(`x-payg-charge-cents: ${formatCents(settled.chargedMicros)}, x-payg-balance-cents: ${formatCents(settled.balanceMicros)}`);
}

const encoder = new TextEncoder();

/**
 * `sse:events`: each data event is one unit. The hold covers `heldUnits` events; before the event
 * past it, the hold is extended by the meter's hold_units (or what credit allows). When not one
 * more can be paid for, the client gets an `error` event rendered from the 402 template and the
 * stream ends; the origin request is aborted. The paid events that have arrived are handed over
 * together, one piece per read. Every event handed to the client is charged, also when the
 * client hangs up right after.
 */
function countedEvents(ctx: MeterContext, body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const splitter = new SseSplitter();
  const keep = holdKeeper(ctx);
  const queue: string[] = [];
  let held = ctx.heldUnits;
  let used = 0;
  const settleStream = streamSettlement(ctx);
  const finish = (reason: SettleReason) => settleStream(used, reason);
  const cut = async (controller: ReadableStreamDefaultController<Uint8Array>, event: unknown, reason: SettleReason) => {
    controller.enqueue(encoder.encode(sseEvent("error", event)));
    const settled = await finish(reason);
    if (settled) controller.enqueue(encoder.encode(chargeComment(settled)));
    controller.close();
    await reader.cancel(reason).catch(() => undefined);
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let paid = "";
        for (;;) {
          // Hand over every whole event already paid for, in one piece.
          while (queue.length > 0) {
            const next = queue[0]!;
            if (isUnitEvent(next)) {
              if (used >= held) {
                if (paid) break;
                const extended = await ctx.stub.extendHold({ requestId: ctx.requestId, units: ctx.meter.holdUnits! });
                if (extended.grantedUnits === 0) {
                  const refusal = extended.refusal;
                  const body = refusal ? renderJson(ctx.config.GOVERNANCE.blocked_body, mergeValues(ctx.config, refusal.customer, refusal)) : HOLD_LAPSED;
                  return cut(controller, body, "cut_off");
                }
                held = extended.heldUnits;
              }
              used++;
            }
            paid += next;
            queue.shift();
          }
          if (paid) {
            controller.enqueue(encoder.encode(paid));
            return;
          }
          const { value, done } = await reader.read();
          if (done) {
            const rest = splitter.rest();
            if (rest) controller.enqueue(encoder.encode(rest));
            const settled = await finish("completed");
            if (settled) controller.enqueue(encoder.encode(chargeComment(settled)));
            controller.close();
            return;
          }
          if ((await keep()) === false) return cut(controller, HOLD_LAPSED, "cut_off");
          queue.push(...splitter.push(value));
        }
      },
      async cancel(reason) {
        await reader.cancel(reason).catch(() => undefined);
        await finish("client_gone");
      },
    },
    { highWaterMark: 0 },
  );
}

/** What a streamed response reports, read from each event's data as it passes. */
interface UnitReader {
  see(data: string): void;
  /** The units found so far (null: none). */
  units(): number | null;
  /** A tokens meter's tokens per kind so far. */
  tokens?(): TokenCounts | null;
}

/** A stream billed from what its events report; the hold is a tokens meter's in cents, any other's in units. */
function streamedUnits(ctx: MeterContext, origin: Response, reader: UnitReader): Metered {
  const response = new Response(reportedUnits(ctx, origin.body!, reader), origin);
  response.headers.delete("content-length");
  if (ctx.tokens) response.headers.set("x-payg-hold-cents", formatCents(ctx.heldUnits));
  else response.headers.set("x-payg-hold-units", String(ctx.heldUnits));
  return { response, streamed: true };
}

/**
 * `sse:json:<path>` and tokens meters: the units are what an event's JSON reports (e.g. OpenAI's
 * final usage chunk); the last found counts, past the hold too. The stream passes as it is (less
 * the usage chunk the gateway asked for on the client's behalf); the hold settles when it ends, or
 * when the client hangs up (with the units found by then; none found: on_missing_units applies).
 */
function reportedUnits(ctx: MeterContext, body: ReadableStream<Uint8Array>, read: UnitReader): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const splitter = new SseSplitter();
  const keep = holdKeeper(ctx);
  const settleStream = streamSettlement(ctx);
  const finish = (reason: SettleReason) => {
    const units = read.units();
    return settleStream(units, units === null && reason === "completed" ? "units_missing" : reason, read.tokens?.());
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        // Each pull hands over at least one piece (or ends the stream): a pull that enqueued nothing would stall the reader.
        for (;;) {
          const { value, done } = await reader.read();
          if (done) {
            const rest = ctx.stripUsageChunk ? splitter.rest() : "";
            if (rest) controller.enqueue(encoder.encode(rest));
            const settled = await finish("completed");
            if (settled) controller.enqueue(encoder.encode(chargeComment(settled)));
            controller.close();
            return;
          }
          if ((await keep()) === false) {
            controller.enqueue(encoder.encode(sseEvent("error", HOLD_LAPSED)));
            await finish("cut_off");
            controller.close();
            await reader.cancel("hold expired").catch(() => undefined);
            return;
          }
          let passed = "";
          for (const event of splitter.push(value)) {
            const data = eventData(event);
            if (data !== null) read.see(data);
            if (!(ctx.stripUsageChunk && data !== null && isUsageChunk(data))) passed += event;
          }
          if (!ctx.stripUsageChunk) return controller.enqueue(value);
          if (passed) return controller.enqueue(encoder.encode(passed));
        }
      },
      async cancel(reason) {
        await reader.cancel(reason).catch(() => undefined);
        await finish("client_gone");
      },
    },
    { highWaterMark: 0 },
  );
}

function jsonOf(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** OpenAI's usage chunk of a stream (`stream_options.include_usage`): empty `choices`, and `usage`. */
function isUsageChunk(data: string): boolean {
  try {
    const chunk = JSON.parse(data) as { choices?: unknown; usage?: unknown };
    return Array.isArray(chunk.choices) && chunk.choices.length === 0 && chunk.usage !== undefined && chunk.usage !== null;
  } catch {
    return false;
  }
}
