// The packed package in pages, as users ship it, in headless Chromium (Debian's):
// - built by esbuild (one file, and with code splitting) and by Vite (also a page using createWorker), without configuration: the
//   build loads, computes Node's bits with the baseline build, and `init()` loads the relaxed one;
// - the off-main-thread API (wasm-attention/worker) from dist/ through an import map: the same
//   bits as the page, the page keeps painting (requestAnimationFrame) during a long forward,
//   cancellation, transfer and terminate;
// - a page whose Content-Security-Policy lacks 'wasm-unsafe-eval': an InitError that names it.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { build as esbuild } from "esbuild";
import { type Browser, chromium } from "playwright-core";
import { build as vite } from "vite";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CHROMIUM_ARGS } from "./support/serve.js";

const root = fileURLToPath(new URL("..", import.meta.url));
let dir: string;
let browser: Browser;
let server: { url: string; close(): Promise<void> };
let node: { bits: string };

// /<mode>/<path> from dir: plain; csp (script-src 'self', no 'wasm-unsafe-eval')
function serve(base: string): Promise<typeof server> {
  const types: Record<string, string> = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".json": "application/json",
  };
  const http = createServer((req, res) => {
    const [, mode, ...rest] = new URL(req.url ?? "/", "http://x").pathname.split("/");
    const file = normalize(join(base, ...rest));
    let body: Buffer;
    try {
      if (!file.startsWith(base)) throw new Error("outside");
      body = readFileSync(file);
    } catch {
      res.writeHead(404).end();
      return;
    }
    const headers: Record<string, string> = { "content-type": types[extname(file)] ?? "application/octet-stream" };
    if (mode === "csp") headers["content-security-policy"] = "script-src 'self'";
    res.writeHead(200, headers).end(body);
  });
  return new Promise((ok) =>
    http.listen(0, "127.0.0.1", () => {
      const { port } = http.address() as { port: number };
      ok({ url: `http://127.0.0.1:${port}`, close: () => new Promise((done) => http.close(() => done())) });
    }),
  );
}

const PAGE = (script: string, importMap = "") => `<!doctype html><meta charset="utf-8">${importMap}<script type="module" src="${script}"></script>`;
const APP = `import * as lib from "wasm-attention";
import { bits, fixedCase } from "./fixed-case.mjs";
const simd = new URLSearchParams(location.search).get("simd");
try {
  await lib.init(simd ? { simd } : undefined);
  window.result = { info: lib.runtimeInfo(), bits: bits(fixedCase(lib)) };
} catch (e) {
  window.result = { error: e.name + ": " + e.message };
}
`;

