// The built package in every JavaScript runtime we claim: each computes test/support/fixed-case.mjs
// with the baseline build and must give Node's bits exactly.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { EdgeVM } from "@edge-runtime/vm";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { beforeAll, describe, expect, test } from "vitest";

const root = new URL("..", import.meta.url);
const file = (p: string) => new URL(p, root);
const run = (cmd: string, args: string[]) =>
  JSON.parse(execFileSync(cmd, args, { cwd: root, encoding: "utf8", timeout: 120_000 }).trim().split("\n").pop()!);
let node: { info: { simd: string; threads: number }; bits: string };

beforeAll(() => {
  node = run(process.execPath, ["test/support/cli-case.mjs"]);
});

describe("one package, the same bits everywhere (baseline build)", () => {
  test("Node", () => {
    expect(node.info).toEqual({ simd: "baseline", threads: 1 });
    // attention, the encoder in f32, f16, q8 and q4, attention over f16 and q8 keys and values (decoding and widened)
    expect(node.bits.split(",").length).toBe(2 * 4 * 37 * 24 + 4 * 3 * 11 * 32 + 2 * (4 * 1 * 32 + 4 * 5 * 24));
  });

  test("Node, the built package on two threads (worker_threads)", () => {
    const two = run(process.execPath, ["test/support/cli-case.mjs", "--threads", "2"]);
    expect(two.info).toEqual({ simd: "baseline", threads: 2 });
    expect(two.bits).toBe(node.bits);
  });

  test("Deno and Bun on two threads (Web Workers)", () => {
    for (const cmd of [["deno", "run", "--allow-read"], ["bun"]]) {
      const two = run("npx", ["--no-install", ...cmd, "test/support/cli-case.mjs", "--threads", "2"]);
      expect(two.info).toEqual({ simd: "baseline", threads: 2 });
      expect(two.bits).toBe(node.bits);
    }
  });

  test("Deno", () => {
    const deno = run("npx", ["--no-install", "deno", "run", "--allow-read", "test/support/cli-case.mjs"]);
    expect(deno.relaxedSupported).toBe(true); // Deno has relaxed SIMD; deterministic: true still picks baseline
    expect(deno.info.simd).toBe("baseline");
    expect(deno.bits).toBe(node.bits);
  });

  test("Bun", () => {
    const bun = run("npx", ["--no-install", "bun", "test/support/cli-case.mjs"]);
    expect(bun.info.simd).toBe("baseline");
    expect(bun.bits).toBe(node.bits);
  });

  test("Cloudflare workerd (miniflare): the binary imported as a module", async () => {
    const mf = new Miniflare({
      modules: [
        { type: "ESModule", path: "worker.mjs", contents: readFileSync(file("test/support/worker.mjs"), "utf8") },
        { type: "ESModule", path: "index.js", contents: readFileSync(file("dist/index.js"), "utf8") },
        { type: "ESModule", path: "fixed-case.mjs", contents: readFileSync(file("test/support/fixed-case.mjs"), "utf8") },
        { type: "CompiledWasm", path: "kernels.wasm", contents: readFileSync(file("dist/kernels.wasm")) },
        // the default entry loads its builds with import(): as a bundler would, they are modules of the Worker
        ...["kernels", "kernels-relaxed"].map((k) => ({
          type: "ESModule" as const,
          path: `embedded/${k}.js`,
          contents: readFileSync(file(`dist/embedded/${k}.js`), "utf8"),
        })),
      ],
      compatibilityDate: "2026-07-01",
    });
    try {
      const refused = await mf.dispatchFetch("http://localhost/embedded");
      expect(refused.status).toBe(500);
      expect(await refused.text()).toMatch(
        /InitError: this runtime does not compile WebAssembly from bytes.*import wasm from "wasm-attention\/kernels.wasm".*init\(wasm\)/,
      );
      const res = await mf.dispatchFetch("http://localhost/");
      const body = (await res.json()) as typeof node;
      expect(body.info.simd).toBe("baseline");
      expect(body.bits).toBe(node.bits);
    } finally {
      await mf.dispose();
    }
  });

  test("Cloudflare workerd: the package's workerd entry needs no argument to init(); threads fall back to one", async () => {
    const mf = new Miniflare({
      modules: [
        {
          type: "ESModule",
          path: "worker.mjs",
          contents: `import * as lib from "./workerd.js"; import { bits, fixedCase } from "./fixed-case.mjs";
            export default { async fetch() {
              // Workers have no threads: asking for two warns once and runs on one
              const warnings = []; const warn = console.warn; console.warn = (m) => warnings.push(String(m));
              try { await lib.init({ deterministic: true, threads: 2 }); } finally { console.warn = warn; }
              return Response.json({ info: lib.runtimeInfo(), warnings, bits: bits(fixedCase(lib)) });
            } };`,
        },
        { type: "ESModule", path: "workerd.js", contents: readFileSync(file("dist/workerd.js"), "utf8") },
        { type: "ESModule", path: "fixed-case.mjs", contents: readFileSync(file("test/support/fixed-case.mjs"), "utf8") },
        { type: "CompiledWasm", path: "kernels.wasm", contents: readFileSync(file("dist/kernels.wasm")) },
        { type: "CompiledWasm", path: "kernels-relaxed.wasm", contents: readFileSync(file("dist/kernels-relaxed.wasm")) },
      ],
      compatibilityDate: "2026-07-01",
    });
    try {
      const body = (await (await mf.dispatchFetch("http://localhost/")).json()) as typeof node & { warnings: string[] };
      expect(body.info).toEqual({ simd: "baseline", threads: 1 });
      expect(body.warnings).toEqual(["wasm-attention: running on one thread instead of 2: this runtime has no Worker"]);
      expect(body.bits).toBe(node.bits);
    } finally {
      await mf.dispose();
    }
  });

  // FinalizationRegistry and WeakRef exist in workerd only from the compatibility date 2025-05-05 on
  for (const compatibilityDate of ["2024-01-01", "2026-07-01"]) {
    for (const compatibilityFlags of [[], ["nodejs_compat"]]) {
      test(`Cloudflare workerd, compatibility date ${compatibilityDate}${compatibilityFlags.length ? " with nodejs_compat" : ""}: loads, computes Node's bits, dispose() and using work`, async () => {
        const mf = new Miniflare({
          modules: [
            {
              type: "ESModule",
              path: "worker.mjs",
              contents: `import * as lib from "./workerd.js"; import { bits, fixedCase } from "./fixed-case.mjs";
                export default { async fetch() {
                  await lib.init({ deterministic: true });
                  const m = new lib.Linear({ inFeatures: 2, outFeatures: 2 });
                  m.loadStateDict({ weight: lib.tensor([1, 0, 0, 1], [2, 2]), bias: lib.tensor([0, 0], [2]) });
                  const before = lib.memoryStats().liveBytes;
                  const y = Array.from(m.forward(lib.tensor([3, 4], [1, 2])).data);
                  m.dispose();
                  let after = "used";
                  try { m.forward(lib.tensor([3, 4], [1, 2])); } catch (e) { after = e.name; }
                  const c = new lib.KVCache();
                  if (typeof Symbol.dispose === "symbol") c[Symbol.dispose]();
                  return Response.json({ info: lib.runtimeInfo(), y, freed: lib.memoryStats().liveBytes < before, after,
                    finalization: typeof FinalizationRegistry, weakRef: typeof WeakRef, bits: bits(fixedCase(lib)) });
                } };`,
            },
            { type: "ESModule", path: "workerd.js", contents: readFileSync(file("dist/workerd.js"), "utf8") },
            { type: "ESModule", path: "fixed-case.mjs", contents: readFileSync(file("test/support/fixed-case.mjs"), "utf8") },
            { type: "CompiledWasm", path: "kernels.wasm", contents: readFileSync(file("dist/kernels.wasm")) },
            { type: "CompiledWasm", path: "kernels-relaxed.wasm", contents: readFileSync(file("dist/kernels-relaxed.wasm")) },
          ],
          compatibilityDate,
          compatibilityFlags,
        });
        try {
          const res = await mf.dispatchFetch("http://localhost/");
          const text = await res.text();
          expect(res.status, text).toBe(200);
          const body = JSON.parse(text);
          expect(body.finalization).toBe(compatibilityDate < "2025-05-05" ? "undefined" : "function");
          expect(body.weakRef).toBe(body.finalization);
          expect(body.info).toEqual({ simd: "baseline", threads: 1 });
          expect(body.y).toEqual([3, 4]);
          expect(body.freed).toBe(true);
          expect(body.after).toBe("StateError");
          expect(body.bits).toBe(node.bits);
        } finally {
          await mf.dispose();
        }
      });
    }
  }

  test("Vercel's edge runtime (@edge-runtime/vm, no code generation from bytes)", async () => {
    const bundle = await build({
      stdin: {
        contents: `import * as lib from "./dist/index.js"; import { bits, fixedCase } from "./test/support/fixed-case.mjs";
          globalThis.runCase = async (wasm) => {
            let refused = "";
            try { await lib.init(); } catch (e) { refused = e.message; }
            await lib.init(wasm);
            return JSON.stringify({ refused, info: lib.runtimeInfo(), bits: bits(fixedCase(lib)) });
          };`,
        resolveDir: root.pathname,
      },
      bundle: true,
      format: "iife",
      write: false,
      loader: { ".wasm": "binary" },
    });
    const vm = new EdgeVM({ codeGeneration: { strings: false, wasm: false } });
    vm.evaluate(bundle.outputFiles[0].text);
    // the module is compiled outside the sandbox, as the platform does, and crosses into it
    const module = new WebAssembly.Module(readFileSync(file("dist/kernels.wasm")));
    const out = JSON.parse(await vm.evaluate("runCase")(module));
    // (this sandbox has no DecompressionStream either, which the embedded builds need; Vercel's has)
    expect(out.refused).toMatch(
      /does not compile WebAssembly from bytes|no DecompressionStream to unpack the embedded kernel binary; pass the binary to init\(\) yourself/,
    );
    expect(out.info.simd).toBe("baseline");
    expect(out.bits).toBe(node.bits);
  });
});
