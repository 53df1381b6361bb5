// The bundle check: `wrangler deploy --dry-run` builds exactly what `wrangler deploy` would upload.
// Then it warns (lines starting with "warning:", which scripts/test.mjs shows) about quick-start
// values that must not reach production: a loopback ORIGIN_URL or GOVERNANCE.topup_url.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { unstable_readConfig } from "wrangler";
// One implementation with the worker's own checks (Node strips the types).
import { deployWarnings } from "../src/lib/loopback.ts";

const root = join(fileURLToPath(import.meta.url), "..", "..");
execFileSync(process.execPath, [join(root, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", ".wrangler/dry-run"], {
  cwd: root,
  stdio: "inherit",
});
const config = unstable_readConfig({ config: join(root, "wrangler.toml") });
for (const warning of deployWarnings(config.vars)) console.log(warning);