beforeAll(async () => {
  node = JSON.parse(execFileSync(process.execPath, ["test/support/cli-case.mjs"], { cwd: root, encoding: "utf8" }));
  dir = mkdtempSync(join(tmpdir(), "wasm-attention-pages-"));
  execFileSync("npm", ["pack", "--silent", "--pack-destination", dir], { cwd: root, encoding: "utf8", timeout: 120_000 });
  const tarball = readdirSync(dir).find((f) => f.endsWith(".tgz"))!;
  mkdirSync(join(dir, "node_modules/wasm-attention"), { recursive: true });
  execFileSync("tar", ["-xzf", join(dir, tarball), "-C", join(dir, "node_modules/wasm-attention"), "--strip-components=1"]);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "pages", private: true, type: "module" }));
  mkdirSync(join(dir, "src"));
  copyFileSync(join(root, "test/support/fixed-case.mjs"), join(dir, "src/fixed-case.mjs"));
  writeFileSync(join(dir, "src/app.js"), APP);
  // esbuild, one file: the builds init() may load are inlined (a dynamic import without splitting)
  mkdirSync(join(dir, "esbuild-single"));
  await esbuild({
    entryPoints: [join(dir, "src/app.js")],
    bundle: true,
    format: "esm",
    outdir: join(dir, "esbuild-single"),
    absWorkingDir: dir,
    logLevel: "silent",
  });
  writeFileSync(join(dir, "esbuild-single/index.html"), PAGE("./app.js"));
  // esbuild with code splitting: each build a chunk
  mkdirSync(join(dir, "esbuild-split"));
  await esbuild({
    entryPoints: [join(dir, "src/app.js")],
    bundle: true,
    format: "esm",
    splitting: true,
    outdir: join(dir, "esbuild-split"),
    absWorkingDir: dir,
    logLevel: "silent",
  });
  writeFileSync(join(dir, "esbuild-split/index.html"), PAGE("./app.js"));
  // Vite (rolldown), defaults: an index.html whose module script is the app
  writeFileSync(join(dir, "index.html"), PAGE("/src/app.js"));
  await vite({ root: dir, base: "./", logLevel: "silent", build: { outDir: join(dir, "vite"), emptyOutDir: true } });
  // Vite with the worker API: its `new Worker(new URL("./worker-entry.js", import.meta.url))` is bundled as a worker
  mkdirSync(join(dir, "vite-worker/src"), { recursive: true });
  writeFileSync(join(dir, "vite-worker/index.html"), PAGE("/src/app.js"));
  writeFileSync(
    join(dir, "vite-worker/src/app.js"),
    `import { createWorker } from "wasm-attention/worker";
    import { init, scaledDotProductAttention, tensor } from "wasm-attention";
    try {
      await init({ simd: "baseline" });
      const lib = await createWorker({ simd: "baseline" });
      const q = tensor(Float32Array.from({ length: 2 * 5 * 8 }, (_, i) => Math.sin(i)), [2, 5, 8]);
      const there = await lib.scaledDotProductAttention(q, q, q, { isCausal: true });
      const here = scaledDotProductAttention(q, q, q, { isCausal: true });
      window.result = { info: lib.info, same: there.data.every((x, i) => Object.is(x, here.data[i])) && there.data.length === here.data.length };
      lib.terminate();
    } catch (e) {
      window.result = { error: e.name + ": " + e.message };
    }`,
  );
  await vite({ root: join(dir, "vite-worker"), base: "./", logLevel: "silent", build: { outDir: join(dir, "vite-worker/out"), emptyOutDir: true } });
  // the worker API unbundled: dist/ as published, found through an import map
  const map = `<script type="importmap">{ "imports": { "wasm-attention": "../node_modules/wasm-attention/dist/index.js", "wasm-attention/worker": "../node_modules/wasm-attention/dist/worker.js" } }</script>`;
  writeFileSync(join(dir, "src/worker.html"), PAGE("./worker-app.js", map));
  writeFileSync(join(dir, "src/worker-app.js"), WORKER_APP);
  server = await serve(dir);
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
}, 300_000);
afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function result(path: string, timeout = 60_000): Promise<Record<string, unknown>> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  try {
    await page.goto(`${server.url}/${path}`);
    await page
      .waitForFunction(() => (window as unknown as { result?: unknown }).result, undefined, { timeout })
      .catch(() => {
        throw new Error(`no result from ${path}: ${errors.join("; ")}`);
      });
    return await page.evaluate(() => (window as unknown as { result: Record<string, unknown> }).result);
  } finally {
    await page.close();
  }
}

