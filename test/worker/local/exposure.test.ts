import { afterEach, describe, expect, it, vi } from "vitest";
import { getConfig, parseConfig } from "../../../src/lib/config";
import { deployWarnings, isLoopbackUrl } from "../../../src/lib/loopback";
import { ADMIN_TOKEN, configProblems, gatewayWith } from "../helpers";

const errorOf = async (response: Response) => ((await response.json()) as { error: { code: string; message: string; requestId: string; details?: { problems?: string[] } } }).error;

afterEach(() => vi.restoreAllMocks());

describe("no internals to strangers (security)", () => {
  const broken = { PRICING: '{"currency":"usd","default_price_cents":"1","colour":"red"}' };

  it("shows configuration problems only to the admin, and always in the log", async () => {
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    const stranger = await gatewayWith(broken, "/v1/x", { headers: { authorization: "Bearer payg_cus_x.abc" } });
    expect(stranger.status).toBe(500);
    const error = await errorOf(stranger);
    expect(error.code).toBe("configuration_error");
    expect(error.message).not.toContain("PRICING");
    expect(error.message).toContain(error.requestId);
    expect(error.details).toBeUndefined();
    expect(logged.mock.calls.flat().join(" ")).toContain("PRICING");
    expect(logged.mock.calls.flat().join(" ")).toContain(error.requestId);

    const wrongToken = await gatewayWith(broken, "/admin/status", { headers: { authorization: "Bearer wrong-token-0123456789" } });
    expect(JSON.stringify(await wrongToken.json())).not.toContain("PRICING");

    const operator = await gatewayWith(broken, "/admin/status", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(operator.status).toBe(500);
    const detailed = await errorOf(operator);
    expect(detailed.code).toBe("configuration_error");
    expect(detailed.details?.problems).toEqual([expect.stringMatching(/^PRICING/)]);
  });

  it("does not echo the Stripe SDK's message when a webhook signature fails", async () => {
    vi.spyOn(console, "warn").mockImplementation(() => {});
    const stripeOn = { STRIPE_SECRET_KEY: "sk_test_x", STRIPE_WEBHOOK_SECRET: "whsec_x", STRIPE_API_BASE: "https://stripe.test" };
    const messages = new Set<string>();
    for (const signature of ["t=1,v1=abc", "garbage", `t=${Math.floor(Date.now() / 1000)},v1=${"0".repeat(64)}`]) {
      const response = await gatewayWith(stripeOn, "/webhooks/stripe", { method: "POST", headers: { "stripe-signature": signature }, body: '{"id":"evt_1"}' });
      expect(response.status).toBe(400);
      const error = await errorOf(response);
      expect(error.code).toBe("invalid_signature");
      expect(error.message).not.toMatch(/tolerance|No signatures found|Unable to extract|expected signature/i);
      messages.add(error.message);
    }
    expect(messages.size).toBe(1);
  });
});

describe("configuration (error)", () => {
  const base = { ORIGIN_URL: "https://api.example.com", PRICING: { currency: "usd", default_price_cents: "1" } };
  const problems = (env: Record<string, unknown>) => configProblems({ ...base, ...env });

  it("needs https for STRIPE_API_BASE and MAILCHANNELS_API_BASE, except on loopback", () => {
    for (const name of ["STRIPE_API_BASE", "MAILCHANNELS_API_BASE"]) {
      expect(problems({ [name]: "http://api.stripe.com" }), name).toEqual([expect.stringMatching(new RegExp(`^${name}: must be https`))]);
      expect(problems({ [name]: "http://stripe.test" })).toHaveLength(1);
      for (const ok of ["https://stripe.test", "http://127.0.0.1:12111", "http://localhost:9000", "http://[::1]:9000", "http://127.1.2.3"]) {
        expect(problems({ [name]: ok }), `${name}=${ok}`).toEqual([]);
      }
    }
  });

  it("refuses ACCEPT_UNSIGNED_KEYS=false without a KEY_SIGNING_SECRET, and short signing secrets", () => {
    expect(problems({ ACCEPT_UNSIGNED_KEYS: false })).toEqual([expect.stringMatching(/^ACCEPT_UNSIGNED_KEYS/)]);
    expect(problems({ ACCEPT_UNSIGNED_KEYS: "false", KEY_SIGNING_SECRET: "k".repeat(32) })).toEqual([]);
    expect(problems({ KEY_SIGNING_SECRET: "short" })[0]).toMatch(/^KEY_SIGNING_SECRET/);
    expect(problems({ ORIGIN_SIGNING_SECRET: "short" })[0]).toMatch(/^ORIGIN_SIGNING_SECRET/);
    expect(problems({ GOVERNANCE: { checkout_limit_per_hour: 0 } })[0]).toMatch(/^GOVERNANCE\.checkout_limit_per_hour/);
  });

  it("defaults: unsigned keys accepted, 10 checkout sessions an hour", () => {
    const config = parseConfig(base);
    expect(config.ACCEPT_UNSIGNED_KEYS).toBe(true);
    expect(config.GOVERNANCE.checkout_limit_per_hour).toBe(10);
  });

  it("defaults of the money rails: an invoice for every Checkout top-up, no Stripe Tax, Stripe's dynamic payment methods, the house error format", () => {
    const { GOVERNANCE } = parseConfig(base);
    expect(GOVERNANCE.checkout_invoice).toBe(true);
    expect(GOVERNANCE.checkout_automatic_tax).toBe(false);
    expect(GOVERNANCE.checkout_payment_method_types).toBeUndefined();
    expect(GOVERNANCE.problem_details).toBe(false);
    for (const bad of [[], ["card", "card"], ["Card"], "card"]) {
      expect(problems({ GOVERNANCE: { checkout_payment_method_types: bad } })[0], JSON.stringify(bad)).toMatch(/^GOVERNANCE\.checkout_payment_method_types/);
    }
    expect(problems({ GOVERNANCE: { checkout_payment_method_types: ["card", "crypto"] } })).toEqual([]);
  });

  it("warns at start-up when the origin cannot tell gateway traffic apart, or forged keys reach the objects", () => {
    const warned = vi.spyOn(console, "warn").mockImplementation(() => {});
    getConfig({ ...base, LOG_LEVEL: "warn" });
    const lines = warned.mock.calls.map((call) => String(call[0]));
    expect(lines).toEqual(expect.arrayContaining([expect.stringContaining("ORIGIN_SIGNING_SECRET is not set"), expect.stringContaining("KEY_SIGNING_SECRET is not set")]));
    warned.mockClear();
    getConfig({ ...base, LOG_LEVEL: "warn", ORIGIN_SIGNING_SECRET: "o".repeat(32), KEY_SIGNING_SECRET: "k".repeat(32) });
    expect(warned).not.toHaveBeenCalled();
  });
});

describe("deploy warnings (wrangler deploy --dry-run)", () => {
  it("knows loopback when it sees it", () => {
    for (const url of ["http://127.0.0.1:8788", "http://localhost", "http://[::1]:1", "http://127.9.9.9/x", "http://api.localhost"]) expect(isLoopbackUrl(url), url).toBe(true);
    for (const url of ["https://api.example.com", "http://10.0.0.1", "http://128.0.0.1", "not a url"]) expect(isLoopbackUrl(url), url).toBe(false);
  });

  it("warns about a loopback ORIGIN_URL or topup_url, and a topup_url that is the POST-only checkout route", () => {
    expect(deployWarnings({ ORIGIN_URL: "https://api.example.com", GOVERNANCE: { topup_url: "https://gw.example.com/portal" } })).toEqual([]);
    const local = deployWarnings({ ORIGIN_URL: "http://127.0.0.1:8788", GOVERNANCE: { topup_url: "http://127.0.0.1:8787/portal" } });
    expect(local).toEqual([expect.stringMatching(/^warning: ORIGIN_URL .*loopback/), expect.stringMatching(/^warning: GOVERNANCE\.topup_url .*loopback/)]);
    expect(deployWarnings({ ORIGIN_URL: "https://api.example.com", GOVERNANCE: '{"topup_url":"https://gw.example.com/billing/checkout"}' })).toEqual([
      expect.stringMatching(/^warning: GOVERNANCE\.topup_url .*POST-only/),
    ]);
  });
});
