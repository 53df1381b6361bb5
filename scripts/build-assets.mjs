// Builds the dashboard's and portal's static assets into public/dashboard/assets/ (git-ignored):
// the page script (with uPlot and src/money.ts bundled in), the stylesheet and the icon.
// `npm start`, `npm test` and wrangler itself ([build] in wrangler.toml: dev, deploy, deploy --dry-run)
// run it first, so a fresh clone needs nothing else.

import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(fileURLToPath(import.meta.url), "..", "..");
const client = join(root, "src/web/client");
const out = join(root, "public/dashboard/assets");

export async function buildAssets() {
  mkdirSync(out, { recursive: true });
  await build({
    // main.ts imports app.css (which imports uPlot's), so esbuild writes app.js and app.css.
    entryPoints: { app: join(client, "main.ts") },
    outdir: out,
    bundle: true,
    minify: true,
    format: "esm",
    target: "es2022",
    legalComments: "none",
    logLevel: "warning",
  });
  copyFileSync(join(client, "favicon.svg"), join(out, "favicon.svg"));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await buildAssets();
