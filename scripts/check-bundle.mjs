// The bundle check: `wrangler deploy --dry-run` builds exactly what `wrangler deploy` would upload.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(fileURLToPath(import.meta.url), "..", "..");
execFileSync(process.execPath, [join(root, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", ".wrangler/dry-run"], {
  cwd: root,
  stdio: "inherit",
});
