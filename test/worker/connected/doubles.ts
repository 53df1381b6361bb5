import { HttpResponse, http } from "msw";
import type Stripe from "stripe";
import { MailChannelsDouble } from "../../doubles/mailchannels-double";
import { StripeDouble } from "../../doubles/stripe-double";
import { admin, echoOrigin, gateway, settle, withKey } from "../helpers";

export { cron, settle } from "../helpers";

import { server } from "../setup";

/** Fresh Stripe and MailChannels doubles behind MSW, plus the echo origin, for one test. */
export function connect(options: { meters?: string[] } = {}) {
  const stripe = new StripeDouble({ webhookSecret: "whsec_test_secret", ...options });
  const mail = new MailChannelsDouble({ apiKey: "mc_test_key" });
  server.use(
    http.all("https://stripe.test/*", ({ request }) => stripe.handle(request as unknown as Request)),
    http.all("https://mailchannels.test/*", ({ request }) => mail.handle(request as unknown as Request)),
  );
  echoOrigin();
  return { stripe, mail };
}

export async function deliver(stripe: StripeDouble, event: Stripe.Event, options: { timestamp?: number; secret?: string } = {}) {
  const { body, signature } = await stripe.sign(event, options);
  const response = await gateway("/webhooks/stripe", {
    method: "POST",
    headers: { "stripe-signature": signature, "content-type": "application/json" },
    body,
  });
  const result = { status: response.status, body: (await response.json()) as any };
  // The webhook only records the event; what needs Stripe runs from the customer's alarm, which
  // fires right after in production: let it run before the test looks.
  const object = event.data.object as { object?: string; id?: string; customer?: unknown };
  const customerId = object.object === "customer" ? object.id : typeof object.customer === "string" ? object.customer : undefined;
  if (result.status === 200 && customerId) await settle(customerId);
  return result;
}

/** Delivers every event Stripe has emitted and not yet delivered, in order. */
export async function deliverAll(stripe: StripeDouble) {
  for (const event of stripe.takeEvents()) {
    const result = await deliver(stripe, event);
    if (result.status !== 200) throw new Error(`webhook ${event.type} ${event.id}: ${result.status} ${JSON.stringify(result.body)}`);
  }
}

/** Deletes a customer in Stripe, as the Dashboard would (no webhook delivered). */
export async function deleteInStripe(stripe: StripeDouble, customerId: string) {
  const response = await stripe.handle(new Request(`https://stripe.test/v1/customers/${customerId}`, { method: "DELETE", headers: { authorization: "Bearer sk_test_x" } }));
  if (response.status !== 200) throw new Error(`deleting ${customerId} in the Stripe double: ${response.status}`);
}

/** A customer created in Stripe with `cents` of credit, known at the edge, with one API key. */
export async function fundedCustomer({ stripe }: ReturnType<typeof connect>, cents: number, metadata: Record<string, string> = {}) {
  const customer = stripe.createCustomer({ email: "grace@example.com", name: "Grace Hopper", balance: -cents, metadata });
  await deliverAll(stripe);
  const key = (await admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
  return { id: customer.id, key };
}

/** `n` parallel requests with the key; how many got 200. */
export async function spend(key: string, n: number, path = "/v1/x") {
  const statuses = await Promise.all(Array.from({ length: n }, () => gateway(path, withKey(key)).then((r) => r.status)));
  return statuses.filter((s) => s === 200).length;
}

/** The next POST of a balance transaction is refused with 400 and does not reach Stripe. */
export function refuseOnce() {
  server.use(
    http.post(
      "https://stripe.test/v1/customers/:id/balance_transactions",
      () => HttpResponse.json({ error: { type: "invalid_request_error", message: "Refused (injected)." } }, { status: 400 }),
      { once: true },
    ),
  );
}