describe("a page built with a bundler, no configuration", () => {
  for (const out of ["esbuild-single", "esbuild-split", "vite"]) {
    test(`${out}: the baseline build gives Node's bits; init() loads the relaxed build`, async () => {
      const baseline = await result(`plain/${out}/index.html?simd=baseline`);
      expect(baseline.error).toBeUndefined();
      expect(baseline.info).toEqual({ simd: "baseline", threads: 1 });
      expect(baseline.bits).toBe(node.bits);
      const auto = await result(`plain/${out}/index.html`);
      expect(auto.error).toBeUndefined();
      expect(auto.info).toEqual({ simd: "relaxed", threads: 1 });
    });
  }

  test("code splitting makes each kernel build a chunk of its own that only the init() needing it loads", () => {
    for (const out of ["esbuild-split", "vite"]) {
      const files = readdirSync(join(dir, out), { recursive: true })
        .map(String)
        .filter((f) => f.endsWith(".js"));
      const kernelChunks = files.filter(
        (f) =>
          readFileSync(join(dir, out, f), "utf8").length > 20_000 &&
          !/scaledDotProductAttention|softmax/.test(readFileSync(join(dir, out, f), "utf8")),
      );
      expect(kernelChunks.length, `${out}: ${files.join(", ")}`).toBe(4);
    }
  });
});

describe("createWorker in a Vite build", () => {
  test("Vite bundles the worker's script without configuration; the worker computes the page's bits", async () => {
    const r = await result("plain/vite-worker/out/index.html");
    expect(r.error).toBeUndefined();
    expect(r.info).toEqual({ simd: "baseline", threads: 1 });
    expect(r.same).toBe(true);
  });
});

describe("a strict Content-Security-Policy", () => {
  test("without 'wasm-unsafe-eval' in script-src: an InitError that names the directive", async () => {
    // (a bundled page: an import map is an inline script, which this policy refuses too)
    const r = await result("csp/esbuild-single/index.html", 20_000);
    expect(r.error).toMatch(/^InitError: .*Content-Security-Policy.*'wasm-unsafe-eval'/);
  });
});

const WORKER_APP = `import { createWorker, StateError } from "wasm-attention/worker";
import * as local from "wasm-attention";
const out = {};
const same = (a, b) => a.length === b.length && a.every((x, i) => Object.is(x, b[i]));
const rand = (n, seed) => { const a = new Float32Array(n); let s = seed; for (let i = 0; i < n; i++) { s = (s * 1103515245 + 12345) % 2147483648; a[i] = (s / 2147483648 - 0.5) * 0.2; } return a; };
try {
  await local.init({ simd: "baseline" });
  const lib = await createWorker({ simd: "baseline" });
  out.info = lib.info;
  // the same bits as the page, for a function and for a module with its state dict
  const q = local.tensor(rand(2 * 3 * 17 * 16, 1), [2, 3, 17, 16]);
  out.sdpa = same(Array.from((await lib.scaledDotProductAttention(q, q, q, { isCausal: true })).data), Array.from(local.scaledDotProductAttention(q, q, q, { isCausal: true }).data));
  const opts = { dModel: 32, nhead: 4, dimFeedforward: 64 };
  const mine = new local.TransformerEncoderLayer(opts);
  const dict = Object.fromEntries(mine.params().map((p, i) => [p.key, local.tensor(rand(p.shape.reduce((a, b) => a * b, 1), 7 + i), p.shape)]));
  mine.loadStateDict(dict);
  const remote = await (await lib.TransformerEncoderLayer(opts)).loadStateDict(dict);
  const x = local.tensor(rand(2 * 9 * 32, 3), [2, 9, 32]);
  const y = await remote.forward(x);
  out.layer = same(Array.from(y.data), Array.from(mine.forward(x).data)) && y.data instanceof Float32Array;
  // transfer: the input's buffer moves to the worker
  const moved = local.tensor(rand(2 * 9 * 32, 3), [2, 9, 32]);
  await remote.with({ transfer: true }).forward(moved);
  out.transferred = moved.data.byteLength === 0;
  // a BERT-sized layer: the page keeps painting while the worker computes
  const big = { dModel: 768, nhead: 12, dimFeedforward: 3072, activation: "gelu" };
  const bigLayer = await lib.TransformerEncoderLayer(big);
  const shapes = new local.TransformerEncoderLayer(big).params();
  await bigLayer.loadStateDict(Object.fromEntries(shapes.map((p, i) => [p.key, local.tensor(rand(p.shape.reduce((a, b) => a * b, 1), 100 + i), p.shape)])));
  const input = local.tensor(rand(2 * 384 * 768, 5), [2, 384, 768]);
  let frames = 0, longest = 0, last = performance.now(), ticking = true;
  const tick = (t) => { frames++; longest = Math.max(longest, t - last); last = t; if (ticking) requestAnimationFrame(tick); };
  requestAnimationFrame((t) => { last = t; requestAnimationFrame(tick); });
  const t0 = performance.now();
  const bigOut = await bigLayer.forward(input);
  out.forwardMs = performance.now() - t0;
  ticking = false;
  out.frames = frames; out.longestFrameGapMs = longest; out.bigShape = bigOut.shape;
  // cancellation: a waiting call never runs; the running one rejects at once
  const running = new AbortController(), waiting = new AbortController();
  const a = bigLayer.with({ signal: running.signal }).forward(input);
  const b = bigLayer.with({ signal: waiting.signal }).forward(input);
  waiting.abort();
  const t1 = performance.now();
  running.abort();
  const [ra, rb] = await Promise.allSettled([a, b]);
  out.abortMs = performance.now() - t1;
  out.aborted = [ra.status, ra.reason?.name, rb.status, rb.reason?.name];
  const after = await remote.forward(x); // the worker goes on (after the aborted forward finishes)
  out.afterAbort = same(Array.from(after.data), Array.from(y.data));
  await bigLayer.dispose();
  let stale = "";
  try { await bigLayer.forward(input); } catch (e) { stale = e.name; }
  out.afterDispose = stale;
  let bad = "";
  try { await lib.TransformerEncoderLayer({ dModel: 32, nhead: 5 }); } catch (e) { bad = e.name + (e instanceof local.ArgumentError ? " (instanceof)" : ""); }
  out.error = bad;
  const pending = remote.forward(x);
  lib.terminate();
  out.terminated = await pending.then(() => "resolved", (e) => e instanceof StateError ? "StateError" : String(e));
} catch (e) {
  out.failure = e.name + ": " + e.message + " " + e.stack;
}
window.result = out;
`;

