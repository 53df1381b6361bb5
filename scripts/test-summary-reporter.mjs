// A vitest reporter for `npm test`: one line per project and one summary line, written to the file
// named by PAYG_TEST_SUMMARY. scripts/test.mjs prints that file alone when the run is green, and
// everything vitest printed (the dot reporter's failure report included) when it is not.
import { writeFileSync } from "node:fs";

export default class TestSummaryReporter {
  onTestRunEnd(testModules, unhandledErrors) {
    const projects = new Map();
    const total = { files: 0, passed: 0, failed: 0, skipped: 0 };
    for (const module of testModules) {
      const name = module.project.name || "default";
      const p = projects.get(name) ?? { files: 0, failedFiles: 0, passed: 0, failed: 0, skipped: 0, ms: 0 };
      p.files++;
      if (module.state() === "failed") p.failedFiles++;
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") p.passed++;
        else if (state === "failed") p.failed++;
        else p.skipped++;
      }
      p.ms += module.diagnostic().duration;
      projects.set(name, p);
    }
    const lines = [];
    for (const [name, p] of projects) {
      const mark = p.failedFiles || p.failed ? "✗" : "✓";
      const skipped = p.skipped ? `, ${p.skipped} skipped` : "";
      lines.push(`${mark} vitest ${name}: ${p.files} files, ${p.passed} tests passed${p.failed ? `, ${p.failed} failed` : ""}${skipped} (${(p.ms / 1000).toFixed(0)} s in files)`);
      total.files += p.files;
      total.passed += p.passed;
      total.failed += p.failed;
      total.skipped += p.skipped;
    }
    const errors = unhandledErrors.length ? `, ${unhandledErrors.length} unhandled errors` : "";
    lines.push(
      `${total.failed || unhandledErrors.length ? "✗" : "✓"} ${total.files} test files, ${total.passed} tests passed${total.failed ? `, ${total.failed} failed` : ""}${total.skipped ? `, ${total.skipped} skipped` : ""}${errors}`,
    );
    if (process.env.PAYG_TEST_SUMMARY) writeFileSync(process.env.PAYG_TEST_SUMMARY, `${lines.join("\n")}\n`);
  }
}
