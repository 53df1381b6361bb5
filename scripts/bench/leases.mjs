// Credit leases (docs/scaling.md): the far customer of row 5 and the hot customer of row 3 again,
// leased. Each run is a new customer with `payg_leases: on` and credit for fewer requests than it
// sends, so the run also checks the books: what was served never exceeds the credit, and once
// every lease is back, served + balance = credit to the micro-cent.
import { createCustomers, exactMicros } from "./admin.mjs";
import { buildDelayedGateway } from "./delay.mjs";
import { sleep } from "./load.mjs";
import { GATEWAY_DURABLE_OBJECTS, gatewayWorker } from "./workers.mjs";

/** As vitest.config.ts and docs/scaling.md's defaults: TTL 10 s, heartbeat 1 s, at most 2 dollars a lease. */
const LEASES = { ttl_ms: 10_000, heartbeat_ms: 1_000, max_lease_cents: 200, max_leases: 64 };
const DELAY_ID = "gateway_rpc_delay_40ms_leases";
const HOT_ID = "hot_leases";
/** hot_leases: this many gateway isolates (one workerd worker each) in front of one customer's object. */
const ISOLATES = 4;
const hotHost = (i) => `gateway-leases-${i}.bench`;
const PRICE_MICROS = 1_000_000; // the bench's default meter: 1 cent a request

export async function workers({ originUrl, scriptPath }) {
  const vars = { ORIGIN_URL: originUrl, GROUP_COMMIT: true, LEASES };
  // Worker 0 runs the objects; the others reach the same objects (by class and script) from their own isolates.
  const shared = Object.fromEntries(Object.entries(GATEWAY_DURABLE_OBJECTS).map(([binding, o]) => [binding, { ...o, scriptName: "gateway-leases-0" }]));
  return [
    gatewayWorker("gateway-delay-leases", await buildDelayedGateway(scriptPath), vars),
    gatewayWorker("gateway-leases-0", scriptPath, vars),
    ...Array.from({ length: ISOLATES - 1 }, (_, i) => ({ ...gatewayWorker(`gateway-leases-${i + 1}`, scriptPath, vars), durableObjects: shared })),
  ];
}

/**
 * `total` requests on `concurrency` connections against a new leased customer with `credit`
 * cents, spread over `hosts` round-robin; then waits (bounded) for every lease to come back.
 */
async function leasedRun(ctx, hosts, customerId, credit, total, concurrency) {
  const adminCall = ctx.admin(hosts[0]);
  const [key] = await createCustomers(adminCall, [customerId], 0);
  await adminCall("PUT", `/admin/customers/${customerId}`, { metadata: { payg_leases: "on" } });
  await adminCall("POST", `/admin/customers/${customerId}/credits`, { amount: credit, reason: "bench" });
  const result = await ctx.load({
    host: hosts[0],
    concurrency,
    total,
    request: (i) => ({ path: "/v1/data", headers: { host: hosts[i % hosts.length], authorization: `Bearer ${key}` } }),
  });
  const afterLoad = (await adminCall("GET", `/admin/customers/${customerId}/leases`)).body;
  // Idle isolates return their leases within seconds (docs/scaling.md, "Return"); TTL + grace at worst.
  const deadline = Date.now() + LEASES.ttl_ms * 2;
  let view = afterLoad;
  while (view.leases.length && Date.now() < deadline) {
    await sleep(250);
    view = (await adminCall("GET", `/admin/customers/${customerId}/leases`)).body;
  }
  const summary = (await adminCall("GET", `/admin/customers/${customerId}`)).body;
  const ok = result.statuses[200] ?? 0;
  const balance = exactMicros(summary.balance.available_exact_cents);
  const entries = Object.fromEntries(summary.ledger_summary.map((r) => [r.kind, r.entries]));
  return {
    ...result,
    credit_cents: credit,
    successes: ok,
    refused: result.statuses[402] ?? 0,
    balance_cents: summary.balance.available_exact_cents,
    leases_at_end: afterLoad.leases.length,
    reserved_at_end_cents: afterLoad.reserved_exact_cents,
    settled: view.leases.length === 0,
    overspend_micros: Math.max(0, ok * PRICE_MICROS - credit * 1_000_000),
    // Every micro-cent of credit is either served or back in the balance.
    books_exact: view.leases.length === 0 && ok * PRICE_MICROS + balance === credit * 1_000_000,
    all_credit_served: ok === credit,
    ledger_entries: entries,
  };
}

