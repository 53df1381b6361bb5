import { generateKeyPairSync } from "node:crypto";
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Wrangler (read by the workerd projects for wrangler.toml) logs "Using secrets defined in .dev.vars"
// once per test file; its warnings and errors still show.
process.env.WRANGLER_LOG ??= "warn";

const secrets = {
  ADMIN_TOKEN: "test-admin-token-0123456789",
  KEY_SIGNING_SECRET: "test-key-signing-secret-0123456789abcdef",
  ORIGIN_SIGNING_SECRET: "test-origin-signing-secret-0123456789abcdef",
};
/** Tests run quietly; a test that asserts on a log line sets its own level. */
const quiet = { LOG_LEVEL: "warn" };
/** Key sign-in to the portal on, as `npm start` has it; tests of the default (off) use gatewayWith. */
const portalKeySignIn = { PORTAL: { api_key_sign_in: true } };
const stripe = {
  STRIPE_SECRET_KEY: "sk_test_gateway",
  STRIPE_WEBHOOK_SECRET: "whsec_test_secret",
  // The double signs thin (v2) events with the webhook secret unless told otherwise.
  STRIPE_EVENT_DESTINATION_SECRET: "whsec_test_secret",
  STRIPE_API_BASE: "https://stripe.test",
  STRIPE_TIMEOUT_MS: "1000",
};
/**
 * The Stripe call budget out of the way: these tests count calls and reports, not pacing (each
 * sandbox default is 10 a second). The budget's own tests run in the "budget" project.
 */
const unboundedBudget = { STRIPE_BUDGET: { max_calls_per_second: 10_000, max_calls_per_endpoint_per_second: 10_000 } };
/** Webhook receivers in tests are on this machine (MSW or loopback); variants leave http refused. */
const webhooks = { ALLOW_INSECURE_WEBHOOKS: "true", WEBHOOK_TIMEOUT_MS: "1000" };
const mailchannels = {
  MAILCHANNELS_API_KEY: "mc_test_key",
  MAILCHANNELS_API_BASE: "https://mailchannels.test",
  MAILCHANNELS_TIMEOUT_MS: "500",
  // Real emails need an https unsubscribe link.
  PUBLIC_URL: "https://gateway.test",
};
/** A DKIM key made for this run, in the format MailChannels takes: base64 of the DER key (PKCS#1). */
const dkimPrivateKey = generateKeyPairSync("rsa", {
  modulusLength: 2048,
  publicKeyEncoding: { type: "spki", format: "der" },
  privateKeyEncoding: { type: "pkcs1", format: "der" },
}).privateKey.toString("base64");

/** The shipped prices plus a sub-cent meter, to prove sub-cent prices are exact. */
const pricingWithSubCent = {
  currency: "usd",
  default_price_cents: "1",
  default_meter: "api_requests",
  usage_bucket_seconds: 3600,
  meters: [
    { name: "health", methods: ["GET", "HEAD"], path: "/health", price_cents: "0" },
    { name: "search", path: "/v1/search/**", price_cents: "0.05", stripe_event_name: "search_requests" },
    // Billed from the response (tests in test/worker/local/metered.test.ts).
    { name: "header_tokens", path: "/v1/header-tokens", price_cents: "0.1", units: "header:x-usage-tokens", hold_units: 100, stripe_event_name: "header_tokens" },
    {
      name: "json_tokens",
      path: "/v1/json-tokens",
      price_cents: "0.1",
      units: "json:usage.total_tokens",
      hold_units: 100,
      hold_units_from: "json:max_tokens",
      on_missing_units: "zero",
      stripe_event_name: "json_tokens",
    },
    { name: "events", path: "/v1/events", price_cents: "1", units: "sse:events", hold_units: 8, stripe_event_name: "events" },
    {
      name: "chat",
      methods: ["POST"],
      path: "/v1/chat/completions",
      price_cents: "0.01",
      units: "sse:json:usage.total_tokens",
      hold_units: 1000,
      hold_units_from: ["json:max_completion_tokens", "json:max_tokens"],
      hold_multiplier_from: "json:n",
      stripe_event_name: "chat_tokens",
    },
    // Tokens by model and kind (tests in test/worker/local/tokens.test.ts): cents per million tokens.
    {
      name: "llm_chat",
      methods: ["POST"],
      path: "/llm/chat",
      units: "tokens",
      preset: "openai-chat",
      hold_units: 100,
      stripe_event_name: "llm_chat",
      models: [
        { model: "small*", input_cents_per_mtok: "1000", cached_input_cents_per_mtok: "100", output_cents_per_mtok: "4000", markup_percent: 10 },
        { model: "*", input_cents_per_mtok: "10000", output_cents_per_mtok: "10000" },
      ],
    },
    {
      name: "llm_responses",
      methods: ["POST"],
      path: "/llm/responses",
      units: "tokens",
      preset: "openai-responses",
      stripe_event_name: "llm_responses",
      models: [{ model: "small*", input_cents_per_mtok: "1000", cached_input_cents_per_mtok: "100", output_cents_per_mtok: "4000", reasoning_cents_per_mtok: "8000" }],
    },
    {
      name: "llm_messages",
      methods: ["POST"],
      path: "/llm/messages",
      units: "tokens",
      preset: "anthropic-messages",
      stripe_event_name: "llm_messages",
      models: [{ model: "haiku*", input_cents_per_mtok: "1000", cached_input_cents_per_mtok: "100", cache_write_cents_per_mtok: "1250", output_cents_per_mtok: "5000" }],
    },
    // MCP tool calls by name (tests in test/worker/local/mcp.test.ts).
    {
      name: "mcp_tools",
      path: "/mcp",
      units: "mcp",
      price_cents: "1",
      stripe_event_name: "mcp_tools",
      tools: [
        { name: "search*", price_cents: "0.5" },
        { name: "render_chart", price_cents: "3" },
      ],
    },
  ],
};

