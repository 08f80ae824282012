// The browser playground in headless Chromium: built, served cross-origin isolated, the seed's
// sentence typed in, the referent read from the page; the screenshot is kept in test-results/.
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";
import { expect, test } from "vitest";
// @ts-expect-error: a plain .mjs script without declarations
import { buildPlayground } from "../scripts/playground.mjs";
import { CHROMIUM_ARGS, serve } from "./support/serve.js";

test("the playground resolves it to mat, then to cat, with heatmaps and the build shown", async () => {
  const dir: string = await buildPlayground(new URL("../build/playground-test", import.meta.url).pathname);
  const server = await serve(dir);
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1300, height: 1400 } });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${server.url}/coi/index.html`);
    await page.waitForSelector("body[data-ready=true]", { timeout: 60_000 });
    await page.fill("#sentence", "The cat sat on the mat because it was comfortable");
    await page.click("button");
    await expect.poll(() => page.textContent("#answer")).toBe('"it" refers to: mat');
    expect(await page.textContent("#status")).toMatch(/ms · (baseline|relaxed) SIMD · 2 threads/);
    expect(await page.locator("#heatmaps svg rect").count()).toBeGreaterThan(8 * 100);
    await page.hover("#words span[data-i='1']");
    expect(await page.locator("#rows > div").count()).toBe(8);
    mkdirSync(new URL("../test-results", import.meta.url), { recursive: true });
    await page.screenshot({ path: new URL("../test-results/playground.png", import.meta.url).pathname, fullPage: true });
    await page.fill("#sentence", "The cat sat on the mat because it was tired");
    await page.click("button");
    await expect.poll(() => page.textContent("#answer")).toBe('"it" refers to: cat');
    await page.fill("#sentence", "The cat sat on the zebra because it was tired");
    await page.click("button");
    await expect.poll(() => page.textContent("#answer")).toMatch(/unknown words: zebra/);
    expect(errors).toEqual([]);
  } finally {
    await browser.close();
    await server.close();
  }
});
