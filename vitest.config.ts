import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

const secrets = { ADMIN_TOKEN: "test-admin-token-0123456789" };
/** Tests run quietly; a test that asserts on a log line sets its own level. */
const quiet = { LOG_LEVEL: "warn" };
const stripe = {
  STRIPE_SECRET_KEY: "sk_test_gateway",
  STRIPE_WEBHOOK_SECRET: "whsec_test_secret",
  STRIPE_API_BASE: "http://stripe.test",
  STRIPE_TIMEOUT_MS: "1000",
};
const mailchannels = { MAILCHANNELS_API_KEY: "mc_test_key", MAILCHANNELS_API_BASE: "http://mailchannels.test", MAILCHANNELS_TIMEOUT_MS: "500" };

/** The shipped prices plus a sub-cent meter, to prove sub-cent prices are exact. */
const pricingWithSubCent = {
  currency: "usd",
  default_price_cents: "1",
  default_meter: "api_requests",
  usage_bucket_seconds: 3600,
  meters: [
    { name: "health", methods: ["GET", "HEAD"], path: "/health", price_cents: "0" },
    { name: "search", path: "/v1/search/**", price_cents: "0.05", stripe_event_name: "search_requests" },
  ],
};

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
        // Whatever a developer's .dev.vars holds, this project runs without Stripe and MailChannels.
        STRIPE_SECRET_KEY: "",
        STRIPE_WEBHOOK_SECRET: "",
        MAILCHANNELS_API_KEY: "",
      }),
      // Stripe and MailChannels on, both replaced by test doubles at the HTTP boundary (MSW).
      workers("connected", ["test/worker/connected/**/*.test.ts"], { PRICING: pricingWithSubCent, ...stripe, ...mailchannels }),
      // Connected, with a tiny cron batch (the directory's alarm carries on) and DKIM signing set.
      workers("variants", ["test/worker/variants/**/*.test.ts"], {
        PRICING: pricingWithSubCent,
        ...stripe,
        ...mailchannels,
        CRON_BATCH_SIZE: "3",
        MAILCHANNELS_DKIM_DOMAIN: "example.com",
        MAILCHANNELS_DKIM_SELECTOR: "mcdkim",
        MAILCHANNELS_DKIM_PRIVATE_KEY: "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC-test-key",
      }),
      {
        extends: true,
        // test/browser: headless Chromium (playwright-core) against the same real wrangler dev, one file at a time.
        test: { name: "e2e", include: ["test/e2e/**/*.test.ts", "test/browser/**/*.test.ts"], environment: "node", fileParallelism: false, testTimeout: 120_000 },
      },
    ],
  },
});