/** Credit leases configured (customers still opt in with payg_leases): every request-priced direct debit goes through leaseSync. */
const leases = { LEASES: { ttl_ms: 10_000, heartbeat_ms: 1_000, max_lease_cents: 200, max_leases: 64 } };

/** A workerd project: the real worker and Durable Objects from wrangler.toml, with these bindings. */
function workers(name: string, include: string[], bindings: Record<string, unknown>) {
  return {
    extends: true as const,
    plugins: [
      cloudflareTest({
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: { bindings: { ORIGIN_URL: "http://origin.test", ...quiet, ...secrets, ...bindings } },
      }),
    ],
    test: { name, include, setupFiles: ["./test/worker/setup.ts"] },
  };
}

export default defineConfig({
  // Vite's warnings about the Stripe SDK's source maps say nothing about our code.
  logLevel: "error",
  test: {
    // Logs of passing tests are noise; a failing test shows its own.
    silent: "passed-only",
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: [
      // Local mode: no Stripe, no MailChannels (emails kept in the outbox).
      workers("local", ["test/worker/local/**/*.test.ts"], {
        PRICING: pricingWithSubCent,
        ...portalKeySignIn,
        ...webhooks,
        ...leases,
        // Whatever a developer's .dev.vars holds, this project runs without Stripe and MailChannels.
        STRIPE_SECRET_KEY: "",
        STRIPE_WEBHOOK_SECRET: "",
        MAILCHANNELS_API_KEY: "",
      }),
      // Stripe and MailChannels on, both replaced by test doubles at the HTTP boundary (MSW).
      workers("connected", ["test/worker/connected/**/*.test.ts"], {
        PRICING: pricingWithSubCent,
        ...portalKeySignIn,
        ...stripe,
        ...mailchannels,
        ...webhooks,
        ...unboundedBudget,
        ...leases,
      }),
      // Connected, with the directory in 4 shards (customers placed by a hash of their id).
      workers("sharded", ["test/worker/sharded/**/*.test.ts"], {
        PRICING: pricingWithSubCent,
        ...portalKeySignIn,
        ...stripe,
        ...mailchannels,
        ...webhooks,
        ...unboundedBudget,
        DIRECTORY_SHARDS: "4",
      }),
      // Connected, 2 shards, and a small Stripe budget: 20 calls a second, 10 per endpoint, 20% kept for Checkout.
      workers("budget", ["test/worker/budget/**/*.test.ts"], {
        PRICING: pricingWithSubCent,
        ...portalKeySignIn,
        ...stripe,
        ...mailchannels,
        ...webhooks,
        DIRECTORY_SHARDS: "2",
        STRIPE_BUDGET: { max_calls_per_second: 20, max_calls_per_endpoint_per_second: 10, checkout_reserved_percent: 20 },
      }),
      // Connected, with a tiny cron batch (the directory's alarm carries on), DKIM signing set,
      // ALLOW_INSECURE_WEBHOOKS unset (http endpoints refused) and group commit off.
      workers("variants", ["test/worker/variants/**/*.test.ts"], {
        PRICING: pricingWithSubCent,
        ...stripe,
        ...mailchannels,
        CRON_BATCH_SIZE: "3",
        MAILCHANNELS_DKIM_DOMAIN: "example.com",
        MAILCHANNELS_DKIM_SELECTOR: "mcdkim",
        MAILCHANNELS_DKIM_PRIVATE_KEY: dkimPrivateKey,
        // Empty counts as unset, whatever a developer's .dev.vars says.
        ALLOW_INSECURE_WEBHOOKS: "",
        // Every step commits on its own (the benchmark's hot_no_group_commit).
        GROUP_COMMIT: "false",
        ...unboundedBudget,
      }),
      {
        extends: true,
        // test/browser: headless Chromium (playwright-core) against the same real wrangler dev, one file at a time.
        test: { name: "e2e", include: ["test/e2e/**/*.test.ts", "test/browser/**/*.test.ts"], environment: "node", fileParallelism: false, testTimeout: 120_000 },
      },
    ],
  },
});
