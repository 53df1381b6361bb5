import { afterEach, describe, expect, it } from "vitest";
import { admin, gateway, withKey } from "../helpers";
import { createEndpoint, expectSigned, pump, receiver, removeEndpoints } from "../provider-webhooks";
import { connect, cron, deleteInStripe, deliver, deliverAll, fundedCustomer, settle, spend } from "./doubles";

afterEach(removeEndpoints);

describe("outbound webhooks with Stripe on", () => {
  it("a Stripe customer with credit starts without a depletion; running out and a Checkout top-up are announced", async () => {
    const doubles = connect();
    const hook = receiver();
    const endpoint = await createEndpoint(hook.url, ["customer.balance.depleted", "customer.balance.restored"]);
    const { id, key } = await fundedCustomer(doubles, 3);
    expect(await spend(key, 4)).toBe(3);
    await pump(() => hook.about(id, "customer.balance.depleted").length === 1, [id]);

    const checkout = await gateway("/billing/checkout", withKey(key, { method: "POST", body: JSON.stringify({ amount_cents: 1000 }) }));
    const session = (await checkout.json()) as { id: string };
    doubles.stripe.completeCheckout(session.id);
    const [completed] = doubles.stripe.takeEvents();
    expect((await deliver(doubles.stripe, completed!)).body.status).toBe("applied");
    expect((await deliver(doubles.stripe, completed!)).body.status).toBe("duplicate");
    await deliverAll(doubles.stripe);
    await pump(() => hook.about(id, "customer.balance.restored").length === 2, [id]);

    // The edge saw 0 for an instant when the customer appeared; that is its starting point, not a crossing.
    expect(hook.about(id).map((r) => [r.event.type, r.event.data.balance_cents])).toEqual([
      ["customer.balance.restored", 3],
      ["customer.balance.depleted", 0],
      ["customer.balance.restored", 1000],
    ]);
    await expectSigned(hook.about(id), endpoint.secret);
  });

  it("sends report.failed when Stripe refuses a usage report for good", async () => {
    const doubles = connect();
    const hook = receiver();
    const endpoint = await createEndpoint(hook.url, ["report.failed"]);
    const { id, key } = await fundedCustomer(doubles, 100);
    expect(await spend(key, 4)).toBe(4);
    await settle(id);
    await deleteInStripe(doubles.stripe, id);
    await cron();
    await pump(() => hook.about(id).length === 1, [id]);
    const [failed] = hook.about(id);
    expect(failed!.event).toMatchObject({
      type: "report.failed",
      data: { customer_id: id, balance_cents: 96, kind: "usage_debit", amount: 4, meter: null, report_id: expect.stringMatching(/^payg_usage/) },
    });
    expect(failed!.event.data.error).toMatch(/404|No such customer/);
    const summary = await admin("GET", `/customers/${id}`);
    expect(summary.body.stripe.recent_reports[0]).toMatchObject({ id: failed!.event.data.report_id, status: "failed" });
    await expectSigned(hook.about(id), endpoint.secret);
  });

  it("sends customer.payment_failed when a post-paid invoice fails, once per failure", async () => {
    const doubles = connect();
    const hook = receiver();
    await createEndpoint(hook.url, ["customer.payment_failed"]);
    const { id } = await fundedCustomer(doubles, 0, { payg_plan: "postpaid" });
    doubles.stripe.invoiceEvent(id, "invoice.payment_failed", "in_wh_1");
    await deliverAll(doubles.stripe);
    await pump(() => hook.about(id).length === 1, [id]);
    expect(hook.about(id)[0]!.event.data).toEqual({ customer_id: id, balance_cents: 0, unpaid_invoices: ["in_wh_1"] });

    doubles.stripe.invoiceEvent(id, "invoice.paid", "in_wh_1");
    doubles.stripe.invoiceEvent(id, "invoice.payment_failed", "in_wh_2");
    await deliverAll(doubles.stripe);
    await pump(() => hook.about(id).length === 2, [id]);
    expect(hook.about(id)[1]!.event.data.unpaid_invoices).toEqual(["in_wh_2"]);
    expect(hook.about(id)[1]!.event.id).not.toBe(hook.about(id)[0]!.event.id);
  });
});
