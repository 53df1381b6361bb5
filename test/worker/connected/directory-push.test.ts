import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { CustomerAccount } from "../../../durable-objects/customer-account";
import { customerStub } from "../helpers";
import { connect, cron, fundedCustomer, settle, spend } from "./doubles";

type Doubles = ReturnType<typeof connect>;
const usageCents = (doubles: Doubles, id: string) =>
  doubles.stripe
    .balanceTransactions(id)
    .filter((t) => String(t.metadata?.payg_report ?? "").startsWith("payg_usage"))
    .reduce((s, t) => s + t.amount, 0);

/**
 * Runs the customer's cron cycle with the Directory's sync held until `during` has run: requests
 * that arrive while the cycle's directory push is in flight.
 */
async function cycleWithHeldDirectorySync(id: string, during: () => Promise<void>) {
  await runInDurableObject(customerStub(id), async (instance: CustomerAccount) => {
    const directory = (instance as any).context.directory;
    const deps = directory.deps;
    let reached!: () => void;
    const reachedP = new Promise<void>((r) => (reached = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const real = deps.env.DIRECTORY as DurableObjectNamespace;
    directory.deps = {
      ...deps,
      env: {
        ...deps.env,
        DIRECTORY: {
          idFromName: (n: string) => real.idFromName(n),
          get: (oid: DurableObjectId) => ({
            sync: async (snapshot: unknown) => {
              reached();
              await gate;
              return (real.get(oid) as any).sync(snapshot);
            },
          }),
        },
      },
    };
    try {
      const cycle = instance.runCycle(Date.now());
      await reachedP;
      await during();
      release();
      await cycle;
    } finally {
      directory.deps = deps;
    }
  });
}

async function directoryDueAt(id: string) {
  const directory = env.DIRECTORY.get(env.DIRECTORY.idFromName("global"));
  return runInDurableObject(directory, (_i, state) => state.storage.sql.exec("SELECT due_at FROM customers WHERE id = ?", id).one().due_at as number | null);
}

describe("usage charged while the cycle's directory push is in flight", () => {
  it("usage charged during the directory sync RPC is still reported by the next cron run", async () => {
    const doubles = connect();
    const { id, key } = await fundedCustomer(doubles, 100);
    expect(await spend(key, 5)).toBe(5);
    await settle(id);
    expect((await directoryDueAt(id))! <= Date.now()).toBe(true); // listed as due: 5 cents to report

    // The cycle reports the 5 cents and pushes "nothing due now"; meanwhile 3 more requests are charged.
    await cycleWithHeldDirectorySync(id, async () => {
      expect(await spend(key, 3)).toBe(3);
    });
    await settle(id);
    const check = await customerStub(id).balanceCheck();
    expect(check!.pendingUsageMicros).toBe(3_000_000); // 3 cents charged at the edge, not reported yet

    // A cron run 5 minutes later: the directory must list the customer as due.
    const dueAt = await directoryDueAt(id);
    await cron(Date.now() + 5 * 60_000);
    expect({ dueAt: dueAt !== null && dueAt <= Date.now() + 5 * 60_000, reported: usageCents(doubles, id) }).toEqual({ dueAt: true, reported: 8 });
  });
});
