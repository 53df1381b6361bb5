// Rows `cap`, `hold`, `idempotency`, `postpaid`: the plain charge's siblings, each a charge that does
// one more thing (a key with a spend cap, a hold settled from the response, a client
// `Idempotency-Key`, post-paid usage), on 20 customers each of the `gateway` worker, 16
// connections. What they cost is in their counts (rows written, RPCs); their speed is information.
import { inBatches } from "./admin.mjs";
import { HOLD_PATH } from "./workers.mjs";

const CUSTOMERS = 20;

/** `prefix_0` … with credit (none for post-paid) and one key each, `keyBody` its options. */
async function customers(adminCall, prefix, { plan = "prepaid", keyBody = {}, cents = 1_000_000 } = {}) {
  return inBatches(
    Array.from({ length: CUSTOMERS }, (_, i) => `${prefix}_${i}`),
    8,
    async (id) => {
      await adminCall("PUT", `/admin/customers/${id}`, { name: "Bench Customer", email: `${id}@example.com`, plan });
      const key = (await adminCall("POST", `/admin/customers/${id}/keys`, keyBody)).body.key;
      if (plan === "prepaid") await adminCall("POST", `/admin/customers/${id}/credits`, { amount: cents, reason: "bench" });
      return key;
    },
  );
}

const KINDS = [
  {
    id: "cap",
    name: "9. Charge on a key with a spend cap",
    what: "a key capped at 1,000,000 cents a day (never reached)",
    options: { keyBody: { spend_cap_cents: 1_000_000, cap_period: "day" } },
    request: (key) => () => ({ path: "/v1/data", headers: { authorization: `Bearer ${key}` } }),
  },
  {
    id: "hold",
    name: "9. Charge held, settled from the response",
    what: `${HOLD_PATH}?tokens=10 (header:x-usage-tokens, hold 100 units)`,
    options: {},
    request: (key) => () => ({ path: `${HOLD_PATH}?tokens=10`, headers: { authorization: `Bearer ${key}` } }),
  },
  {
    id: "idempotency",
    name: "9. Charge with an Idempotency-Key",
    what: "a new Idempotency-Key on every request",
    options: {},
    request: (key, run) => (i) => ({ path: "/v1/data", headers: { authorization: `Bearer ${key}`, "idempotency-key": `bench-${run}-${i}` } }),
  },
  {
    id: "postpaid",
    name: "9. Post-paid charge",
    what: "post-paid customers (usage invoiced, no credit)",
    options: { plan: "postpaid" },
    request: (key) => () => ({ path: "/v1/data", headers: { authorization: `Bearer ${key}` } }),
  },
];

export function rows(ctx) {
  const total = ctx.n(3_000);
  return KINDS.map((kind) => {
    let keys = null;
    const setup = async () => {
      if (!keys) ctx.noteCustomers("gateway.bench", CUSTOMERS);
      keys ??= customers(ctx.admin("gateway.bench"), `cus_${kind.id}`, kind.options);
      return keys;
    };
    // Request i goes to customer i mod 20, with that customer's key.
    const request = (all, run) => {
      const perKey = all.map((key) => kind.request(key, run));
      return (i) => perKey[i % perKey.length](i);
    };
    let runs = 0;
    return {
      id: kind.id,
      name: kind.name,
      counted: true,
      setup,
      warm: async () => ctx.load({ host: "gateway.bench", concurrency: 16, total: Math.min(200, total), request: request(await setup(), "warm") }),
      run: async () => ctx.load({ host: "gateway.bench", concurrency: 16, total, request: request(await setup(), runs++) }),
      cells: ({ m, x, perf, okCheck }) => [`${m(kind.id).requests} req over ${CUSTOMERS} customers, 16 conns, ${x}: ${kind.what}`, perf(kind.id), okCheck(kind.id)],
    };
  });
}
