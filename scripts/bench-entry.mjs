import { join } from "node:path";
import { build } from "esbuild";

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
