// `npm test`: the dashboard's assets, type-check, folder boundaries, Markdown links, import-cycle check, bundle check
// (`wrangler deploy --dry-run`), then every vitest project (the e2e project includes the browser
// tests). Each step prints one line when it passes and its whole output when it fails, so a green
// run fits on a screen.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(fileURLToPath(import.meta.url), "..", "..");
const bin = (name) => join(root, "node_modules", ".bin", name);

function run(command, args, { quiet, env = process.env }) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(command, args, { cwd: root, stdio: quiet ? ["ignore", "pipe", "pipe"] : "inherit", env });
    let output = "";
    child.stdout?.on("data", (d) => (output += d));
    child.stderr?.on("data", (d) => (output += d));
    child.on("exit", (code) => resolve({ code: code ?? 1, output, seconds: (Date.now() - started) / 1000 }));
  });
}

const checks = [
  // The dashboard's static assets first: wrangler dev in the end-to-end and browser tests serves them.
  ["assets (scripts/build-assets.mjs)", process.execPath, [join(root, "scripts/build-assets.mjs")]],
  ["lint and format (biome check; npm run format fixes)", bin("biome"), ["check", "."]],
  ["type-check (worker)", bin("tsc"), ["-p", "tsconfig.json"]],
  ["type-check (node)", bin("tsc"), ["-p", "tsconfig.node.json"]],
  ["folder boundaries (scripts/check-imports.mjs)", process.execPath, [join(root, "scripts/check-imports.mjs")]],
  ["links (scripts/check-links.mjs)", process.execPath, [join(root, "scripts/check-links.mjs")]],
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

// vitest's own output (the runtime's and wrangler's logs included) is kept back: a green run prints
// one line per project and the totals; a failing one prints all of it.
const summary = join(mkdtempSync(join(tmpdir(), "payg-test-")), "summary.txt");
const started = Date.now();
const vitest = await run(bin("vitest"), ["run", "--reporter=dot", "--reporter=./scripts/test-summary-reporter.mjs", ...process.argv.slice(2)], {
  quiet: true,
  env: { ...process.env, PAYG_TEST_SUMMARY: summary },
});
const lines = existsSync(summary) ? readFileSync(summary, "utf8") : "";
if (vitest.code !== 0 || !lines) process.stdout.write(vitest.output);
process.stdout.write(lines);
console.log(`${vitest.code === 0 ? "✓" : "✗"} vitest (${((Date.now() - started) / 1000).toFixed(1)} s)`);
process.exit(vitest.code);
