import { existsSync } from "node:fs";
import { createRequire } from "node:module";

/** The Chromium builds looked for when CHROMIUM_PATH is not set: the usual Linux paths, then macOS's application bundles. */
const SYSTEM_BROWSERS = [
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
  "/usr/bin/google-chrome",
  "/usr/bin/google-chrome-stable",
  "/snap/bin/chromium",
  "/opt/google/chrome/chrome",
  "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
  "/Applications/Chromium.app/Contents/MacOS/Chromium",
];

/** Where the browser tests get their browser, decided once per run (see test/README.md). */
export type BrowserSource = { kind: "path"; path: string } | { kind: "bundled" } | { kind: "none"; reason: string };

function bundledAvailable(): boolean {
  try {
    createRequire(import.meta.url).resolve("@sparticuz/chromium");
    return process.platform === "linux" && (process.arch === "x64" || process.arch === "arm64");
  } catch {
    return false;
  }
}

/**
 * The first browser found: CHROMIUM_PATH; a system Chrome or Chromium; on Linux the headless
 * Chromium the `@sparticuz/chromium` dev dependency ships inside its npm package. PAYG_BROWSER=bundled
 * takes the bundled one whatever else is installed (CI does, so it never skips).
 */
export function findBrowser(env: NodeJS.ProcessEnv = process.env): BrowserSource {
  if (env.PAYG_BROWSER === "bundled") {
    return bundledAvailable() ? { kind: "bundled" } : { kind: "none", reason: "PAYG_BROWSER=bundled, but @sparticuz/chromium ships a browser only for Linux on x64 and arm64" };
  }
  if (env.CHROMIUM_PATH) return { kind: "path", path: env.CHROMIUM_PATH };
  const system = SYSTEM_BROWSERS.find((path) => existsSync(path));
  if (system) return { kind: "path", path: system };
  if (bundledAvailable()) return { kind: "bundled" };
  return { kind: "none", reason: `no Chrome or Chromium found (looked in ${SYSTEM_BROWSERS.join(", ")}) and no bundled one for ${process.platform}/${process.arch}` };
}

export const BROWSER = findBrowser();
/** Printed once when there is no browser: the browser tests are skipped, and how to run them. */
export const NO_BROWSER = BROWSER.kind === "none" ? `browser tests skipped: ${BROWSER.reason}. Set CHROMIUM_PATH to a Chrome or Chromium binary to run them.` : null;
