// Row 4: many customers, each request on a customer chosen at random (most objects cold in turn).
export function rows(ctx) {
  const customers = ctx.n(2_000);
  const total = ctx.n(15_000);
  let keys;
  return [
    {
      id: "many_customers",
      counted: true,
      name: "4. Many customers",
      setup: async () => {
        keys = await ctx.customers("gateway.bench", "cus_many", customers, 1_000);
      },
      run: () =>
        ctx.load({
          host: "gateway.bench",
          concurrency: 64,
          total,
          request: () => ({ path: "/v1/data", headers: { authorization: `Bearer ${keys[Math.floor(Math.random() * keys.length)]}` } }),
        }),
      cells: ({ m, x, perf, okCheck }) => [
        `${m("many_customers").requests} req over ${customers} customers, 64 conns, ${x}`,
        perf("many_customers"),
        `${okCheck("many_customers")}, ${m("many_customers").statuses[402] ?? 0} × 402`,
      ],
    },
  ];
}
