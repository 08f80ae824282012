// The browser playground in headless Chromium: built, served cross-origin isolated, the seed's
// sentence typed in, the referent read from the page; the tiny LM panel's streamed continuation
// and its heatmaps. The screenshots are kept in test-results/.
import { mkdirSync, readFileSync } from "node:fs";
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
    await page.click("#form button");
    await expect.poll(() => page.textContent("#answer")).toBe('"it" refers to: mat');
    expect(await page.textContent("#status")).toMatch(/ms · (baseline|relaxed) SIMD · 2 threads/);
    expect(await page.locator("#heatmaps svg rect").count()).toBeGreaterThan(8 * 100);
    await page.hover("#words span[data-i='1']");
    expect(await page.locator("#rows > div").count()).toBe(8);
    mkdirSync(new URL("../test-results", import.meta.url), { recursive: true });
    await page.screenshot({ path: new URL("../test-results/playground.png", import.meta.url).pathname, fullPage: true });
    await page.fill("#sentence", "The cat sat on the mat because it was tired");
    await page.click("#form button");
    await expect.poll(() => page.textContent("#answer")).toBe('"it" refers to: cat');
    await page.fill("#sentence", "The cat sat on the zebra because it was tired");
    await page.click("#form button");
    await expect.poll(() => page.textContent("#answer")).toMatch(/unknown words: zebra/);
    expect(errors).toEqual([]);
  } finally {
    await browser.close();
    await server.close();
  }
});

test("the tiny LM panel streams the greedy continuation a character a frame, its heads' attention redrawn at each", async () => {
  const expected = JSON.parse(readFileSync(new URL("../examples/tiny-lm/expected.json", import.meta.url), "utf8")) as {
    prompt: string;
    greedy80: string;
  };
  const N = expected.greedy80.length - expected.prompt.length;
  expect(N).toBe(80);
  const dir: string = await buildPlayground(new URL("../build/playground-test", import.meta.url).pathname);
  const server = await serve(dir);
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1300, height: 1400 } });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${server.url}/coi/index.html`);
    await page.waitForSelector("body[data-ready=true]", { timeout: 60_000 });
    expect(await page.getAttribute("#lm", "data-ready")).toBe("true");
    expect(await page.textContent("#lm-status")).toMatch(/^3 layers · 4 heads \(2 key\/value heads\)/);
    await page.fill("#lm-prompt", expected.prompt);
    await page.fill("#lm-tokens", String(N));
    // what each painted frame shows: the characters written so far
    await page.evaluate((n) => {
      const frames: number[] = [];
      (window as unknown as { frames_: number[] }).frames_ = frames;
      const tick = () => {
        const len = document.getElementById("lm-written")!.textContent!.length;
        frames.push(len);
        if (len < n) requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    }, N);
    await page.click("#lm-generate");
    await page.waitForSelector("#lm-output[data-done=true]", { timeout: 60_000 });
    // the streamed text is PyTorch's greedy continuation
    expect(`${await page.textContent("#lm-prompt-text")}${await page.textContent("#lm-written")}`).toBe(expected.greedy80);
    // streamed: the frames painted showed the text growing a character at a time
    const frames = await page.evaluate(() => (window as unknown as { frames_: number[] }).frames_);
    expect(new Set(frames).size, `distinct lengths painted: ${[...new Set(frames)].join(",")}`).toBeGreaterThanOrEqual(N / 2);
    // the heatmaps were redrawn at every character, for each of the 4 heads
    expect(Number(await page.getAttribute("#lm-heads", "data-updates"))).toBeGreaterThanOrEqual(N);
    const heads = await page.evaluate(() =>
      Array.from({ length: 4 }, (_, h) => {
        const strip = Array.from(document.querySelectorAll(`#lm-strip-${h} span[title]`));
        const canvas = document.getElementById(`lm-map-${h}`) as HTMLCanvasElement;
        const px = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        let rows = 0;
        for (let y = 0; y < canvas.height; y += 4) {
          let row = 0;
          for (let x = 0; x < canvas.width; x++) if (px[4 * (y * canvas.width + x) + 3] > 0) row++;
          if (row) rows++;
          painted += row;
        }
        return { keys: strip.length, percent: strip.reduce((s, e) => s + Number.parseFloat(e.getAttribute("title")!), 0), rows, painted };
      }),
    );
    for (const [h, head] of heads.entries()) {
      // the newest character's row: every character before it, percentages summing to 100
      expect(head.keys, `head ${h + 1}`).toBe(expected.greedy80.length - 1);
      expect(Math.abs(head.percent - 100), `head ${h + 1}: ${head.percent}%`).toBeLessThan(2);
      // a row of the heatmap per character written
      expect(head.rows, `head ${h + 1}`).toBe(N);
    }
    expect(await page.textContent("#lm-query")).toContain("layer 3");
    mkdirSync(new URL("../test-results", import.meta.url), { recursive: true });
    await page.locator("#lm").screenshot({ path: new URL("../test-results/playground-tiny-lm.png", import.meta.url).pathname });
    // another layer redraws the heatmaps from the steps kept
    await page.selectOption("#lm-layer", "0");
    await expect.poll(() => page.textContent("#lm-query")).toContain("layer 1");
    expect(errors).toEqual([]);
  } finally {
    await browser.close();
    await server.close();
  }
});
