import { describe, expect, it } from "vitest";
import { admin, gateway, uniqueId, withKey } from "../helpers";
import { connect, deliverAll } from "./doubles";

type Doubles = ReturnType<typeof connect>;

async function stripeCustomer({ stripe }: Doubles) {
  const customer = stripe.createCustomer({ name: "Pay Er", email: `pay-${uniqueId()}@example.com` });
  await deliverAll(stripe);
  const key = (await admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
  return { id: customer.id, key };
}

/** A Checkout session opened in the Stripe double directly (not by the gateway), as another integration might. */
async function foreignSession({ stripe }: Doubles, customer: string, body: string) {
  const response = await stripe.handle(
    new Request("https://stripe.test/v1/checkout/sessions", {
      method: "POST",
      headers: { authorization: "Bearer sk_test_x", "content-type": "application/x-www-form-urlencoded" },
      body: `mode=payment&customer=${customer}&success_url=https%3A%2F%2Fexample.com&line_items[0][quantity]=1&line_items[0][price_data][product_data][name]=Other&${body}`,
    }),
  );
  expect(response.status).toBe(200);
  return ((await response.json()) as { id: string }).id;
}

describe("Checkout top-ups are paid in the configured currency; a paid session that credits nothing is never silent", () => {
  it("the gateway's Checkout session has Adaptive Pricing off: the customer cannot pay in another currency", async () => {
    const doubles = connect();
    const { key } = await stripeCustomer(doubles);
    const response = await gateway("/billing/checkout", withKey(key, { method: "POST", body: JSON.stringify({ amount_cents: 500 }) }));
    expect(response.status).toBe(201);
    const { id } = (await response.json()) as { id: string };
    expect(doubles.stripe.getSession(id)).toMatchObject({ adaptive_pricing: { enabled: false }, currency: "usd" });
    expect(() => doubles.stripe.completeCheckout(id, { localCurrency: "eur" })).toThrow(/Adaptive Pricing off/);
  });

  it("paid sessions in another currency or without top-up metadata are listed in the admin API with why", async () => {
    const doubles = connect();
    const { id } = await stripeCustomer(doubles);
    const localized = await foreignSession(
      doubles,
      id,
      `line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=700&metadata[payg_customer_id]=${id}&metadata[payg_credit_cents]=700`,
    );
    doubles.stripe.completeCheckout(localized, { localCurrency: "eur" });
    const other = await foreignSession(doubles, id, "line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=900");
    doubles.stripe.completeCheckout(other);
    await deliverAll(doubles.stripe);
    const body = (await admin("GET", `/customers/${id}`)).body;
    expect(body.balance).toMatchObject({ available_exact_cents: "0" });
    expect(body.ignored_payments).toEqual([
      expect.objectContaining({ object_id: other, amount: 900, currency: "usd", reason: expect.stringContaining("payg_credit_cents") }),
      expect.objectContaining({ object_id: localized, amount: 700, currency: "eur", reason: "paid in eur, not usd" }),
    ]);
  });
});
