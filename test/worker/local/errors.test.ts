import { describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/lib/config";
import { admin, configProblems, customerStub, customerWithCredit, gateway } from "../helpers";

describe("bad input gets a JSON error with a stable code and changes nothing", () => {
  it("rejects malformed JSON, wrong types and unknown fields on credits", async () => {
    const { id } = await customerWithCredit(7);
    const cases: [unknown, string][] = [
      ["{not json", "invalid_json"],
      [{ amount: "5", reason: "x" }, "invalid_request"],
      [{ amount: 1.5, reason: "x" }, "invalid_request"],
      [{ amount: 0, reason: "x" }, "invalid_request"],
      [{ amount: 5 }, "invalid_request"],
      [{ amount: 5, reason: "x", extra: true }, "invalid_request"],
      [{ amount: 1e12, reason: "x" }, "invalid_request"],
      [[1, 2], "invalid_request"],
    ];
    for (const [body, code] of cases) {
      const response = await admin("POST", `/customers/${id}/credits`, body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.body.error).toMatchObject({ code, message: expect.any(String), requestId: expect.any(String) });
    }
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: 7_000_000, ledgerSumMicros: 7_000_000, rows: 1 });
  });

  it("rejects oversized admin bodies with 413", async () => {
    const { id } = await customerWithCredit(1);
    const response = await admin("PUT", `/customers/${id}`, { name: "x".repeat(70_000) });
    expect(response.status).toBe(413);
    expect(response.body.error.code).toBe("payload_too_large");
    expect((await admin("GET", `/customers/${id}`)).body.customer.name).toBe("Test Customer");
  });

  it("rejects bad customer fields and ids", async () => {
    expect((await admin("PUT", "/customers/bad.id", { name: "x" })).body.error.code).toBe("invalid_request");
    expect((await admin("PUT", `/customers/${"x".repeat(65)}`, { name: "x" })).status).toBe(400);
    expect((await admin("PUT", "/customers/ok_id_1", { email: "not-an-email" })).status).toBe(400);
    expect((await admin("PUT", "/customers/ok_id_1", { plan: "free" })).status).toBe(400);
    expect((await admin("GET", "/customers/ok_id_1")).status).toBe(404);
  });

  it("404s unknown customers and admin routes, 405s wrong methods", async () => {
    expect((await admin("GET", "/customers/nobody_here")).body.error.code).toBe("not_found");
    expect((await admin("POST", "/customers/nobody_here/keys", {})).status).toBe(404);
    expect((await admin("POST", "/customers/nobody_here/credits", { amount: 1, reason: "x" })).status).toBe(404);
    expect((await admin("GET", "/nothing/here")).body.error.code).toBe("not_found");
    const wrongMethod = await admin("PATCH", "/customers/abc", {});
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.body.error.code).toBe("method_not_allowed");
    expect((await admin("GET", "/customers/x/ledger?limit=0")).status).toBe(400);
  });

  it("makes admin credits idempotent with an Idempotency-Key header", async () => {
    const { id } = await customerWithCredit(0);
    const first = await admin("POST", `/customers/${id}/credits`, { amount: 25, reason: "promo" }, { "idempotency-key": "promo-1" });
    const again = await admin("POST", `/customers/${id}/credits`, { amount: 25, reason: "promo" }, { "idempotency-key": "promo-1" });
    expect(first.status).toBe(201);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ applied: false, balance: { available_cents: 25 } });
  });

  it("gives webhook and checkout routes JSON errors when Stripe is off", async () => {
    const webhook = await gateway("/webhooks/stripe", { method: "POST", body: "{}" });
    expect(webhook.status).toBe(409);
    expect(((await webhook.json()) as any).error.code).toBe("stripe_not_configured");
  });
});

