// The package as a TypeScript user gets it: `npm pack`, unpacked into a fresh project's
// node_modules, compiled with tsc and skipLibCheck off under moduleResolution node16, nodenext and
// bundler, with and without lib esnext.disposable, with and without DOM. The consumer's code
// holds lines that must compile (options typed by their exported interfaces, every init() source)
// and lines that must not (`// @ts-expect-error`: init(42), internal names, ...): tsc fails on
// either kind of surprise. Then Node runs the package from that project: import, require() (Node
// 20.19+), Symbol.dispose, and a runtime without Symbol.dispose.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));
let dir: string;

// what every configuration compiles: the API as documented, and what it must refuse
const CONSUMER = `
import {
  init, scaledDotProductAttention, tensor, TransformerEncoderLayer, TransformerEncoder, KVCache, MultiHeadAttention, residentTensor,
  LinearAttentionState, linearAttention, InitError, type AttentionOptions, type EncoderForwardOptions, type StackEncoderForwardOptions,
  type InitOptions, type WasmSource, type Tensor, type Mask, type CompiledModule,
} from "wasm-attention";
import * as core from "wasm-attention/core";

declare const module: CompiledModule;
const bytes = new Uint8Array(8);
export async function ok(): Promise<number> {
  await init();
  await init({ simd: "baseline", deterministic: true, threads: 2 });
  await init(module);
  await init({ wasm: module });
  await init(bytes);
  await init(bytes.buffer);
  await init(new URL("https://example.com/kernels.wasm"));
  await init(fetch("https://example.com/kernels.wasm"));
  await core.init(module);
  const opts: InitOptions = { threads: 2 };
  await init(opts);
  const src: WasmSource = module;
  await init(src);

  const q = tensor(new Float32Array(2 * 4 * 8), [2, 4, 8]);
  const mask: Mask = tensor([true, false, true, true], [2, 2]);
  const o: AttentionOptions = { isCausal: true };
  const a: Tensor | { output: Tensor } = scaledDotProductAttention(q, q, q, o);
  const t: Tensor = scaledDotProductAttention(q, q, q, { isCausal: true });
  const w: Tensor = scaledDotProductAttention(q, q, q, { returnWeights: true }).weights;
  const layer = new TransformerEncoderLayer({ dModel: 8, nhead: 2 });
  const eo: EncoderForwardOptions = { needWeights: true, isCausal: true };
  const r1 = layer.forward(q, eo);
  const r2: Tensor = layer.forward(q, { isCausal: true });
  const r3: Tensor[] = layer.forward(q, { needWeights: true }).weights;
  const so: StackEncoderForwardOptions = { needWeights: false };
  const stack = new TransformerEncoder({ layer: { dModel: 8, nhead: 2 }, numLayers: 2 });
  const r4 = stack.forward(q, so);
  const mha = new MultiHeadAttention({ embedDim: 8, numHeads: 2 });
  const cache = new KVCache({ capacity: 16 });
  mha.forward(q, q, q, { cache, needWeights: false });
  const state = new LinearAttentionState([2], 8, 8);
  linearAttention(q, q, q, { causal: true });
  const rt = residentTensor([2, 2]);
  for (const d of [layer, stack, mha, cache, state, rt]) d[Symbol.dispose]();
  void [a, t, w, r1, r2, r3, r4, mask];
  return new InitError("x").message.length;
}

export async function refused(): Promise<void> {
  // @ts-expect-error: a number is not a kernel binary
  await init(42);
  // @ts-expect-error: nor a string (pass a URL)
  await init("x.wasm");
  // @ts-expect-error: a misspelt option
  await init({ thread: 2 });
  // @ts-expect-error: a wrong type
  await init({ threads: "2" });
  // @ts-expect-error: wasm must be a binary
  await init({ wasm: 42 });
  // @ts-expect-error: a promise of something else
  await init(Promise.resolve("x.wasm"));
  // @ts-expect-error: nor null
  await init(null);
  // @ts-expect-error: an unknown option of a function
  scaledDotProductAttention(tensor([1], [1, 1]), tensor([1], [1, 1]), tensor([1], [1, 1]), { causal: true });
}
`;

// WebAssembly's own types (lib DOM): a real module, and a promise of one
const WASM = `
import { init, type WasmSource } from "wasm-attention";
export async function wasm(m: WebAssembly.Module): Promise<void> {
  const src: WasmSource = m;
  await init(m);
  await init({ wasm: m });
  await init(src);
  await init(WebAssembly.compile(new Uint8Array(8)));
  await init(WebAssembly.compileStreaming(fetch("kernels.wasm")));
}
`;