export function rows(ctx) {
  const delayCredit = ctx.n(3_000);
  const delayTotal = delayCredit + 32; // as row 5: 32 connections; the last 32 find the credit gone
  const hotCredit = ctx.n(18_000);
  const hotTotal = ctx.n(20_000); // as `hot`: 64 connections, credit for 90% of the requests
  const hosts = Array.from({ length: ISOLATES }, (_, i) => hotHost(i));
  const check = ({ m, runs }, id) => {
    const r = m(id);
    const every = (f) => (runs(id).every(f) ? "yes" : "NO");
    return (
      `${r.successes} × 200 of ${r.credit_cents} cents (= credit ÷ price in every run: ${every((x) => x.all_credit_served)}), ${r.refused} × 402; ` +
      `overspend 0 in every run: ${every((x) => x.overspend_micros === 0)}; served + balance = credit after the leases returned: ${every((x) => x.books_exact)}; ` +
      `${r.leases_at_end} live lease(s) holding ${r.reserved_at_end_cents} cents when the load ended`
    );
  };
  return [
    {
      id: DELAY_ID,
      counted: true,
      name: "5. Gateway, object 40 ms away (each way), leased customer",
      warm: () => leasedRun(ctx, ["gateway-delay-leases.bench"], "cus_delay_leases_warm", 100, 200, 16),
      run: (rep) => leasedRun(ctx, ["gateway-delay-leases.bench"], `cus_delay_leases_${rep}`, delayCredit, delayTotal, 32),
      cells: (s) => [
        `${s.m(DELAY_ID).requests} req, 32 conns, one customer, ${delayCredit} cents at 1 cent, ${s.x} (new customer each)`,
        s.perf(DELAY_ID),
        `p50 ${s.fmt(s.ratios.leases_delay_p50_over_gateway_ms, 2)} ms over gateway (unleased: +${s.fmt(s.ratios.rpc_delay_added_p50_ms, 2)} ms), ` +
          `p99 ${s.fmt(s.ratios.leases_delay_p99_over_gateway_ms, 2)} ms over gateway's; ${check(s, DELAY_ID)}`,
      ],
    },
    {
      id: HOT_ID,
      counted: true,
      name: `3. One hot customer from ${ISOLATES} isolates, leased`,
      warm: () => leasedRun(ctx, hosts, "cus_hot_leases_warm", 100, 400, 16),
      run: (rep) => leasedRun(ctx, hosts, `cus_hot_leases_${rep}`, hotCredit, hotTotal, 64),
      cells: (s) => [
        `${s.m(HOT_ID).requests} req, 64 conns over ${ISOLATES} isolates, ${hotCredit} cents at 1 cent, ${s.x} (new customer each)`,
        s.perf(HOT_ID),
        `×${s.fmt(s.ratios.hot_leases_vs_hot, 2)} of hot; ${check(s, HOT_ID)}`,
      ],
    },
  ];
}

export function ratios({ m, ratio }) {
  if (!m(DELAY_ID) || !m("gateway")) return { hot_leases_vs_hot: ratio(HOT_ID, "hot") };
  return {
    leases_delay_p50_over_gateway_ms: m(DELAY_ID).p50 - m("gateway").p50,
    leases_delay_p99_over_gateway_ms: m(DELAY_ID).p99 - m("gateway").p99,
    hot_leases_vs_hot: ratio(HOT_ID, "hot"),
  };
}

export function summary({ fmt, ratios }) {
  return [
    `  leases  = far customer's p50 ${fmt(ratios.leases_delay_p50_over_gateway_ms, 2)} ms over gateway (unleased +${fmt(ratios.rpc_delay_added_p50_ms, 2)} ms); hot from ${ISOLATES} isolates ×${fmt(ratios.hot_leases_vs_hot, 2)} of hot`,
  ];
}
