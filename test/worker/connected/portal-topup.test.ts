import { describe, expect, it } from "vitest";
import { admin, customerStub, gateway, portalCsrf, portalKeySession, portalLinkSession, withKey } from "../helpers";
import { connect, deliverAll } from "./doubles";

const ORIGIN = "http://gateway.test";

function post(path: string, fields: Record<string, string>, cookie?: string) {
  return gateway(path, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: ORIGIN, ...(cookie ? { cookie } : {}) },
    body: new URLSearchParams(fields).toString(),
  });
}

describe("portal Top up with Stripe on", () => {
  it("starts Stripe Checkout for the session's customer; the payment becomes credit through the webhook", async () => {
    const { stripe } = connect();
    const customer = stripe.createCustomer({ email: "ada@example.com", name: "Ada Lovelace" });
    await deliverAll(stripe);
    const key = (await admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
    const cookie = (await post("/portal/sign-in", { key })).headers.get("set-cookie")!.split(";")[0]!;
    const page = await (await gateway("/portal", { headers: { cookie } })).text();
    expect(page).toContain("You pay securely with Stripe Checkout.");
    const csrf = /name="_csrf" value="([0-9a-f]+)"/.exec(page)![1]!;

    // Only the amounts offered (within checkout_min_cents..checkout_max_cents) are accepted.
    const odd = await post("/portal/top-up", { _csrf: csrf, amount_cents: "123" }, cookie);
    expect(odd.status).toBe(400);
    expect(odd.headers.get("content-type")).toContain("text/html");

    const topUp = await post("/portal/top-up", { _csrf: csrf, amount_cents: "1000" }, cookie);
    expect(topUp.status).toBe(303);
    const location = topUp.headers.get("location")!;
    expect(location).toMatch(/^https:\/\/checkout\.stripe\.test\//);
    const sessionId = location.split("/").at(-1)!.split("#")[0]!;
    stripe.completeCheckout(sessionId);
    await deliverAll(stripe);
    expect((await customerStub(customer.id).balanceCheck())!.balanceMicros).toBe(1_000_000_000);
  });

  it("a session signed in with a key tops up, but cannot save a card or change auto top-up; the owner's link can", async () => {
    const { stripe } = connect();
    const customer = stripe.createCustomer({ email: "grace@example.com", name: "Grace Hopper" });
    await deliverAll(stripe);
    const key = (await admin("POST", `/customers/${customer.id}/keys`, { spend_cap_cents: 5 })).body.key as string;
    const cookie = await portalKeySession(key);
    const page = await (await gateway("/portal", { headers: { cookie } })).text();
    expect(page).not.toContain("Save my card");
    expect(page).not.toContain("Automatic top-up");
    const csrf = await portalCsrf(cookie);
    const checkouts = () => stripe.requests.filter((r) => r.method === "POST" && r.path === "/v1/checkout/sessions");
    const saveCard = await post("/portal/top-up", { _csrf: csrf, amount_cents: "1000", save_card: "1" }, cookie);
    expect(saveCard.status).toBe(403);
    expect(checkouts()).toHaveLength(0);
    const auto = await post("/portal/auto-top-up", { _csrf: csrf, threshold: "5", amount: "20", cap: "100" }, cookie);
    expect(auto.status).toBe(403);
    expect((await admin("GET", `/customers/${customer.id}`)).body.auto_topup).toBeNull();
    const topUp = await post("/portal/top-up", { _csrf: csrf, amount_cents: "1000" }, cookie);
    expect(topUp.status).toBe(303);
    expect(checkouts().at(-1)!.params).not.toHaveProperty("payment_intent_data.setup_future_usage");

    const owner = await portalLinkSession(customer.id);
    const ownerCsrf = await portalCsrf(owner);
    expect(await (await gateway("/portal", { headers: { cookie: owner } })).text()).toContain("Save my card");
    expect((await post("/portal/auto-top-up", { _csrf: ownerCsrf, threshold: "5", amount: "20", cap: "100" }, owner)).status).toBe(303);
    expect((await admin("GET", `/customers/${customer.id}`)).body.auto_topup).toMatchObject({ threshold_cents: 500, amount_cents: 2000 });
  });

  it("POST /billing/checkout: a key with a spend cap cannot save a card (403, no session); it tops up, and an uncapped key saves one", async () => {
    const { stripe } = connect();
    const customer = stripe.createCustomer({ email: "kay@example.com", name: "Kay Sweeney" });
    await deliverAll(stripe);
    const capped = (await admin("POST", `/customers/${customer.id}/keys`, { spend_cap_cents: 5 })).body.key as string;
    const checkout = (key: string, body: Record<string, unknown>) => gateway("/billing/checkout", withKey(key, { method: "POST", body: JSON.stringify(body) }));
    const checkouts = () => stripe.requests.filter((r) => r.method === "POST" && r.path === "/v1/checkout/sessions");
    const refused = await checkout(capped, { amount_cents: 1000, save_payment_method: true });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as any).error).toMatchObject({ code: "forbidden", message: expect.stringContaining("spend cap") });
    expect(checkouts()).toHaveLength(0);
    expect((await checkout(capped, { amount_cents: 1000 })).status).toBe(201);
    expect(checkouts().at(-1)!.params).not.toHaveProperty("payment_intent_data.setup_future_usage");
    const owner = (await admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
    expect((await checkout(owner, { amount_cents: 1000, save_payment_method: true })).status).toBe(201);
    expect(checkouts().at(-1)!.params).toHaveProperty("payment_intent_data.setup_future_usage", "off_session");
  });
});