// names that exist in the sources but are not the package's
const INTERNAL = `
// @ts-expect-error: internal
import { checkTensor } from "wasm-attention";
// @ts-expect-error: internal
import { fmt } from "wasm-attention";
// @ts-expect-error: internal
import { runtime } from "wasm-attention";
// @ts-expect-error: internal
import type { Heap } from "wasm-attention";
// @ts-expect-error: internal files are not exported
import * as heads from "wasm-attention/dist/heads.js";
void [checkTensor, fmt, runtime, heads];
export type H = Heap;
`;

// explicit resource management, for the configurations whose lib has it
const USING = `
import { init, Linear, KVCache } from "wasm-attention";
export async function usingBlocks(): Promise<void> {
  await init();
  using linear = new Linear({ inFeatures: 2, outFeatures: 2 });
  using cache = new KVCache();
  void [linear, cache];
}
`;

// the off-main-thread API, for the configurations with DOM
const WORKER = `
import { createWorker, type WorkerLibrary, type CallOptions, StateError } from "wasm-attention/worker";
import { tensor } from "wasm-attention";
export async function off(): Promise<number> {
  const lib: WorkerLibrary = await createWorker({ simd: "baseline", threads: 2 });
  const q = tensor(new Float32Array(8), [2, 4]);
  const out = await lib.scaledDotProductAttention(q, q, q, { isCausal: true });
  const { weights } = await lib.scaledDotProductAttention(q, q, q, { returnWeights: true });
  const layer = await lib.TransformerEncoderLayer({ dModel: 4, nhead: 2 });
  const cache = await lib.KVCache();
  const same = await layer.loadStateDict({});
  const y = await same.forward(q, { isCausal: true, cache });
  const settings: CallOptions = { signal: new AbortController().signal };
  await layer.with(settings).forward(q);
  const dict = await lib.loadSafetensors(new Uint8Array(8));
  await layer.loadStateDict(dict, "encoder.");
  const n: number = await cache.length;
  // @ts-expect-error: the result is a promise
  const wrong: number = cache.length;
  await layer.dispose();
  lib.terminate();
  void [out, weights, y, n, wrong, StateError];
  return lib.info.threads;
}
`;

const CONFIGS: { name: string; module: string; resolution: string; lib: string[]; types: string[]; files: string[] }[] = [
  {
    name: "node16, ES2022 + DOM",
    module: "node16",
    resolution: "node16",
    lib: ["ES2022", "DOM"],
    types: [],
    files: ["consumer.ts", "internal.ts", "wasm.ts", "worker.ts"],
  },
  {
    name: "nodenext, ES2022 + DOM",
    module: "nodenext",
    resolution: "nodenext",
    lib: ["ES2022", "DOM"],
    types: [],
    files: ["consumer.ts", "internal.ts", "wasm.ts", "worker.ts"],
  },
  {
    name: "bundler, ES2022 + DOM",
    module: "esnext",
    resolution: "bundler",
    lib: ["ES2022", "DOM"],
    types: [],
    files: ["consumer.ts", "internal.ts", "wasm.ts", "worker.ts"],
  },
  {
    name: "bundler, ESNext + DOM (using)",
    module: "esnext",
    resolution: "bundler",
    lib: ["ESNext", "DOM"],
    types: [],
    files: ["consumer.ts", "internal.ts", "wasm.ts", "worker.ts", "using.ts"],
  },
  {
    name: "nodenext, ES2022 + @types/node, no DOM",
    module: "nodenext",
    resolution: "nodenext",
    lib: ["ES2022"],
    types: ["node"],
    files: ["consumer.ts", "internal.ts"],
  },
  {
    name: "node16, ESNext + @types/node + DOM (using)",
    module: "node16",
    resolution: "node16",
    lib: ["ESNext", "DOM"],
    types: ["node"],
    files: ["consumer.ts", "internal.ts", "wasm.ts", "worker.ts", "using.ts"],
  },
];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "wasm-attention-consumer-"));
  execFileSync("npm", ["pack", "--silent", "--pack-destination", dir], { cwd: root, encoding: "utf8", timeout: 120_000 });
  const tarball = readdirSync(dir).find((f) => f.endsWith(".tgz"))!;
  // what `npm install <tarball>` puts in node_modules (the package has no dependencies)
  mkdirSync(join(dir, "node_modules/wasm-attention"), { recursive: true });
  execFileSync("tar", ["-xzf", join(dir, tarball), "-C", join(dir, "node_modules/wasm-attention"), "--strip-components=1"]);
  mkdirSync(join(dir, "node_modules/@types"), { recursive: true });
  symlinkSync(join(root, "node_modules/@types/node"), join(dir, "node_modules/@types/node"));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  mkdirSync(join(dir, "src"));
  writeFileSync(join(dir, "src/consumer.ts"), CONSUMER);
  writeFileSync(join(dir, "src/internal.ts"), INTERNAL);
  writeFileSync(join(dir, "src/using.ts"), USING);
  writeFileSync(join(dir, "src/worker.ts"), WORKER);
  writeFileSync(join(dir, "src/wasm.ts"), WASM);
}, 180_000);
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("a TypeScript project that installed the packed package (skipLibCheck: false)", () => {
  for (const c of CONFIGS) {
    test(`compiles under ${c.name}; the refused lines are refused`, () => {
      const tsconfig = `tsconfig.${c.name.replace(/\W+/g, "-")}.json`;
      const compilerOptions = {
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        target: "ES2022",
        module: c.module,
        moduleResolution: c.resolution,
        lib: c.lib,
        types: c.types,
      };
      writeFileSync(join(dir, tsconfig), JSON.stringify({ compilerOptions, files: c.files.map((f) => `src/${f}`) }));
      let out = "";
      try {
        execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", tsconfig], {
          cwd: dir,
          encoding: "utf8",
          timeout: 120_000,
        });
      } catch (e) {
        out = `${(e as { stdout?: string }).stdout ?? ""}${(e as { stderr?: string }).stderr ?? ""}` || String(e);
      }
      expect(out).toBe("");
    });
  }
});

