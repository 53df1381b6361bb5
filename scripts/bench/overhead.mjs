// Rows 1 and 2: the gateway's cost per request next to its baselines (plain, rpc_only, floor), at
// 32 connections over 100 customers (objects), and at 1 connection for the added latency.
import { data, spreadKey } from "./load.mjs";
import { floorWorker, gatewayWorker, plainWorker } from "./workers.mjs";

/** The floor's 100 objects, one per Authorization header, as the gateway has one per customer. */
const floorKey = (i) => `Bearer floor_${i % 100}`;

export function workers({ originUrl, scriptPath }) {
  return [
    plainWorker(originUrl),
    floorWorker("floor", originUrl, "write"),
    floorWorker("rpc-only", originUrl, "none"),
    gatewayWorker("gateway", scriptPath, { ORIGIN_URL: originUrl, GROUP_COMMIT: true }),
  ];
}

/**
 * The two sides of the paired CPU count (counts.mjs pairedCpu): the floor and the gateway at 32
 * connections over their 100 objects, `requests` each a chunk.
 */
export function cpuSides(ctx, requests) {
  const spread = () => ctx.customers("gateway.bench", "cus_overhead", 100, 1_000_000);
  return [
    { id: "floor", run: () => ctx.load({ host: "floor.bench", concurrency: 32, total: requests, request: data(floorKey) }) },
    { id: "gateway", run: async () => ctx.load({ host: "gateway.bench", concurrency: 32, total: requests, request: data(spreadKey(await spread())) }) },
  ];
}

export function rows(ctx) {
  const total = ctx.n(15_000); // 32 connections, 100 customers/objects
  const single = ctx.n(2_000); // *_1conn
  // The 100 customers of `gateway`, shared with gateway_stream.
  const spread = () => ctx.customers("gateway.bench", "cus_overhead", 100, 1_000_000);
  const measure = (host, concurrency, count, auth) => ctx.load({ host, concurrency, total: count, request: data(auth) });
  return [
    {
      id: "plain",
      name: "1. Plain pass-through worker (baseline)",
      warm: () => ctx.warm("plain.bench", data(null)),
      run: () => measure("plain.bench", 32, total, null),
      cells: ({ m, x, perf, okCheck }) => [`${m("plain").requests} req, 32 conns, ${x}`, perf("plain"), `${okCheck("plain")}`],
    },
    {
      id: "rpc_only",
      name: "1. One object RPC, no write",
      warm: () => ctx.warm("rpc-only.bench", data(floorKey)),
      run: () => measure("rpc-only.bench", 32, total, floorKey),
      cells: ({ m, x, perf, okCheck, fmt, ratios }) => [
        `${m("rpc_only").requests} req over 100 objects, 32 conns, ${x}`,
        perf("rpc_only"),
        `×${fmt(ratios.rpc_only_vs_plain, 2)} of plain; ${okCheck("rpc_only")}`,
      ],
    },
    {
      id: "floor",
      name: "1. Floor: one object RPC + one SQLite write",
      warm: () => ctx.warm("floor.bench", data(floorKey)),
      run: () => measure("floor.bench", 32, total, floorKey),
      cells: ({ m, x, perf, okCheck, fmt, ratios }) => [
        `${m("floor").requests} req over 100 objects, 32 conns, ${x}`,
        perf("floor"),
        `×${fmt(ratios.floor_vs_plain, 2)} of plain; ${okCheck("floor")}`,
      ],
    },
    {
      id: "gateway",
      counted: true,
      name: "1. Gateway (100 customers)",
      setup: spread,
      warm: async () => ctx.warm("gateway.bench", data(spreadKey(await spread()))),
      run: async () => measure("gateway.bench", 32, total, spreadKey(await spread())),
      cells: ({ m, x, perf, okCheck, fmt, ratios }) => [
        `${m("gateway").requests} req, 32 conns, ${x}`,
        perf("gateway"),
        `×${fmt(ratios.gateway_vs_floor, 2)} of floor, ×${fmt(ratios.gateway_vs_plain, 2)} of plain, p50 +${fmt(m("gateway").p50 - m("plain").p50, 2)} ms; ${okCheck("gateway")}`,
      ],
    },
    {
      id: "plain_1conn",
      name: "2. Plain at 1 connection",
      run: () => measure("plain.bench", 1, single, null),
      cells: ({ m, x, perf }) => [`${m("plain_1conn").requests} req, ${x}`, perf("plain_1conn"), "latency baseline"],
    },
    {
      id: "floor_1conn",
      name: "2. Floor at 1 connection",
      run: () => measure("floor.bench", 1, single, floorKey),
      cells: ({ m, x, perf, fmt, ratios }) => [`${m("floor_1conn").requests} req, ${x}`, perf("floor_1conn"), `+${fmt(ratios.floor_1conn_added_p50_ms, 2)} ms p50 over plain`],
    },
    {
      id: "gateway_1conn",
      counted: true,
      name: "2. Gateway at 1 connection",
      run: async () => measure("gateway.bench", 1, single, spreadKey(await spread())),
      cells: ({ m, x, perf, fmt, ratios }) => [
        `${m("gateway_1conn").requests} req, ${x}`,
        perf("gateway_1conn"),
        `+${fmt(ratios.gateway_1conn_added_p50_ms, 2)} ms p50 over plain (+${fmt(ratios.gateway_1conn_added_p50_over_floor_ms, 2)} ms over floor)`,
      ],
    },
  ];
}

export function ratios({ m, ratio }) {
  return {
    floor_vs_plain: ratio("floor", "plain"),
    rpc_only_vs_plain: ratio("rpc_only", "plain"),
    gateway_vs_floor: ratio("gateway", "floor"),
    gateway_vs_plain: ratio("gateway", "plain"),
    floor_1conn_added_p50_ms: m("floor_1conn").p50 - m("plain_1conn").p50,
    gateway_1conn_added_p50_ms: m("gateway_1conn").p50 - m("plain_1conn").p50,
    gateway_1conn_added_p50_over_floor_ms: m("gateway_1conn").p50 - m("floor_1conn").p50,
  };
}

export function summary({ fmt, ratios }) {
  return [
    "The floor is one Durable Object RPC with one SQLite write per request, then the same proxy as plain:",
    `  floor   = ×${fmt(ratios.floor_vs_plain, 2)} of plain pass-through (one RPC, no write: ×${fmt(ratios.rpc_only_vs_plain, 2)})`,
    `  gateway = ×${fmt(ratios.gateway_vs_floor, 2)} of the floor (×${fmt(ratios.gateway_vs_plain, 2)} of plain)`,
  ];
}
