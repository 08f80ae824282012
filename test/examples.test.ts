// Every example runs: Node, Deno, and the Cloudflare Worker bundled as wrangler would (the
// package's "workerd" condition) and served by workerd through miniflare.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { expect, test } from "vitest";

const root = new URL("..", import.meta.url);
const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { cwd: root, encoding: "utf8", timeout: 120_000 });

test("examples/node.mjs", () => {
  expect(run(process.execPath, ["examples/node.mjs"])).toMatch(/output \[2,5,16\], weights \[2,4,5,5\]\nquery 4 of batch 0, head 0 attends: (\d\.\d{3} ){4}\d\.\d{3}/);
});

test("examples/embeddings.mjs: sentence embeddings of a Hugging Face BERT checkpoint", () => {
  const out = run(process.execPath, ["examples/embeddings.mjs"]);
  expect(out).toMatch(/^embeddings \[4,36\] from last_hidden_state \[4,8,36\]/);
  // a symmetric 4 x 4 matrix of cosines with ones on the diagonal
  const rows = out.split("\n").filter((l) => /^\s+-?\d\.\d{3}/.test(l)).map((l) => l.trim().split(/\s+/).slice(0, 4).map(Number));
  expect(rows.length).toBe(4);
  rows.forEach((r, i) => r.forEach((c, j) => expect(c).toBeCloseTo(i === j ? 1 : rows[j][i], 3)));
});

test("examples/deno.mjs", () => {
  expect(run("npx", ["--no-install", "deno", "run", "--allow-read", "examples/deno.mjs"])).toMatch(/^Deno 2\.\d+\.\d+: (baseline|relaxed) SIMD, output \[2,4,8\], first row/);
});

test("examples/demo.mjs (npm start)", () => {
  expect(run(process.execPath, ["examples/demo.mjs", "The dog slept on the rug because it was soft", "--svg", "test-results/example.svg"])).toMatch(/"it" refers to: RUG/);
});

test("examples/cloudflare-worker, bundled with the workerd condition", async () => {
  const bundle = await build({
    entryPoints: [new URL("examples/cloudflare-worker/src/index.mjs", root).pathname],
    bundle: true,
    format: "esm",
    write: false,
    conditions: ["workerd", "worker", "browser"],
    external: ["*.wasm"],
  });
  const code = bundle.outputFiles[0].text;
  expect(code).toContain('from "./kernels.wasm"'); // the workerd entry, not the embedded bytes
  const mf = new Miniflare({
    modules: [
      { type: "ESModule", path: "index.mjs", contents: code },
      { type: "CompiledWasm", path: "kernels.wasm", contents: readFileSync(new URL("dist/kernels.wasm", root)) },
      { type: "CompiledWasm", path: "kernels-relaxed.wasm", contents: readFileSync(new URL("dist/kernels-relaxed.wasm", root)) },
    ],
    compatibilityDate: "2026-07-01",
  });
  try {
    const body = (await (await mf.dispatchFetch("http://localhost/?words=5")).json()) as { shape: number[]; lastRowWeights: number[] };
    expect(body.shape).toEqual([1, 5, 8]);
    expect(body.lastRowWeights.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
  } finally {
    await mf.dispose();
  }
});
