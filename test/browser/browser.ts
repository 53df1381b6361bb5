import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import AxeBuilder from "@axe-core/playwright";
import { type Browser, type BrowserContext, type BrowserContextOptions, chromium, type Page } from "playwright-core";
import { expect } from "vitest";
import { BROWSER, NO_BROWSER } from "./find-browser";

export { BROWSER, NO_BROWSER };

const root = join(import.meta.dirname, "..", "..");
/** Every page's screenshot, each run (git-ignored). */
export const ARTIFACTS = join(root, "test-artifacts", "screenshots");
/** The documentation's screenshots (docs/screenshots), refreshed by `npm run screenshots` (UPDATE_SCREENSHOTS=1). */
const DOCS = join(root, "docs", "screenshots");

/** No background traffic: a closed network makes Chromium retry its lookups. */
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

export async function launchBrowser(): Promise<Browser> {
  if (BROWSER.kind === "none") throw new Error(NO_BROWSER!);
  if (BROWSER.kind === "path" && !existsSync(BROWSER.path)) throw new Error(`CHROMIUM_PATH is ${BROWSER.path}, which does not exist.`);
  // The bundled build unpacks itself into the temp directory on first use (about 2 s), then reuses it.
  const executablePath = BROWSER.kind === "path" ? BROWSER.path : await (await import("@sparticuz/chromium")).default.executablePath();
  return chromium.launch({ executablePath, headless: true, args: BROWSER.kind === "bundled" ? [...FLAGS, "--no-zygote"] : FLAGS });
}

export interface Tab {
  context: BrowserContext;
  page: Page;
  /** Console errors and uncaught exceptions: every test expects none. */
  errors: string[];
}

/** A fresh context (its own cookies) and page, recording console errors. */
export async function openTab(browser: Browser, options: BrowserContextOptions = {}): Promise<Tab> {
  // A locale of its own: a browser started in a POSIX locale reports navigator.language "en-US@posix",
  // which Intl refuses as a language tag (the page script formats times with it).
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "en-US", ...options });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`${page.url()}: ${message.text()}`);
  });
  page.on("pageerror", (error) => errors.push(`${page.url()}: ${error.message}`));
  return { context, page, errors };
}

/**
 * The checks every page gets: no serious or critical axe-core violation, no console error, no
 * sideways scrolling at 375 px; and its screenshot (wide and narrow) as a test artifact.
 */
export async function checkPage(tab: Tab, name: string): Promise<void> {
  const { page } = tab;
  await page.waitForFunction(() => document.documentElement.dataset.ready === "1");
  const results = await new AxeBuilder({ page }).analyze();
  const serious = results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  expect(serious, `axe-core on ${name}`).toEqual([]);
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  if (process.env.UPDATE_SCREENSHOTS) {
    mkdirSync(DOCS, { recursive: true });
    copyFileSync(file, join(DOCS, `${name}.png`));
  }
  const viewport = page.viewportSize();
  await page.setViewportSize({ width: 375, height: 800 });
  // Let charts and layout react to the new width.
  await page.waitForTimeout(200);
  await page.screenshot({ path: join(ARTIFACTS, `${name}-375.png`), fullPage: true });
  const wide = await page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    if (document.documentElement.scrollWidth <= width) return [];
    return [...document.querySelectorAll("body *")]
      .filter((el) => el.getBoundingClientRect().right > width + 0.5 && !el.closest(".table-wrap"))
      .map((el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ""}.${[...el.classList].join(".")} right=${Math.round(el.getBoundingClientRect().right)}`)
      .slice(0, 10);
  });
  expect(wide, `${name} scrolls sideways at 375 px`).toEqual([]);
  if (viewport) await page.setViewportSize(viewport);
  expect(tab.errors, `console errors on ${name}`).toEqual([]);
}

/** Waits until the element's text is exactly `text` (the live balance, say) without reloading. */
export async function waitForText(page: Page, selector: string, text: string, timeout = 10_000): Promise<void> {
  await page
    .waitForFunction(([s, t]) => document.querySelector(s!)?.textContent?.trim() === t, [selector, text] as const, { timeout })
    .catch(async (error) => {
      const actual = await page
        .locator(selector)
        .first()
        .textContent()
        .catch(() => null);
      throw new Error(`${selector} never showed ${JSON.stringify(text)} (last: ${JSON.stringify(actual)}): ${error}`);
    });
}

/** A page that is meant to answer with an error status logs it to the console: take exactly that line. */
export function expectLoadError(tab: Tab, status: number): void {
  const index = tab.errors.findIndex((e) => e.includes(`Failed to load resource: the server responded with a status of ${status}`));
  expect(index, `a ${status} page load in ${JSON.stringify(tab.errors)}`).toBeGreaterThanOrEqual(0);
  tab.errors.splice(index, 1);
}
