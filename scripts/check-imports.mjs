// The folder boundaries `npm test` holds (see docs/design/folder-boundaries.md):
// - the Durable Objects (durable-objects/) import only from durable-objects/ and src/lib/;
// - the worker (src/ outside src/lib/) reaches an object only through its contract.ts, except the
//   entry module src/index.ts, which re-exports the object classes because Workers needs them there;
// - src/lib/ imports only from src/lib/ and src/verify/ (the verifier origins copy, which defines
//   the signed strings).
// Prints each import across a boundary and exits 1 if there is one.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(fileURLToPath(import.meta.url), "..", "..");
const IMPORT = /(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g;

function* sources(dir) {
  for (const name of readdirSync(join(root, dir))) {
    const path = join(dir, name);
    if (statSync(join(root, path)).isDirectory()) yield* sources(path);
    else if (/\.(ts|tsx)$/.test(name) && !name.endsWith(".d.ts")) yield path;
  }
}

const problems = [];
for (const file of [...sources("src"), ...sources("durable-objects")]) {
  for (const [, spec] of readFileSync(join(root, file), "utf8").matchAll(IMPORT)) {
    const target = normalize(join(dirname(file), spec));
    const from = file.startsWith("durable-objects/") ? "object" : file.startsWith("src/lib/") ? "lib" : "worker";
    const allowed =
      from === "object"
        ? target.startsWith("durable-objects/") || target.startsWith("src/lib/")
        : from === "lib"
          ? target.startsWith("src/lib/") || target.startsWith("src/verify/")
          : !target.startsWith("durable-objects/") || /\/contract$/.test(target) || file === "src/index.ts";
    if (!allowed) problems.push(`${file}: imports ${relative(root, join(root, target))} (${from} code may not)`);
  }
}
if (problems.length) {
  console.log(problems.join("\n"));
  process.exit(1);
}
