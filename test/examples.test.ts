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
  expect(run(process.execPath, ["examples/node.mjs"])).toMatch(
    /output \[2,5,16\], weights \[2,4,5,5\]\nquery 4 of batch 0, head 0 attends: (\d\.\d{3} ){4}\d\.\d{3}/,
  );
});

test("examples/embeddings.mjs: sentence embeddings of a Hugging Face BERT checkpoint", () => {
  const out = run(process.execPath, ["examples/embeddings.mjs"]);
  expect(out).toMatch(/^embeddings \[4,36\] from last_hidden_state \[4,8,36\]/);
  // a symmetric 4 x 4 matrix of cosines with ones on the diagonal
  const rows = out
    .split("\n")
    .filter((l) => /^\s+-?\d\.\d{3}/.test(l))
    .map((l) => l.trim().split(/\s+/).slice(0, 4).map(Number));
  expect(rows.length).toBe(4);
  rows.forEach((r, i) => r.forEach((c, j) => expect(c).toBeCloseTo(i === j ? 1 : rows[j][i], 3)));
});

test("examples/deno.mjs", () => {
  expect(run("npx", ["--no-install", "deno", "run", "--allow-read", "examples/deno.mjs"])).toMatch(
    /^Deno 2\.\d+\.\d+: (baseline|relaxed) SIMD, output \[2,4,8\], first row/,
  );
});

test("examples/demo.mjs (npm start)", () => {
  expect(run(process.execPath, ["examples/demo.mjs", "The dog slept on the rug because it was soft", "--svg", "test-results/example.svg"])).toMatch(
    /"it" refers to: RUG/,
  );
});

test("examples/tiny-lm: the trained tiny Llama continues its prompt as PyTorch does, a character at a time", () => {
  const expected = JSON.parse(readFileSync(new URL("examples/tiny-lm/expected.json", root), "utf8")) as { prompt: string; greedy80: string };
  const out = run(process.execPath, [
    "examples/tiny-lm/generate.mjs",
    expected.prompt,
    "--tokens",
    String(expected.greedy80.length - expected.prompt.length),
  ]);
  expect(out.split("\n\n[")[0]).toBe(expected.greedy80);
  expect(out).toMatch(/\[\d+ tokens in [\d.]+ s: \d+ tokens\/s\]/);
});

test("examples/cloudflare-worker, bundled with the workerd condition: attention, embeddings, a streamed LM", async () => {
  const bundle = await build({
    entryPoints: [new URL("examples/cloudflare-worker/src/index.mjs", root).pathname],
    bundle: true,
    format: "esm",
    write: false,
    conditions: ["workerd", "worker", "browser"],
    external: ["*.wasm", "*.safetensors"],
  });
  const code = bundle.outputFiles[0].text;
  expect(code).toContain('from "./kernels.wasm"'); // the workerd entry, not the embedded bytes
  // the bundle keeps the model files' import specifiers: give miniflare those modules at those paths
  const data = [...code.matchAll(/from "([^"]+\.safetensors)"/g)].map((m) => m[1]!);
  expect(data.length).toBe(2);
  const at = (spec: string) => new URL(spec, new URL("examples/cloudflare-worker/src/", root));
  const mf = new Miniflare({
    modulesRoot: new URL(".", root).pathname, // module names relative to the repository: the model files sit outside the Worker's folder
    modules: [
      { type: "ESModule", path: new URL("examples/cloudflare-worker/src/index.mjs", root).pathname, contents: code },
      {
        type: "CompiledWasm",
        path: new URL("examples/cloudflare-worker/src/kernels.wasm", root).pathname,
        contents: readFileSync(new URL("dist/kernels.wasm", root)),
      },
      {
        type: "CompiledWasm",
        path: new URL("examples/cloudflare-worker/src/kernels-relaxed.wasm", root).pathname,
        contents: readFileSync(new URL("dist/kernels-relaxed.wasm", root)),
      },
      ...data.map((spec) => ({ type: "Data" as const, path: at(spec).pathname, contents: readFileSync(at(spec)) })),
    ],
    compatibilityDate: "2026-07-01",
  });
  try {
    const body = (await (await mf.dispatchFetch("http://localhost/?words=5")).json()) as { shape: number[]; lastRowWeights: number[] };
    expect(body.shape).toEqual([1, 5, 8]);
    expect(body.lastRowWeights.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    const embed = (await (await mf.dispatchFetch("http://localhost/embed?text=the%20cat%20sat|a%20dog%20lay|stocks%20fell")).json()) as {
      shape: number[];
      cosines: number[][];
    };
    expect(embed.shape).toEqual([3, 36]);
    embed.cosines.forEach((r, i) => r.forEach((c, j) => expect(c).toBeCloseTo(i === j ? 1 : embed.cosines[j]![i]!, 5)));
    // the LM's text is a stream (no length known ahead: pulled a character at a time), and is what the terminal example prints
    const expected = JSON.parse(readFileSync(new URL("examples/tiny-lm/expected.json", root), "utf8")) as { prompt: string; greedy80: string };
    const tokens = expected.greedy80.length - expected.prompt.length;
    const response = await mf.dispatchFetch(`http://localhost/generate?prompt=${encodeURIComponent(expected.prompt)}&tokens=${tokens}`);
    expect(response.headers.get("content-length")).toBeNull();
    expect(expected.prompt + (await response.text())).toBe(expected.greedy80);
    expect((await mf.dispatchFetch("http://localhost/generate?prompt=%E2%82%AC")).status).toBe(400);
  } finally {
    await mf.dispose();
  }
});
