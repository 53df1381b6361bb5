// `npm test`: the dashboard's assets, type-check, import-cycle check, bundle check
// (`wrangler deploy --dry-run`), then every vitest project (the e2e project includes the browser tests). Each check prints one line when it passes and its whole output when it
// fails, so a green run fits on a screen.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(fileURLToPath(import.meta.url), "..", "..");
const bin = (name) => join(root, "node_modules", ".bin", name);

function run(command, args, { quiet }) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(command, args, { cwd: root, stdio: quiet ? ["ignore", "pipe", "pipe"] : "inherit", env: process.env });
    let output = "";
    child.stdout?.on("data", (d) => (output += d));
    child.stderr?.on("data", (d) => (output += d));
    child.on("exit", (code) => resolve({ code: code ?? 1, output, seconds: (Date.now() - started) / 1000 }));
  });
}

const checks = [
  // The dashboard's static assets first: wrangler dev in the end-to-end and browser tests serves them.
  ["assets (scripts/build-assets.mjs)", process.execPath, [join(root, "scripts/build-assets.mjs")]],
  ["type-check (worker)", bin("tsc"), ["-p", "tsconfig.json"]],
  ["type-check (node)", bin("tsc"), ["-p", "tsconfig.node.json"]],
  ["no import cycles", bin("dpdm"), ["--no-tree", "--no-warning", "--no-progress", "--exit-code", "circular:1", "src/index.ts"]],
  ["bundle (wrangler deploy --dry-run)", process.execPath, [join(root, "scripts/check-bundle.mjs")]],
];

for (const [name, command, args] of checks) {
  const result = await run(command, args, { quiet: true });
  if (result.code !== 0) {
    process.stdout.write(result.output);
    console.error(`✗ ${name} failed`);
    process.exit(result.code);
  }
  const notes = result.output.split("\n").filter((line) => line.startsWith("warning:"));
  console.log(`✓ ${name} (${result.seconds.toFixed(1)} s)`);
  for (const note of notes) console.log(`  ${note}`);
}

// The browser tests take the first browser they find (test/browser/find-browser.ts); without one they are skipped, said once here.
const { NO_BROWSER } = await import("../test/browser/find-browser.ts");
if (NO_BROWSER) console.log(`! ${NO_BROWSER}`);

const vitest = await run(bin("vitest"), ["run", "--reporter=dot", ...process.argv.slice(2)], { quiet: false });
process.exit(vitest.code);
