// Row 5: the gateway with its objects far away, what distance to the object costs today.
import { data, spreadKey } from "./load.mjs";
import { buildBenchEntry, gatewayWorker } from "./workers.mjs";

/** Artificial delay on each object RPC of the `gateway_rpc_delay_40ms` row, each way. */
const RPC_DELAY_MS = 40;
const ID = `gateway_rpc_delay_${RPC_DELAY_MS}ms`;

/**
 * The gateway as it is (the same bundle as the `gateway` row: src/index.ts built by wrangler),
 * with `env.CUSTOMERS` wrapped so that every call on a customer stub waits `RPC_DELAY_MS` before
 * and after: what an object on another continent costs today. No hook in the gateway's source.
 */
export async function buildDelayedGateway(gatewayPath) {
  return buildBenchEntry(
    "gateway-rpc-delay.js",
    `
        import gateway, { CustomerAccount, Directory, WebhookDispatcher } from ${JSON.stringify(gatewayPath)};
        export { CustomerAccount, Directory, WebhookDispatcher };
        const DELAY_MS = ${RPC_DELAY_MS};
        const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
        const PASS = new Set(["id", "name", "then"]);
        function delayedStub(stub) {
          return new Proxy(stub, {
            get(target, prop) {
              if (typeof prop !== "string" || PASS.has(prop)) return target[prop];
              return async (...args) => {
                await sleep(DELAY_MS);
                try { return await target[prop](...args); } finally { await sleep(DELAY_MS); }
              };
            },
          });
        }
        function delayedNamespace(ns) {
          return new Proxy(ns, {
            get(target, prop) {
              if (prop === "get" || prop === "getByName") return (...args) => delayedStub(target[prop](...args));
              const value = target[prop];
              return typeof value === "function" ? value.bind(target) : value;
            },
          });
        }
        const wrapped = new WeakMap();
        function wrap(env) {
          let out = wrapped.get(env);
          if (!out) wrapped.set(env, (out = { ...env, CUSTOMERS: delayedNamespace(env.CUSTOMERS) }));
          return out;
        }
        export default {
          fetch: (request, env, ctx) => gateway.fetch(request, wrap(env), ctx),
          scheduled: (controller, env, ctx) => gateway.scheduled(controller, wrap(env), ctx),
        };`,
  );
}

export async function workers({ originUrl, scriptPath }) {
  return [gatewayWorker("gateway-delay", await buildDelayedGateway(scriptPath), { ORIGIN_URL: originUrl, GROUP_COMMIT: true })];
}

export function rows(ctx) {
  const total = ctx.n(3_000);
  const spread = () => ctx.customers("gateway-delay.bench", "cus_delay", 100, 1_000_000);
  return [
    {
      id: ID,
      counted: true,
      name: `5. Gateway, object ${RPC_DELAY_MS} ms away (each way)`,
      setup: spread,
      warm: async () => ctx.warm("gateway-delay.bench", data(spreadKey(await spread()))),
      run: async () => ctx.load({ host: "gateway-delay.bench", concurrency: 32, total, request: data(spreadKey(await spread())) }),
      cells: ({ m, x, perf, okCheck, fmt, ratios }) => [
        `${m(ID).requests} req, 32 conns, ${x}`,
        perf(ID),
        `p50 +${fmt(ratios.rpc_delay_added_p50_ms, 2)} ms over gateway; ${okCheck(ID)}`,
      ],
    },
  ];
}

export function ratios({ m }) {
  return { rpc_delay_added_p50_ms: m(ID).p50 - m("gateway").p50 };
}
