import { describe, expect, it } from "vitest";
import { admin } from "../helpers";
import { type Message, mcpServer, call as toolCall } from "../mcp-origin";
import { connect, deliverAll } from "./doubles";
import { agent, facilitator, NETWORK } from "./x402-helpers";

// x402's MCP transport (coinbase/x402 specs/transports-v2/mcp.md): a tool call refused for credit
// is a tool error whose structuredContent is the PaymentRequired; the agent pays in
// params._meta["x402/payment"]; the settlement comes back in result._meta["x402/payment-response"].

const post = (message: Message) => ({
  method: "POST",
  headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
  body: JSON.stringify(message),
});

describe("x402 over MCP (happy)", () => {
  it("refuses a tool call with the PaymentRequired as structuredContent, then serves the call that pays it", async () => {
    const { stripe } = connect();
    const seen = mcpServer();
    const { double, call } = facilitator();
    const customer = stripe.createCustomer({ email: "ada@example.com" });
    await deliverAll(stripe);
    const key = (await admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;

    const refused = (await (await call(key, "/mcp", post(toolCall(1, "render_chart")))).json()) as Message;
    expect(refused.result.isError).toBe(true);
    const required = refused.result.structuredContent;
    expect(required).toMatchObject({ x402Version: 2, accepts: [{ scheme: "exact", network: NETWORK, amount: "5000000" }] });
    expect(JSON.parse(refused.result.content[0].text)["x402/error"]).toMatchObject({ code: 402, data: { code: "insufficient_credit", payment: { topup_cents: 500 } } });
    expect(seen.posts).toHaveLength(0);

    const { client } = agent(double);
    const payment = await client.createPaymentPayload(required);
    const paying = toolCall(2, "render_chart");
    paying.params._meta = { "x402/payment": payment };
    const answered = (await (await call(key, "/mcp", post(paying))).json()) as Message;
    expect(answered.result.content[0].text).toBe("ran render_chart");
    expect(answered.result._meta["x402/payment-response"]).toMatchObject({ success: true, network: NETWORK, transaction: double.transfers[0]!.transaction });
    expect(answered.result._meta["payg/charge"]).toMatchObject({ charged_cents: "3", balance_cents: "497" });
    expect(double.transfers).toHaveLength(1);
  });
});

describe("x402 over MCP (error)", () => {
  it("a payment for the wrong amount is the call's refusal, with a fresh PaymentRequired naming the reason; nothing reaches the server", async () => {
    const { stripe } = connect();
    const seen = mcpServer();
    const { double, call } = facilitator();
    const customer = stripe.createCustomer({ email: "ada@example.com" });
    await deliverAll(stripe);
    const key = (await admin("POST", `/customers/${customer.id}/keys`, {})).body.key as string;
    const required = ((await (await call(key, "/mcp", post(toolCall(1, "render_chart")))).json()) as Message).result.structuredContent;
    const { client } = agent(double);
    const payment = await client.createPaymentPayload({ ...required, accepts: [{ ...required.accepts[0], amount: "10000" }] });
    const paying = toolCall(2, "render_chart");
    paying.params._meta = { "x402/payment": payment };
    const refused = (await (await call(key, "/mcp", post(paying))).json()) as Message;
    expect(refused.result.isError).toBe(true);
    expect(refused.result.structuredContent).toMatchObject({ x402Version: 2, error: "invalid_exact_evm_payload_authorization_value_mismatch" });
    expect(seen.posts).toHaveLength(0);
    expect(double.transfers).toHaveLength(0);
  });
});