describe("configuration is validated at start-up, naming the bad field", () => {
  const base = {
    ORIGIN_URL: "http://origin.test",
    PRICING: { currency: "usd", default_price_cents: "1" },
  };
  const problems = configProblems;

  it("accepts a minimal configuration and parses sub-cent prices exactly", () => {
    const config = parseConfig({ ...base, PRICING: { ...base.PRICING, meters: [{ name: "s", path: "/s/*", price_cents: "0.000001", stripe_event_name: "s_events" }] } });
    expect(config.PRICING.compiled[0]!.priceMicros).toBe(1);
    expect(config.PRICING.fallback.priceMicros).toBe(1_000_000);
    expect(config.stripeEnabled).toBe(false);
  });

  it("rejects floats-as-numbers, too many decimals and negative prices", () => {
    expect(problems({ ...base, PRICING: { ...base.PRICING, default_price_cents: 1 } })[0]).toMatch(/^PRICING\.default_price_cents/);
    expect(problems({ ...base, PRICING: { ...base.PRICING, default_price_cents: "0.0000001" } })[0]).toMatch(/^PRICING\.default_price_cents/);
    expect(problems({ ...base, PRICING: { ...base.PRICING, default_price_cents: "-1" } })[0]).toMatch(/^PRICING\.default_price_cents/);
  });

  it('refuses on_missing_units = "zero" for a meter whose units the client can suppress (sse:json); takes hold fields as a list', () => {
    const meter = { name: "chat", path: "/v1/chat", price_cents: "0.01", units: "sse:json:usage.total_tokens", hold_units: 100, stripe_event_name: "chat" };
    const withMeter = (extra: object) => problems({ ...base, PRICING: { ...base.PRICING, meters: [{ ...meter, ...extra }] } });
    expect(withMeter({ on_missing_units: "zero" }).join("\n")).toMatch(/on_missing_units = "zero" is refused for meters whose units the client can suppress/);
    expect(withMeter({ hold_units_from: ["json:max_completion_tokens", "json:max_tokens"], hold_multiplier_from: "json:n" })).toEqual([]);
    expect(withMeter({ hold_units_from: "json:max_tokens" })).toEqual([]);
    expect(withMeter({ hold_units_from: [] }).join("\n")).toMatch(/hold_units_from/);
    const config = parseConfig({ ...base, PRICING: { ...base.PRICING, meters: [{ ...meter, hold_units_from: "json:a.b" }] } });
    expect(config.PRICING.compiled[0]).toMatchObject({ holdFrom: [["a", "b"]], includeStreamUsage: true });
  });

  it("accepts MCP and tokens meters as the issue's configuration writes them, sharing no Stripe event with a priced meter", () => {
    const mcp = { name: "mcp_tools", path: "/mcp", units: "mcp", price_cents: "1", stripe_event_name: "mcp_tools", tools: [{ name: "search*", price_cents: "0.5" }] };
    const tokens = {
      name: "chat_tokens",
      methods: ["POST"],
      path: "/v1/chat/completions",
      units: "tokens",
      preset: "openai-chat",
      stripe_event_name: "chat_tokens",
      models: [{ model: "gpt-4o-mini*", input_cents_per_mtok: "15", cached_input_cents_per_mtok: "7.5", output_cents_per_mtok: "60", markup_percent: 25 }],
    };
    const config = parseConfig({ ...base, PRICING: { ...base.PRICING, meters: [mcp, tokens] } });
    expect(config.PRICING.compiled.map((m) => [m.name, m.units.kind, m.reportsCost, m.holdUnits])).toEqual([
      ["mcp_tools", "mcp", true, null],
      ["chat_tokens", "tokens", true, 4096],
    ]);
    // Cents per million tokens, as micro-cents per million: 7.5 cents is 7,500,000; unnamed kinds take input's or output's price.
    expect(config.PRICING.compiled[1]!.models[0]!.perMillion).toEqual({
      input: 15_000_000,
      cached_input: 7_500_000,
      cache_write: 15_000_000,
      output: 60_000_000,
      reasoning: 60_000_000,
    });
    // Two cost meters may share an event (their unit is a cent); a per-request price may not join them.
    expect(problems({ ...base, PRICING: { ...base.PRICING, meters: [mcp, { ...tokens, stripe_event_name: "mcp_tools" }] } })).toEqual([]);
    expect(problems({ ...base, PRICING: { ...base.PRICING, meters: [mcp, { name: "x", path: "/x", price_cents: "1", stripe_event_name: "mcp_tools" }] } })[0]).toMatch(
      /meter x has another price/,
    );
  });

  it.each([
    [
      { units: "tokens", preset: "openai-chat", price_cents: "1", models: [{ model: "*", input_cents_per_mtok: "1", output_cents_per_mtok: "1" }] },
      /priced by its models table, not price_cents/,
    ],
    [{ units: "tokens", preset: "openai-chat" }, /needs a preset and a models table/],
    [{ units: "tokens", models: [{ model: "*", input_cents_per_mtok: "1", output_cents_per_mtok: "1" }] }, /needs a preset and a models table/],
    [
      { units: "tokens", preset: "openai-chat", models: [{ model: "*", input_cents_per_mtok: "1", output_cents_per_mtok: "1" }], hold_units_from: "json:max_tokens" },
      /hold_units_from and hold_multiplier_from do not apply/,
    ],
    [
      { units: "tokens", preset: "openai-chat", models: [{ model: "*", input_cents_per_mtok: "1", output_cents_per_mtok: "1" }], on_missing_units: "zero" },
      /on_missing_units = "zero" is refused/,
    ],
    [
      { units: "tokens", preset: "anthropic-messages", models: [{ model: "*", input_cents_per_mtok: "1", output_cents_per_mtok: "1" }], include_stream_usage: false },
      /include_stream_usage applies only/,
    ],
    [{ units: "mcp", price_cents: "1", methods: ["POST"] }, /drop methods/],
    [{ units: "mcp", price_cents: "1", hold_units: 5 }, /apply only to units read from the response/],
    [{ units: "mcp" }, /needs price_cents/],
    [{ price_cents: "1", tools: [{ name: "x", price_cents: "1" }] }, /tools and charge_tool_errors apply only to units = "mcp"/],
    [{ price_cents: "1", preset: "openai-chat" }, /preset and models apply only to units = "tokens"/],
    [{ units: "tokens", preset: "openai-chat", models: [{ model: "*", input_cents_per_mtok: 1, output_cents_per_mtok: "1" }] }, /input_cents_per_mtok/],
  ])("refuses a meter that could not bill correctly: %j", (extra, message) => {
    expect(problems({ ...base, PRICING: { ...base.PRICING, meters: [{ name: "m", path: "/m", stripe_event_name: "m", ...extra }] } }).join("\n")).toMatch(message);
  });

  it("rejects an unknown merge tag instead of rendering a blank", () => {
    const found = problems({ ...base, GOVERNANCE: { blocked_body: { message: "Hi {{customer.nickname}}" } } });
    expect(found).toEqual(["unknown merge tag in GOVERNANCE.blocked_body.message: {{customer.nickname}}"]);
    const email = problems({
      ...base,
      EMAILS: { from_email: "a@b.co", templates: { out_of_credits: { subject: "{{balance.left}}", text: "x" } } },
    });
    expect(email[0]).toContain("EMAILS.templates.out_of_credits.subject");
  });

  it("rejects two prices reported to one Stripe meter event", () => {
    const found = problems({ ...base, PRICING: { ...base.PRICING, meters: [{ name: "s", path: "/s", price_cents: "2" }] } });
    expect(found[0]).toMatch(/^PRICING\.meters: meter s has another price/);
  });

  it("rejects a Checkout amount past Stripe's 8 digits of minor units", () => {
    expect(problems({ ...base, GOVERNANCE: { checkout_max_cents: 99_999_999 } })).toEqual([]);
    expect(problems({ ...base, GOVERNANCE: { checkout_max_cents: 100_000_000 } })[0]).toMatch(/^GOVERNANCE\.checkout_max_cents/);
  });

  it("rejects unknown fields, a bad origin and half-configured Stripe", () => {
    expect(problems({ ...base, PRICING: { ...base.PRICING, colour: "red" } })[0]).toMatch(/^PRICING/);
    expect(problems({ ...base, ORIGIN_URL: "ftp://x" })[0]).toMatch(/^ORIGIN_URL/);
    expect(problems({ ...base, STRIPE_SECRET_KEY: "sk_test_x" })[0]).toMatch(/STRIPE_WEBHOOK_SECRET/);
  });

  it("takes path parameters and letter case as configured: reject and case-insensitive unless told", () => {
    expect(parseConfig(base).PRICING).toMatchObject({ path_parameters: "reject", case_sensitive_paths: false });
    expect(problems({ ...base, PRICING: { ...base.PRICING, path_parameters: "strip" } })[0]).toMatch(/^PRICING\.path_parameters/);
    expect(problems({ ...base, PRICING: { ...base.PRICING, case_sensitive_paths: "yes" } })[0]).toMatch(/^PRICING\.case_sensitive_paths/);
    // A meter path with a ';' could never match: paths are priced without their parameters.
    const meter = { name: "m", path: "/v1/x;v=1", price_cents: "1" };
    expect(problems({ ...base, PRICING: { ...base.PRICING, meters: [meter] } })[0]).toMatch(/^PRICING\.meters\.0\.path: must not contain ';'/);
  });
});
