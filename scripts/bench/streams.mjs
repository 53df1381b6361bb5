// Row 6: streamed responses (server-sent events): the plain worker passing the body through, the
// floor of any metered stream (each chunk through JavaScript), and the gateway's metered stream.
import { exactMicros, inBatches } from "./admin.mjs";
import { sleep } from "./load.mjs";
import { jsStreamWorker, STREAM_EVENT_PRICE_CENTS } from "./workers.mjs";

const STREAM_EVENTS = 50;
const EVENT_MICROS = exactMicros(STREAM_EVENT_PRICE_CENTS);
const STREAM_PATH = `/v1/stream?events=${STREAM_EVENTS}`;

export function workers({ originUrl }) {
  return [jsStreamWorker(originUrl)];
}

/** The spread customers' balances, summed, in micro-cents. */
async function spreadBalanceMicros(adminCall, prefix, count) {
  const summaries = await inBatches(
    Array.from({ length: count }, (_, i) => `${prefix}_${i}`),
    16,
    (id) => adminCall("GET", `/admin/customers/${id}`),
  );
  return summaries.reduce((sum, r) => sum + exactMicros(r.body.balance.available_exact_cents), 0);
}

export function rows(ctx) {
  const total = ctx.n(2_000);
  // The `gateway` row's 100 customers.
  const spread = () => ctx.customers("gateway.bench", "cus_overhead", 100, 1_000_000);
  const withEvents = (result) => ({ ...result, events_per_s: result.events / result.seconds, events_expected: result.requests * STREAM_EVENTS });

  /** A stream row with no key: each of `total` requests streams STREAM_EVENTS events, all counted. */
  const streamRow = async (host) => withEvents(await ctx.load({ host, concurrency: 32, total, request: () => ({ path: STREAM_PATH }), countEvents: true }));

  async function gatewayStream() {
    const admin = ctx.admin("gateway.bench");
    const keys = await spread();
    const before = await spreadBalanceMicros(admin, "cus_overhead", 100);
    const result = await ctx.load({
      host: "gateway.bench",
      concurrency: 32,
      total,
      request: (i) => ({ path: STREAM_PATH, headers: { authorization: `Bearer ${keys[i % keys.length]}` } }),
      countEvents: true,
    });
    await sleep(200); // settlement runs under waitUntil as each stream closes
    const charged = before - (await spreadBalanceMicros(admin, "cus_overhead", 100));
    return { ...withEvents(result), charged_micros: charged, exact: charged === result.events * EVENT_MICROS };
  }

  const streamResult = ({ m, fmt }, id) => `${fmt(m(id).events_per_s)} events/s, ${fmt(m(id).rps)} streams/s, p50 ${fmt(m(id).p50, 2)} ms, p99 ${fmt(m(id).p99, 2)} ms`;
  const arrived = ({ m }, id) => `${m(id).events} of ${m(id).events_expected} events arrived`;

  return [
    {
      id: "plain_stream",
      name: "6. Plain worker, streamed response (SSE)",
      run: () => streamRow("plain.bench"),
      cells: (s) => [`${s.m("plain_stream").requests} streams × ${STREAM_EVENTS} events, 32 conns, ${s.x}`, streamResult(s, "plain_stream"), arrived(s, "plain_stream")],
    },
    {
      id: "js_stream",
      name: "6. Stream floor: each chunk read and handed on in JavaScript",
      run: () => streamRow("js-stream.bench"),
      cells: (s) => [
        `${s.m("js_stream").requests} streams × ${STREAM_EVENTS} events, 32 conns, ${s.x}`,
        streamResult(s, "js_stream"),
        `×${s.fmt(s.ratios.js_stream_vs_plain_stream, 2)} of plain_stream; ${arrived(s, "js_stream")}`,
      ],
    },
    {
      id: "gateway_stream",
      counted: true,
      name: `6. Gateway, metered stream (sse:events, ${STREAM_EVENT_PRICE_CENTS} cents an event, held 17 at a time)`,
      setup: spread,
      run: gatewayStream,
      cells: (s) => [
        `${s.m("gateway_stream").requests} streams × ${STREAM_EVENTS} events over 100 customers, 32 conns, ${s.x}`,
        streamResult(s, "gateway_stream"),
        `×${s.fmt(s.ratios.gateway_stream_vs_js_stream, 2)} of js_stream, ×${s.fmt(s.ratios.gateway_stream_vs_plain_stream, 2)} of plain_stream; ${arrived(s, "gateway_stream")}; charged = events × price in every run: ${s.runs("gateway_stream").every((r) => r.exact) ? "yes" : "NO"}`,
      ],
    },
  ];
}

export function ratios({ ratio }) {
  return {
    js_stream_vs_plain_stream: ratio("js_stream", "plain_stream"),
    gateway_stream_vs_plain_stream: ratio("gateway_stream", "plain_stream"),
    gateway_stream_vs_js_stream: ratio("gateway_stream", "js_stream"),
  };
}
