import { join } from "node:path";
import { build } from "esbuild";

/** The gateway's Durable Object bindings (wrangler.toml), for a bench worker running its bundle. */
export const GATEWAY_DURABLE_OBJECTS = {
  CUSTOMERS: { className: "CustomerAccount", useSQLite: true },
  DIRECTORY: { className: "Directory", useSQLite: true },
  WEBHOOK_DISPATCHER: { className: "WebhookDispatcher", useSQLite: true },
};

/**
 * Builds a bench-only entry around the gateway bundle (`contents` imports it): the gateway's own
 * source is never changed for the bench. Returns the file's path.
 */
export async function buildBenchEntry(root, fileName, contents) {
  const outfile = join(root, ".wrangler", "bench", fileName);
  await build({
    stdin: { contents, resolveDir: root, loader: "js" },
    bundle: true,
    platform: "neutral",
    format: "esm",
    external: ["cloudflare:*", "node:*"],
    outfile,
    logLevel: "silent",
  });
  return outfile;
}
