import { describe, expect, it } from "vitest";
import { admin, gateway, withKey } from "../helpers";
import { llmOrigin } from "../llm-origin";
import { call, mcp, mcpServer } from "../mcp-origin";
import { connect, cron, fundedCustomer, settle } from "./doubles";

// Meters whose units have no one price (MCP tools by name; tokens by model and kind) report a
// post-paid customer's usage to their one Stripe meter event as cost in whole cents, the fraction
// carried to the next report: Stripe and the edge agree to the cent over any period.
describe("post-paid cost meters in Stripe", () => {
  it("an MCP meter reports its cost in whole cents, carrying the fraction to the next report", async () => {
    const doubles = connect({ meters: ["api_requests", "search_requests", "mcp_tools"] });
    mcpServer();
    const { id, key } = await fundedCustomer(doubles, 0, { payg_plan: "postpaid" });
    for (let i = 0; i < 3; i++) expect((await mcp(key, call(i, "search_docs"))).headers.get("x-payg-charge-cents")).toBe("0.5");
    await settle(id);
    await cron();
    expect(doubles.stripe.meterUsage(id, "mcp_tools")).toBe(1);
    expect((await admin("GET", `/customers/${id}`)).body.stripe).toMatchObject({
      pending_costs: [{ meter: "mcp_tools", model: null, exact_cents: "0.5" }],
      pending_meter_quantities: {},
    });

    // Half a cent waits: nothing new to report costs no Stripe call.
    const events = doubles.stripe.meterEvents.length;
    await cron(Date.now() + 60_000);
    expect(doubles.stripe.meterEvents.length).toBe(events);

    expect((await mcp(key, call(3, "search_docs"))).status).toBe(200);
    expect((await mcp(key, call(4, "render_chart"))).status).toBe(200);
    await settle(id);
    await cron(Date.now() + 120_000);
    // 4 × 0.5 + 3 = 5 cents, every one reported once.
    expect(doubles.stripe.meterUsage(id, "mcp_tools")).toBe(5);
    expect(doubles.stripe.meterUsage(id, "api_requests")).toBe(0);
  });
});

describe("post-paid tokens meters in Stripe", () => {
  it("reports each model's cost as its own meter event (payload.model), whole cents, each model's fraction carried", async () => {
    const doubles = connect({ meters: ["api_requests", "search_requests", "llm_chat"] });
    llmOrigin();
    const { id, key } = await fundedCustomer(doubles, 0, { payg_plan: "postpaid" });
    const chat = async (model: string, u: Record<string, number>) => {
      const response = await gateway(`/llm/chat?usage=${encodeURIComponent(JSON.stringify(u))}`, withKey(key, { method: "POST", body: JSON.stringify({ model, messages: [] }) }));
      expect(response.status).toBe(200);
      return response.headers.get("x-payg-charge-cents");
    };
    // small*: 1,000 output tokens × 4,000 micro-cents × 1.1 = 4.4 cents; "*": 150 input × 10,000 = 1.5 cents.
    expect(await chat("small-a", { prompt_tokens: 0, completion_tokens: 1000 })).toBe("4.4");
    expect(await chat("small-b", { prompt_tokens: 0, completion_tokens: 1000 })).toBe("4.4");
    expect(await chat("large", { prompt_tokens: 150, completion_tokens: 0 })).toBe("1.5");
    await settle(id);
    await cron();
    const sent = () =>
      doubles.stripe.meterEvents
        .filter((e) => e.payload.stripe_customer_id === id && e.event_name === "llm_chat")
        .map((e) => [e.payload.model, Number(e.payload.value)])
        .sort();
    expect(sent()).toEqual([
      ["*", 1],
      ["small*", 8],
    ]);
    expect((await admin("GET", `/customers/${id}`)).body.stripe.pending_costs).toEqual([
      { meter: "llm_chat", model: "*", exact_cents: "0.5" },
      { meter: "llm_chat", model: "small*", exact_cents: "0.8" },
    ]);

    expect(await chat("large", { prompt_tokens: 150, completion_tokens: 0 })).toBe("1.5");
    await settle(id);
    await cron(Date.now() + 60_000);
    expect(sent()).toEqual([
      ["*", 1],
      ["*", 2],
      ["small*", 8],
    ]);
    // The edge's charges and Stripe's meter agree to the cent: 11.8 cents charged, 11 reported, 0.8 carried.
    expect(doubles.stripe.meterUsage(id, "llm_chat")).toBe(11);
  });
});
