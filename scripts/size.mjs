// npm run size: what a user ships, gzipped (level 9). An app is bundled from dist/ the way a user's
// bundler would (esbuild, minified, code splitting on, so the kernel builds that dist/index.js
// loads with import() become chunks), then measured: its JavaScript plus the one kernel build
// that `await init()` loads by default: the baseline build in Node (no relaxed SIMD without a
// flag), the relaxed one in browsers, Deno, Bun. Budget: 40 KB for the first row, the default
// import of the README's first example.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const BUDGET = 40 * 1024;
const root = new URL("..", import.meta.url).pathname;
const gz = (bytes) => gzipSync(bytes, { level: 9 }).length;

// the app's JavaScript (every output but the kernel chunks), and each kernel chunk by build
async function app(source) {
  const result = await build({
    stdin: { contents: source, resolveDir: root, loader: "js" },
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    write: false,
    outdir: "/size",
    metafile: true,
    alias: {
      "wasm-attention": `${root}dist/index.js`,
      "wasm-attention/core": `${root}dist/core.js`,
      "wasm-attention/worker": `${root}dist/worker.js`,
    },
    external: ["./worker-entry.js"],
    logLevel: "silent",
  });
  let js = 0;
  const kernels = {};
  for (const out of result.outputFiles) {
    const meta = result.metafile.outputs[Object.keys(result.metafile.outputs).find((k) => resolve(process.cwd(), k) === out.path)];
    const kernel = Object.keys(meta.inputs)
      .map((i) => i.match(/embedded\/kernels(-[a-z-]+)?\.js$/))
      .find(Boolean);
    if (kernel) kernels[kernel[1] ? kernel[1].slice(1) : "baseline"] = gz(out.contents);
    else js += gz(out.contents);
  }
  return { js, kernels };
}

const first = await app(
  `import { init, scaledDotProductAttention, tensor } from "wasm-attention"; await init(); const q = tensor(new Float32Array(8), [2, 4]); console.log(scaledDotProductAttention(q, q, q));`,
);
const all = await app(`import * as lib from "wasm-attention"; await lib.init(); console.log(lib);`);
const core = await app(`import * as lib from "wasm-attention/core"; console.log(lib);`);
const worker = await app(`import { createWorker } from "wasm-attention/worker"; const lib = await createWorker(); console.log(lib);`);
const file = (f) => gz(readFileSync(new URL(`../dist/${f}`, import.meta.url)));

export const sizes = {
  "default import: init, scaledDotProductAttention, tensor + the kernel build init() loads (browser: relaxed)": first.js + first.kernels.relaxed,
  "the same in Node (baseline build)": first.js + first.kernels.baseline,
  "  of which JavaScript": first.js,
  "  of which the kernel build (relaxed / baseline)": [first.kernels.relaxed, first.kernels.baseline],
  "whole library (import *) + the kernel build init() loads (browser: relaxed)": all.js + all.kernels.relaxed,
  "wasm-attention/core (import *, no kernel build: bring your own)": core.js,
  "  + kernels.wasm fetched by the app (init(url))": core.js + file("kernels.wasm"),
  "wasm-attention/worker on the page (createWorker)": worker.js,
  "  the worker's script (dist/worker-entry.js as shipped, unminified) + its kernel build":
    file("worker-entry.js") + file("embedded/kernels-relaxed.js"),
  "dist/index.js as shipped (unminified, no kernel build inside)": file("index.js"),
  "each kernel build as dist/embedded loads it (gzip in base64), threads builds": [
    file("embedded/kernels-threads.js"),
    file("embedded/kernels-relaxed-threads.js"),
  ],
  "workerd entry + kernels.wasm + kernels-relaxed.wasm (as shipped)": file("workerd.js") + file("kernels.wasm") + file("kernels-relaxed.wasm"),
};

if (import.meta.url === `file://${process.argv[1]}`) {
  const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
  for (const [what, bytes] of Object.entries(sizes))
    console.log(`${(Array.isArray(bytes) ? bytes.map(kb).join(" / ") : kb(bytes)).padStart(16)}  ${what}`);
  const main = Math.max(first.js + first.kernels.relaxed, first.js + first.kernels.baseline);
  console.log(main <= BUDGET ? `default import within the ${BUDGET / 1024} KB budget` : `default import OVER the ${BUDGET / 1024} KB budget`);
  process.exit(main <= BUDGET ? 0 : 1);
}
