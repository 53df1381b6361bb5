import { HttpResponse, http } from "msw";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { admin, customerStub, gateway, uniqueId, withKey } from "../helpers";
import { server } from "../setup";
import { connect, cron, deliverAll, refuseOnce, settle } from "./doubles";

type Doubles = ReturnType<typeof connect>;
const HOUR = 3_600_000;

async function stripeCustomer({ stripe }: Doubles, input: Parameters<Doubles["stripe"]["createCustomer"]>[0] = {}) {
  const customer = stripe.createCustomer({ name: "Safe Ty", email: `safe-${uniqueId()}@example.com`, ...input });
  await deliverAll(stripe);
  const key = (await admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
  return { id: customer.id, key };
}

const reports = async (id: string) => (await admin("GET", `/customers/${id}`)).body.stripe.recent_reports as { id: string; status: string; amount: number; kind: string }[];

/** The next POST of a balance transaction reaches Stripe (it commits), but the gateway is told 400. */
function commitThenRefuse(stripe: Doubles["stripe"]) {
  server.use(
    http.post(
      "https://stripe.test/v1/customers/:id/balance_transactions",
      async ({ request }) => {
        await stripe.handle(request as unknown as Request);
        return HttpResponse.json({ error: { type: "invalid_request_error", message: "Something looked wrong (injected)." } }, { status: 400 });
      },
      { once: true },
    ),
  );
}

describe("Stripe: no storms, no silent drift", () => {
  it("heals a lost webhook with the periodic reconcile (RECONCILE_INTERVAL_SECONDS), with nobody acting", async () => {
    const doubles = connect();
    const { id, key } = await stripeCustomer(doubles, { balance: -100 });
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    doubles.stripe.adjustBalance(id, -400, "Dashboard credit");
    doubles.stripe.takeEvents(); // the webhook is lost
    await settle(id);
    await cron(Date.now() + 60_000);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(99_000_000);
    await cron(Date.now() + HOUR + 120_000);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(499_000_000);
    expect((await admin("GET", `/customers/${id}`)).body.stripe.last_reconciled_at).toEqual(expect.any(Number));
  });

  it("never marks a report failed without looking it up: a transaction that landed is found, not counted twice", async () => {
    const doubles = connect();
    const { id } = await stripeCustomer(doubles);
    commitThenRefuse(doubles.stripe);
    expect((await admin("POST", `/customers/${id}/credits`, { amount: 300, reason: "goodwill" })).status).toBe(201);
    expect((await reports(id))[0]).toMatchObject({ kind: "grant", status: "sent", amount: -300 });
    expect(doubles.stripe.balanceTransactions(id).map((t) => t.amount)).toEqual([-300]);
    await deliverAll(doubles.stripe);
    await cron(Date.now() + HOUR + 120_000);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(300_000_000);
    expect(doubles.stripe.balanceOf(id)).toBe(-300);
  });

  it("a credit given in Stripe while a report of ours waits out its backoff unblocks the customer at once: the report is looked up first", async () => {
    const doubles = connect();
    const { id, key } = await stripeCustomer(doubles, { balance: -3 });
    for (let i = 0; i < 3; i++) expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(402);
    // The usage report lands at Stripe, but every response to it (and to the SDK's own retries) is lost.
    doubles.stripe.inject({ match: { method: "POST", path: /\/balance_transactions$/ }, kind: "drop_after_commit", times: 3 });
    await settle(id);
    await cron(Date.now());
    expect((await reports(id))[0]).toMatchObject({ kind: "usage_debit", status: "pending", amount: 3 });
    expect(doubles.stripe.balanceOf(id)).toBe(0);
    // During its backoff, a credit in the Dashboard: applied with its webhook, no time passing.
    doubles.stripe.adjustBalance(id, -400, "Dashboard credit");
    await deliverAll(doubles.stripe);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    expect((await reports(id)).find((r) => r.kind === "usage_debit")).toMatchObject({ status: "sent" });
    expect(doubles.stripe.balanceTransactions(id).map((t) => t.amount)).toEqual([-3, 3, -400]);
    expect((await customerStub(id).balanceCheck())!).toMatchObject({ balanceMicros: 399_000_000, ledgerSumMicros: 399_000_000 });
  });

  it("an operator settles a failed report: retry looks it up and sends it again, resolve records it was done by hand; both are in the ledger", async () => {
    const doubles = connect();
    const { id } = await stripeCustomer(doubles);
    refuseOnce();
    await admin("POST", `/customers/${id}/credits`, { amount: 120, reason: "first" });
    const [failed] = await reports(id);
    expect(failed).toMatchObject({ status: "failed", amount: -120 });
    expect(doubles.stripe.balanceTransactions(id)).toHaveLength(0);
    const retried = await admin("POST", `/customers/${id}/reports/${failed!.id}/retry`);
    expect(retried).toMatchObject({ status: 202, body: { status: "pending" } });
    await settle(id);
    expect((await reports(id))[0]).toMatchObject({ id: failed!.id, status: "sent" });
    expect(doubles.stripe.balanceOf(id)).toBe(-120);

    refuseOnce();
    await admin("POST", `/customers/${id}/credits`, { amount: 80, reason: "second" });
    const [second] = await reports(id);
    expect(second).toMatchObject({ status: "failed", amount: -80 });
    doubles.stripe.adjustBalance(id, -80, "Posted by hand in the Dashboard");
    const resolved = await admin("POST", `/customers/${id}/reports/${second!.id}/resolve`, { note: "posted by hand" });
    expect(resolved).toMatchObject({ status: 200, body: { status: "resolved" } });
    await deliverAll(doubles.stripe);
    await cron(Date.now() + HOUR + 120_000);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(200_000_000);
    const notes = (await admin("GET", `/customers/${id}/ledger`)).body.entries.filter((e: { kind: string }) => e.kind === "note");
    expect(notes.map((e: { reason: string }) => e.reason)).toEqual([
      `Stripe report ${second!.id} resolved by an operator: posted by hand`,
      `Stripe report ${failed!.id} retried by an operator`,
    ]);
    expect((await admin("POST", `/customers/${id}/reports/${failed!.id}/retry`)).status).toBe(409);
    expect((await admin("POST", `/customers/${id}/reports/payg_nope/retry`)).status).toBe(404);
    expect((await admin("POST", `/customers/${id}/reports/${second!.id}/resolve`, {})).status).toBe(400);
  });

  it("a Stripe customer in another currency has no credit here: 402 currency_mismatch, the admin API says why, nothing is posted in our currency", async () => {
    const doubles = connect();
    const { id, key } = await stripeCustomer(doubles, { currency: "eur", balance: -5000 });
    const refused = await gateway("/v1/x", withKey(key));
    expect(refused.status).toBe(402);
    expect(((await refused.json()) as any).error.code).toBe("currency_mismatch");
    const summary = (await admin("GET", `/customers/${id}`)).body;
    expect(summary.balance.blocked).toMatch(/currency is eur/);
    expect((await admin("POST", `/customers/${id}/credits`, { amount: 50, reason: "goodwill" })).status).toBe(201);
    expect((await reports(id))[0]).toMatchObject({ status: "failed" });
    expect(doubles.stripe.balanceTransactions(id).filter((t) => t.currency === "usd")).toHaveLength(0);
    expect(doubles.stripe.invoiceCreditBalance(id)).not.toHaveProperty("usd");
  });

  it("post-paid usage Stripe refuses after accepting it (meter error events) is marked failed and announced, never silent", async () => {
    // A Stripe account where the search meter was never created.
    const doubles = connect({ meters: ["api_requests"] });
    const { id, key } = await stripeCustomer(doubles, { metadata: { payg_plan: "postpaid" } });
    expect((await gateway("/v1/search/q", withKey(key))).status).toBe(200);
    expect((await gateway("/v1/x", withKey(key))).status).toBe(200);
    await settle(id);
    await cron();
    expect((await reports(id)).every((r) => r.status === "sent")).toBe(true);
    const thin = doubles.stripe.takeThinEvents();
    expect(thin.map((t) => t.type)).toEqual(["v1.billing.meter.no_meter_found"]);
    const { body, signature } = await doubles.stripe.signThin(thin[0]!);
    const response = await gateway("/webhooks/stripe/events", { method: "POST", headers: { "stripe-signature": signature }, body });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ status: "applied", failed_reports: 1, untraced: 0 });
    const after = await reports(id);
    expect(after.filter((r) => r.status === "failed")).toEqual([expect.objectContaining({ kind: "meter_event", amount: 1 })]);
    expect(after.find((r) => r.status === "failed")!.id).toMatch(new RegExp(`^payg_meter\\.${id}\\.`));
    expect((await admin("GET", `/customers/${id}`)).body.stripe.recent_reports.find((r: { status: string }) => r.status === "failed").last_error).toMatch(/no_meter/);
    const forged = await doubles.stripe.signThin(thin[0]!, { secret: "whsec_other" });
    expect((await gateway("/webhooks/stripe/events", { method: "POST", headers: { "stripe-signature": forged.signature }, body: forged.body })).status).toBe(400);
  });

  it("a webhook never calls Stripe: a balance change is recorded, answered, and reconciled from the object's timer", async () => {
    const doubles = connect();
    const { id, key } = await stripeCustomer(doubles);
    const keyHash = await sha256Hex(key);
    doubles.stripe.adjustBalance(id, -600);
    const [event] = doubles.stripe.takeEvents();
    const before = doubles.stripe.requests.length;
    const { body, signature } = await doubles.stripe.sign(event!);
    const response = await gateway("/webhooks/stripe", { method: "POST", headers: { "stripe-signature": signature }, body });
    expect(response.status).toBe(200);
    expect(doubles.stripe.requests.length).toBe(before);
    expect((await customerStub(id).authorize({ keyHash, meter: "api_requests", priceMicros: 1_000_000, requestId: "r_before" })).outcome).toBe("insufficient_credit");
    await settle(id);
    expect(doubles.stripe.requests.length).toBeGreaterThan(before);
    expect((await customerStub(id).balanceCheck())!.balanceMicros).toBe(600_000_000);
  });
});
