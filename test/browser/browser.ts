import AxeBuilder from "@axe-core/playwright";
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from "playwright-core";
import { expect } from "vitest";

const root = join(import.meta.dirname, "..", "..");
/** Every page's screenshot, each run (git-ignored). */
export const ARTIFACTS = join(root, "test-artifacts", "screenshots");
/** The README's screenshots, refreshed by `npm run screenshots` (UPDATE_SCREENSHOTS=1). */
const DOCS = join(root, "docs", "screenshots");

/** Debian's chromium by default; CHROMIUM_PATH points elsewhere (any Chromium or Chrome build). */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`No Chromium at ${CHROMIUM_PATH}: apt-get install chromium (Debian), or set CHROMIUM_PATH to a Chromium or Chrome binary.`);
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    // No background traffic: the machine's network is closed and Chromium would retry lookups.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

export interface Tab {
  context: BrowserContext;
  page: Page;
  /** Console errors and uncaught exceptions: every test expects none. */
  errors: string[];
}

/** A fresh context (its own cookies) and page, recording console errors. */
export async function openTab(browser: Browser, options: BrowserContextOptions = {}): Promise<Tab> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
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
      .map((el) => `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}.${[...el.classList].join(".")} right=${Math.round(el.getBoundingClientRect().right)}`)
      .slice(0, 10);
  });
  expect(wide, `${name} scrolls sideways at 375 px`).toEqual([]);
  if (viewport) await page.setViewportSize(viewport);
  expect(tab.errors, `console errors on ${name}`).toEqual([]);
}

/** Waits until the element's text is exactly `text` (the live balance, say) without reloading. */
export async function waitForText(page: Page, selector: string, text: string, timeout = 10_000): Promise<void> {
  await page.waitForFunction(
    ([s, t]) => document.querySelector(s!)?.textContent?.trim() === t,
    [selector, text] as const,
    { timeout },
  ).catch(async (error) => {
    const actual = await page.locator(selector).first().textContent().catch(() => null);
    throw new Error(`${selector} never showed ${JSON.stringify(text)} (last: ${JSON.stringify(actual)}): ${error}`);
  });
}

/** A page that is meant to answer with an error status logs it to the console: take exactly that line. */
export function expectLoadError(tab: Tab, status: number): void {
  const index = tab.errors.findIndex((e) => e.includes(`Failed to load resource: the server responded with a status of ${status}`));
  expect(index, `a ${status} page load in ${JSON.stringify(tab.errors)}`).toBeGreaterThanOrEqual(0);
  tab.errors.splice(index, 1);
}
