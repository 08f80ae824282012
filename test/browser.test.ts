// The built package in headless Chromium (Debian's, installed by .ci/run): the baseline build gives
// Node's bits, the relaxed build is close, threads run in Web Workers on a cross-origin isolated
// page with the same bits, and without isolation the library falls back to one thread.
import { execFileSync } from "node:child_process";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CHROMIUM_ARGS, serve } from "./support/serve.js";

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
let server: Awaited<ReturnType<typeof serve>>;
let browser: Browser;
let node: { bits: string };

beforeAll(async () => {
  node = JSON.parse(execFileSync(process.execPath, ["test/support/cli-case.mjs"], { cwd: root, encoding: "utf8" }));
  server = await serve(root);
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
});

async function runPage(mode: "coi" | "plain", query: string) {
  const page = await browser.newPage();
  const warnings: string[] = [];
  page.on("console", (m) => m.type() === "warning" && warnings.push(m.text()));
  await page.goto(`${server.url}/${mode}/test/support/browser.html?${query}`);
  await page.waitForFunction(() => (window as unknown as { result?: unknown }).result, undefined, { timeout: 60_000 });
  const result = await page.evaluate(
    () => (window as unknown as { result: { error?: string; info: { simd: string; threads: number }; isolated: boolean; bits: string } }).result,
  );
  await page.close();
  return { ...result, warnings };
}

const floats = (hex: string) => new Float32Array(Uint32Array.from(hex.split(","), (h) => parseInt(h, 16)).buffer);

describe("Chromium", () => {
  test("baseline SIMD: Node's bits", async () => {
    const r = await runPage("plain", "simd=baseline");
    expect(r.error).toBeUndefined();
    expect(r.info).toEqual({ simd: "baseline", threads: 1 });
    expect(r.bits).toBe(node.bits);
  });

  test("relaxed SIMD: loads and stays within 1e-5 of the baseline", async () => {
    const r = await runPage("plain", "simd=relaxed");
    expect(r.info.simd).toBe("relaxed");
    const [a, b] = [floats(r.bits), floats(node.bits)];
    let d = 0;
    let m = 0;
    a.forEach((x, i) => {
      d = Math.max(d, Math.abs(x - b[i]));
      m = Math.max(m, Math.abs(b[i]));
    });
    expect(d / m).toBeLessThan(1e-5);
  });

  test("threads in Web Workers on a cross-origin isolated page: the same bits", async () => {
    const r = await runPage("coi", "simd=baseline&threads=2");
    expect(r.error).toBeUndefined();
    expect(r.isolated).toBe(true);
    expect(r.info).toEqual({ simd: "baseline", threads: 2 });
    expect(r.bits).toBe(node.bits);
  });

  test("without COOP/COEP: one warning, one thread, the same bits", async () => {
    const r = await runPage("plain", "simd=baseline&threads=2");
    expect(r.isolated).toBe(false);
    expect(r.info.threads).toBe(1);
    expect(r.warnings.join("\n")).toMatch(/running on one thread instead of 2/);
    expect(r.bits).toBe(node.bits);
  });
});