describe("createWorker (wasm-attention/worker)", () => {
  test("the library in a Worker: the page's bits, transfer, a page that keeps painting, cancellation, errors, terminate", async () => {
    const r = await result("plain/src/worker.html", 120_000);
    console.log(
      `worker: a forward of ${Math.round(r.forwardMs as number)} ms, ${r.frames} frames painted meanwhile, longest gap ${Math.round(r.longestFrameGapMs as number)} ms; abort rejected in ${(r.abortMs as number).toFixed(1)} ms`,
    );
    expect(r.failure).toBeUndefined();
    expect(r.info).toEqual({ simd: "baseline", threads: 1 });
    expect(r.sdpa).toBe(true);
    expect(r.layer).toBe(true);
    expect(r.transferred).toBe(true);
    expect(r.bigShape).toEqual([2, 384, 768]);
    // the forward takes hundreds of milliseconds; frames keep coming (60 per second here when the
    // machine is idle; the bounds leave room for a loaded CI machine: a frozen page would show
    // one gap as long as the forward and no frame in it)
    const ms = r.forwardMs as number;
    expect(ms).toBeGreaterThan(150);
    expect(r.frames as number).toBeGreaterThan((ms / 1000) * 60 * 0.25);
    expect(r.longestFrameGapMs as number).toBeLessThan(Math.max(100, ms / 3));
    expect(r.aborted).toEqual(["rejected", "AbortError", "rejected", "AbortError"]);
    expect(r.abortMs as number).toBeLessThan(100); // at once, not after the forward
    expect(r.afterAbort).toBe(true);
    expect(r.afterDispose).toBe("StateError");
    expect(r.error).toBe("ArgumentError (instanceof)");
    expect(r.terminated).toBe("StateError");
  });
});
