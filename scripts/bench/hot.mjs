// Row 3: one hot customer, every request serialized through one object, with and without group
// commit, next to the floor on one hot object; and the ledger rows the hot customer is left with.
import { createCustomers } from "./admin.mjs";
import { data } from "./load.mjs";
import { gatewayWorker } from "./workers.mjs";

export function workers({ originUrl, scriptPath }) {
  return [gatewayWorker("gateway-ngc", scriptPath, { ORIGIN_URL: originUrl, GROUP_COMMIT: false })];
}

/**
 * A new customer with `credit` cents at 1 cent a request, `total` requests on 64 connections:
 * exactly `credit` of them may pass. Also returns the customer's ledger afterwards.
 */
async function hotRun(ctx, host, customerId, credit, total) {
  const adminCall = ctx.admin(host);
  ctx.noteCustomers(host, 1);
  const [key] = await createCustomers(adminCall, [customerId], credit);
  const result = await ctx.load({
    host,
    concurrency: 64,
    total,
    request: () => ({ path: "/v1/data", headers: { authorization: `Bearer ${key}` } }),
  });
  const summary = (await adminCall("GET", `/admin/customers/${customerId}`)).body;
  const ok = result.statuses[200] ?? 0;
  const balance = summary.balance.available_exact_cents;
  const exact = ok === credit && balance === "0";
  const ledger = {
    charged: ok,
    ledger_rows: summary.ledger_summary.reduce((sum, r) => sum + r.entries, 0),
    entries: Object.fromEntries(summary.ledger_summary.map((r) => [r.kind, r.entries])),
  };
  return { result: { ...result, credit_cents: credit, successes: ok, refused: result.statuses[402] ?? 0, balance_cents: balance, exact }, ledger };
}

export function rows(ctx) {
  const floorHot = ctx.n(15_000);
  const total = ctx.n(20_000); // hot, hot_no_group_commit: 64 connections, credit for 90% of them
  const credit = ctx.n(18_000);
  /** The `hot` customer's ledger after each run, for the storage row. */
  const storageRuns = [];

  const hotCheck = ({ m, runs }, id) => {
    const r = m(id);
    const every = runs(id).every((run) => run.exact);
    return `${r.successes} × 200 (= credit ÷ price in every run: ${every ? "yes" : "NO"}), ${r.refused} × 402, balance ${r.balance_cents}`;
  };
  /** The storage of the median `hot` run. */
  const storage = ({ m, runs }) => storageRuns[runs("hot").indexOf(m("hot"))] ?? storageRuns[0];
  const storageBounded = () => storageRuns.every((s) => s.ledger_rows <= 3);

  return [
    {
      id: "floor_hot",
      name: "3. Floor, one hot object",
      run: () => ctx.load({ host: "floor.bench", concurrency: 64, total: floorHot, request: data(() => "Bearer floor_hot") }),
      cells: ({ m, x, perf, okCheck }) => [`${m("floor_hot").requests} req, 64 conns, ${x}`, perf("floor_hot"), `${okCheck("floor_hot")}`],
    },
    {
      id: "hot",
      counted: true,
      name: "3. One hot customer (GROUP_COMMIT=true)",
      run: async (rep) => {
        const { result, ledger } = await hotRun(ctx, "gateway.bench", `cus_hot_${rep}`, credit, total);
        storageRuns.push(ledger);
        return result;
      },
      cells: (s) => [
        `${s.m("hot").requests} req, 64 conns, ${credit} cents at 1 cent, ${s.x} (new customer each)`,
        s.perf("hot"),
        `×${s.fmt(s.ratios.hot_vs_floor_hot, 2)} of floor_hot; ${hotCheck(s, "hot")}`,
      ],
    },
    {
      id: "hot_no_group_commit",
      counted: true,
      name: "3. One hot customer (GROUP_COMMIT=false)",
      run: async (rep) => (await hotRun(ctx, "gateway-ngc.bench", `cus_hot_ngc_${rep}`, credit, total)).result,
      cells: (s) => [
        `${s.m("hot_no_group_commit").requests} req, 64 conns, ${credit} cents at 1 cent, ${s.x} (new customer each)`,
        s.perf("hot_no_group_commit"),
        `hot ÷ this = ×${s.fmt(s.ratios.hot_vs_hot_no_group_commit, 2)}; ${hotCheck(s, "hot_no_group_commit")}`,
      ],
    },
    {
      id: "storage",
      name: "3. Storage",
      cells: (s) => [
        `after ${storage(s).charged} charged requests on one customer`,
        `${storage(s).ledger_rows} ledger rows`,
        `${Object.entries(storage(s).entries)
          .map(([k, v]) => `${k}: ${v}`)
          .join(", ")} (1 meter × 1-hour buckets + grants; bounded in every run: ${storageBounded() ? "yes" : "NO"})`,
      ],
      json: (s) => {
        const { ledger_rows, entries, charged } = storage(s);
        return { rps: null, p50_ms: null, p99_ms: null, ledger_rows, entries, charged, bounded_every_run: storageBounded(), runs: storageRuns };
      },
    },
  ];
}

export function ratios({ ratio }) {
  return { hot_vs_floor_hot: ratio("hot", "floor_hot"), hot_vs_hot_no_group_commit: ratio("hot", "hot_no_group_commit") };
}

export function summary({ fmt, ratios }) {
  return [`  hot     = ×${fmt(ratios.hot_vs_floor_hot, 2)} of the floor on one hot object; GROUP_COMMIT on ÷ off = ×${fmt(ratios.hot_vs_hot_no_group_commit, 2)}`];
}
