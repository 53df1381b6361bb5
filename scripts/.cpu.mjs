import { adminClient, createCustomers } from "./bench/admin.mjs";
import { cpuMicros, workerdPids } from "./bench/counts.mjs";
import { data, load, spreadKey } from "./bench/load.mjs";
import { bundleGateway, floorWorker, gatewayWorker, miniflare, plainWorker } from "./bench/workers.mjs";
import { startDemoOrigin } from "./demo-origin.mjs";

const CONC = Number(process.env.CONC ?? 16),
  CHUNK = Number(process.env.CHUNK ?? 400),
  K = Number(process.env.K ?? 6);
const origin = await startDemoOrigin({ port: 0 });
const scriptPath = process.env.SKIP_BUILD ? ".wrangler/bench/index.js" : bundleGateway();
const before = new Set(workerdPids());
const mf = miniflare([plainWorker(origin.url), floorWorker("floor", origin.url, "write"), gatewayWorker("gateway", scriptPath, { ORIGIN_URL: origin.url })]);
const base = String(await mf.ready);
const pid = workerdPids().find((p) => !before.has(p));
const keys = await createCustomers(
  adminClient(base),
  Array.from({ length: 100 }, (_, i) => `cus_cpu_${i}`),
  1000000,
);
const floorKey = (i) => `Bearer floor_${i % 100}`;
const sides = { plain: ["plain.bench", data(null)], floor: ["floor.bench", data(floorKey)], gateway: ["gateway.bench", data(spreadKey(keys))] };
const quiet = async () => {
  let last = cpuMicros(pid);
  for (let i = 0; i < 60; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const now = cpuMicros(pid);
    if (now - last <= 2500) return now - (now - last);
    last = now;
  }
  return cpuMicros(pid);
};
for (const [h, r] of Object.values(sides)) await load({ base, host: h, concurrency: CONC, total: 300, request: r, maxSeconds: 60 });
const sum = { plain: 0, floor: 0, gateway: 0 },
  reqs = { plain: 0, floor: 0, gateway: 0 };
const ratios = [];
for (let k = 0; k < K; k++) {
  const per = {};
  for (const [name, [host, request]] of Object.entries(sides)) {
    const a = await quiet();
    const r = await load({ base, host, concurrency: CONC, total: CHUNK, request, maxSeconds: 60 });
    const b = await quiet();
    sum[name] += b - a;
    reqs[name] += r.requests;
    per[name] = (b - a) / r.requests;
  }
  ratios.push(per.gateway / per.floor);
}
const us = (n) => (sum[n] / reqs[n]).toFixed(0);
console.log(
  `CONC ${CONC}: plain ${us("plain")} µs, floor ${us("floor")} µs, gateway ${us("gateway")} µs; gateway/floor ×${(sum.gateway / reqs.gateway / (sum.floor / reqs.floor)).toFixed(3)} (chunks ${ratios.map((x) => x.toFixed(2)).join(" ")})`,
);
await mf.dispose();
await origin.close();
