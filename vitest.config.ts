import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

const secrets = { ADMIN_TOKEN: "test-admin-token-0123456789" };
const stripe = {
  STRIPE_SECRET_KEY: "sk_test_gateway",
  STRIPE_WEBHOOK_SECRET: "whsec_test_secret",
  STRIPE_API_BASE: "http://stripe.test",
};
const mailchannels = { MAILCHANNELS_API_KEY: "mc_test_key", MAILCHANNELS_API_BASE: "http://mailchannels.test" };

/** A workerd project: the real worker and Durable Objects from wrangler.toml, with these bindings. */
function workers(name: string, include: string[], bindings: Record<string, string>) {
  return {
    extends: true as const,
    plugins: [
      cloudflareTest({
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: { bindings: { ORIGIN_URL: "http://origin.test", ...secrets, ...bindings } },
      }),
    ],
    test: { name, include, setupFiles: ["./test/worker/setup.ts"] },
  };
}

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: [
      // Local mode: no Stripe, no MailChannels (emails kept in the outbox).
      workers("local", ["test/worker/local/**/*.test.ts"], {}),
      // Stripe and MailChannels on, both replaced by test doubles at the HTTP boundary (MSW).
      workers("connected", ["test/worker/connected/**/*.test.ts"], { ...stripe, ...mailchannels }),
      {
        extends: true,
        test: { name: "e2e", include: ["test/e2e/**/*.test.ts"], environment: "node", fileParallelism: false, testTimeout: 120_000 },
      },
    ],
  },
});
