// Every ```js / ```ts block of README.md and docs/API.md, run as written against the built package
// (`wasm-attention` resolves to this repository's package.json exports, so dist/), so that none
// can rot. Node runs each as an ES module in a folder holding the files the docs read:
//   transformer.safetensors   an nn.Transformer(d_model=256, nhead=8, dim_feedforward=1024,
//                             activation="gelu", 4 + 4 layers) state dict, random weights
//   bert/config.json, bert/model.safetensors    a tiny BERT (test/fixtures/encoders)
//   llama/config.json, llama/model.safetensors  a tiny Llama (test/fixtures/decoders)
// A block preceded by `<!-- docs-test: browser -->` runs in Chromium instead, as a module script of
// a page in that folder whose import map points `wasm-attention` and its subpaths at dist/. A
// ```ts block is stripped of its types by esbuild first.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { transformSync } from "esbuild";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import * as lib from "../src/index.js";
import { CHROMIUM_ARGS } from "./support/serve.js";

const root = fileURLToPath(new URL("..", import.meta.url));

interface Block {
  file: string;
  line: number;
  lang: string;
  code: string;
  browser: boolean;
}

/** The runnable blocks of a markdown file. */
function blocks(file: string): Block[] {
  const text = readFileSync(join(root, file), "utf8");
  const out: Block[] = [];
  for (const m of text.matchAll(/(<!--\s*docs-test:\s*([\w ]+?)\s*-->\s*\n)?```(js|javascript|mjs|ts|typescript)\n([\s\S]*?)```/g)) {
    out.push({
      file,
      line: text.slice(0, m.index).split("\n").length + (m[1] ? 1 : 0),
      lang: m[3]!,
      code: m[4]!,
      browser: (m[2] ?? "").split(" ").includes("browser"),
    });
  }
  return out;
}

let dir: string;
let browser: Browser | null = null;
let server: { url: string; close(): Promise<void> } | null = null;

// a safetensors file of float32 tensors
function safetensors(tensors: Record<string, { shape: readonly number[]; data: Float32Array }>): Uint8Array {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(new TextEncoder().encode(json), 8);
  let at = 8 + json.length;
  for (const t of Object.values(tensors)) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "wasm-attention-docs-"));
  mkdirSync(join(dir, "node_modules"));
  symlinkSync(root, join(dir, "node_modules/wasm-attention"));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "docs", private: true, type: "module" }));
  // the nn.Transformer the docs load: keys and shapes from the modules themselves
  await lib.init({ simd: "baseline" });
  const layer = { dModel: 256, nhead: 8, dimFeedforward: 1024, activation: "gelu" as const };
  let seed = 1;
  const random = (n: number) =>
    Float32Array.from({ length: n }, () => {
      seed = (seed * 16807) % 2147483647;
      return (seed / 2147483647 - 0.5) * 0.1;
    });
  const tensors: Record<string, { shape: readonly number[]; data: Float32Array }> = {};
  for (const [prefix, stack] of [
    ["encoder.", new lib.TransformerEncoder({ layer, numLayers: 4, norm: true })],
    ["decoder.", new lib.TransformerDecoder({ layer, numLayers: 4, norm: true })],
  ] as const) {
    for (const p of stack.params()) tensors[prefix + p.key] = { shape: p.shape, data: random(p.shape.reduce((a, b) => a * b, 1)) };
    stack.dispose();
  }
  writeFileSync(join(dir, "transformer.safetensors"), safetensors(tensors));
  for (const [to, from] of [
    ["bert", "encoders/bert-f32"],
    ["llama", "decoders/llama-tied"],
  ]) {
    mkdirSync(join(dir, to));
    copyFileSync(join(root, `test/fixtures/${from}.config.json`), join(dir, to, "config.json"));
    copyFileSync(join(root, `test/fixtures/${from}.safetensors`), join(dir, to, "model.safetensors"));
  }
}, 120_000);
afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function source(block: Block): string {
  return block.lang.startsWith("t") ? transformSync(block.code, { loader: "ts", format: "esm" }).code : block.code;
}

function runNode(block: Block, name: string): void {
  writeFileSync(join(dir, name), source(block));
  try {
    execFileSync(process.execPath, [name], { cwd: dir, encoding: "utf8", timeout: 120_000, stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    throw new Error(`${block.file}:${block.line} fails in Node:\n${err.stderr || err.stdout || String(e)}`);
  }
}

async function runBrowser(block: Block, name: string): Promise<void> {
  if (!browser) {
    const types: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json" };
    const http = createServer((req, res) => {
      const file = normalize(join(dir, new URL(req.url ?? "/", "http://x").pathname));
      try {
        if (!file.startsWith(dir)) throw new Error("outside");
        const body = readFileSync(file);
        res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" }).end(body);
      } catch {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((ok) => http.listen(0, "127.0.0.1", ok));
    const { port } = http.address() as { port: number };
    server = { url: `http://127.0.0.1:${port}`, close: () => new Promise((ok) => http.close(() => ok())) };
    browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
  }
  writeFileSync(join(dir, name), source(block));
  const imports = Object.fromEntries(
    ["", "/core", "/worker"].map((sub) => [`wasm-attention${sub}`, `/node_modules/wasm-attention/dist/${sub ? sub.slice(1) : "index"}.js`]),
  );
  writeFileSync(
    join(dir, `${name}.html`),
    `<!doctype html><script type="importmap">${JSON.stringify({ imports })}</script>
     <script type="module">import("./${name}").then(() => { window.result = { ok: true }; }, (e) => { window.result = { error: String(e && e.stack || e) }; });</script>`,
  );
  const page = await browser.newPage();
  try {
    await page.goto(`${server!.url}/${name}.html`);
    await page.waitForFunction(() => (window as unknown as { result?: unknown }).result, undefined, { timeout: 60_000 });
    const result = await page.evaluate(() => (window as unknown as { result: { ok?: boolean; error?: string } }).result);
    if (!result.ok) throw new Error(`${block.file}:${block.line} fails in Chromium:\n${result.error}`);
  } finally {
    await page.close();
  }
}

describe("every code block of the docs runs as written", () => {
  for (const file of ["README.md", "docs/API.md"]) {
    const found = blocks(file);
    test(`${file} has code blocks`, () => expect(found.length).toBeGreaterThan(0));
    found.forEach((block, i) => {
      const name = `${file.replace(/\W+/g, "-")}-${i + 1}.mjs`;
      test(`${file}:${block.line}${block.browser ? " (Chromium)" : ""}`, async () => {
        if (block.browser) await runBrowser(block, name);
        else runNode(block, name);
      });
    });
  }
});