describe("Node runs it from that project", () => {
  const node = (code: string, args: string[] = []) =>
    execFileSync(process.execPath, [...args, "--input-type=module", "-e", code], { cwd: dir, encoding: "utf8", timeout: 60_000 }).trim();

  test("import, and require() (Node 20.19+ loads ES modules synchronously)", () => {
    expect(
      node(
        `import { init, tensor, scaledDotProductAttention } from "wasm-attention"; await init(); const q = tensor([1, 2, 3, 4], [2, 2]); console.log(scaledDotProductAttention(q, q, q).shape.join("x"));`,
      ),
    ).toBe("2x2");
    const out = execFileSync(
      process.execPath,
      [
        "-e",
        `const lib = require("wasm-attention"); lib.init().then(() => console.log(typeof lib.scaledDotProductAttention, lib.runtimeInfo().simd));`,
      ],
      { cwd: dir, encoding: "utf8", timeout: 60_000 },
    );
    expect(out.trim()).toBe("function baseline");
  });

  test("wasm-attention/core with the package's own kernels.wasm", () => {
    expect(
      node(
        `import * as core from "wasm-attention/core"; let msg = ""; try { await core.init(); } catch (e) { msg = e.name; } await core.init(new URL(import.meta.resolve("wasm-attention/kernels.wasm"))); console.log(msg, core.runtimeInfo().simd);`,
      ),
    ).toBe("InitError baseline");
  });

  test("Symbol.dispose frees; where Symbol.dispose does not exist (a node:vm realm), the package loads and dispose() works", async () => {
    const code = `const lib = await import("wasm-attention"); await lib.init();
      const m = new lib.Linear({ inFeatures: 2, outFeatures: 2 });
      m.loadStateDict({ weight: lib.tensor([1, 0, 0, 1], [2, 2]), bias: lib.tensor([0, 0], [2]) });
      const live = lib.memoryStats().liveBytes;
      m[Symbol.dispose]();
      let after = ""; try { m.forward(lib.tensor([1, 2], [1, 2])); } catch (e) { after = e.name; }
      console.log(typeof Symbol.dispose, lib.memoryStats().liveBytes < live, after);`;
    expect(node(code)).toBe("symbol true StateError");
    // V8 11 (Node 20) has no Symbol.dispose of its own: Node's main realm adds it, a vm realm does not
    const bundle = await build({
      stdin: { contents: `import * as lib from "wasm-attention/core"; globalThis.lib = lib;`, resolveDir: dir },
      bundle: true,
      format: "iife",
      write: false,
      logLevel: "silent",
    });
    const context = vm.createContext({ console });
    vm.runInContext(bundle.outputFiles[0]!.text, context);
    const run = vm.runInContext(
      `(async (bytes) => {
      await lib.init(bytes);
      const m = new lib.Linear({ inFeatures: 2, outFeatures: 2 });
      m.loadStateDict({ weight: lib.tensor([1, 0, 0, 1], [2, 2]), bias: lib.tensor([0, 0], [2]) });
      const y = Array.from(m.forward(lib.tensor([3, 4], [1, 2])).data);
      const live = lib.memoryStats().liveBytes;
      m.dispose();
      let after = ""; try { m.forward(lib.tensor([1, 2], [1, 2])); } catch (e) { after = e.name; }
      return [typeof Symbol.dispose, y.join(","), lib.memoryStats().liveBytes < live, after].join(" ");
    })`,
      context,
    ) as (bytes: Uint8Array) => Promise<string>;
    expect(await run(new Uint8Array(readFileSync(join(dir, "node_modules/wasm-attention/dist/kernels.wasm"))))).toBe("undefined 3,4 true StateError");
  });
});
