import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Directory } from "../../../durable-objects/directory/index";
import { connect, cron, deliverAll, settle } from "../connected/doubles";
import { admin, gateway, withKey } from "../helpers";

describe("cron fan-out beyond one batch (CRON_BATCH_SIZE = 3)", () => {
  it("visits 3 customers in the cron invocation and the rest from the directory's alarm", async () => {
    const { stripe } = connect();
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) {
      const customer = stripe.createCustomer({ name: `Fan ${i}`, balance: -100 });
      ids.push(customer.id);
    }
    await deliverAll(stripe);
    for (const id of ids) {
      const key = (await admin("POST", `/customers/${id}/keys`, {})).body.key as string;
      expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
      await settle(id);
    }
    const reported = () => ids.filter((id) => stripe.balanceTransactions(id).some((t) => String(t.metadata?.payg_report).startsWith("payg_usage")));
    await cron();
    // The cron run visits one batch; the directory's alarm (re-armed a second apart) does the rest.
    expect(reported().length).toBeGreaterThanOrEqual(3);
    expect(reported().length).toBeLessThan(8);

    const ns = env.DIRECTORY as DurableObjectNamespace<Directory>;
    const directory = ns.get(ns.idFromName("global"));
    for (let i = 0; i < 5 && reported().length < ids.length; i++) await runDurableObjectAlarm(directory);
    expect(reported()).toHaveLength(8);
    for (const id of ids) expect(stripe.balanceOf(id)).toBe(-99);
  });
});
