import { readFileSync } from "node:fs";
import vm from "node:vm";
import { describe, expect, test, vi } from "vitest";
import { freshLibrary } from "./support/fresh.js";
import { attentionRef, expectClose, rng } from "./reference.js";

// each test gets a fresh copy of the library: init state is per module instance
const fresh = freshLibrary;

const wasmUrl = new URL("../build/kernels.wasm", import.meta.url);
const bytes = () => new Uint8Array(readFileSync(wasmUrl));
const q = (lib: Awaited<ReturnType<typeof fresh>>) => lib.tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);

describe("init", () => {
  test("before init, a call says to call init(); while loading, to await it", async () => {
    const lib = await fresh();
    expect(() => lib.scaledDotProductAttention(q(lib), q(lib), q(lib))).toThrow(/call \(and await\) init\(\) first/);
    const loading = lib.init();
    expect(() => lib.scaledDotProductAttention(q(lib), q(lib), q(lib))).toThrow(/await init\(\)/);
    expect(() => lib.scaledDotProductAttention(q(lib), q(lib), q(lib))).toThrow(lib.InitError);
    await loading;
    expect(lib.scaledDotProductAttention(q(lib), q(lib), q(lib)).shape).toEqual([2, 2]);
  });

  test("concurrent calls share one load", async () => {
    const lib = await fresh();
    const spy = vi.spyOn(WebAssembly, "instantiate");
    await Promise.all([lib.init(), lib.init(), lib.init()]);
    expect(spy).toHaveBeenCalledTimes(1);
    spy.mockRestore();
  });

  const sources: [string, () => unknown][] = [
    ["a WebAssembly.Module", () => new WebAssembly.Module(bytes())],
    ["a WebAssembly.Module from another realm", () => vm.runInNewContext("new WebAssembly.Module(b)", { b: bytes() })],
    ["a Uint8Array", () => bytes()],
    ["an ArrayBuffer", () => bytes().buffer],
    ["a Response", () => new Response(bytes(), { headers: { "content-type": "application/wasm" } })],
    ["a promise of a Response", () => Promise.resolve(new Response(bytes()))],
    ["a file: URL", () => wasmUrl],
    ["an options object", () => ({ wasm: new WebAssembly.Module(bytes()) })],
  ];
  for (const [name, make] of sources) {
    test(`takes ${name}, and computes attention with it (float64 reference)`, async () => {
      const lib = await fresh();
      await lib.init(make() as Parameters<typeof lib.init>[0]);
      // two heads, odd lengths (tails in the kernel), keys and values of their own
      const r = rng(11);
      const dims = { batch: [1], Hq: 2, Hk: 2, Lq: 5, Lk: 7, E: 8, Ev: 3 };
      const [qd, kd, vd] = [r.floats(2 * 5 * 8), r.floats(2 * 7 * 8), r.floats(2 * 7 * 3)];
      const out = lib.scaledDotProductAttention(lib.tensor(qd, [1, 2, 5, 8]), lib.tensor(kd, [1, 2, 7, 8]), lib.tensor(vd, [1, 2, 7, 3]), {
        isCausal: true,
      });
      const ref = attentionRef(qd, kd, vd, dims, { causalOffset: 0 });
      expectClose(out.data, ref.out, [1, 2, 5, 3], { atol: 2e-6, rtol: 1e-5 }, name);
    });
  }

  test("unknown option names are an error that lists the known ones", async () => {
    const lib = await fresh();
    await expect(lib.init({ wasm: bytes(), thread: 2 } as never)).rejects.toThrow(/expected only "wasm".*, got unknown option "thread"/);
  });

  test("a source of the wrong kind is an ArgumentError", async () => {
    const lib = await fresh();
    await expect(lib.init("kernels.wasm" as never)).rejects.toThrow(lib.ArgumentError);
  });

  test("a failed init can be retried", async () => {
    const lib = await fresh();
    await expect(lib.init(new Uint8Array([0, 1, 2, 3]))).rejects.toThrow(/does not compile/);
    await expect(lib.init(new Response("missing", { status: 404 }))).rejects.toThrow(/404/);
    await lib.init();
    expect(lib.scaledDotProductAttention(q(lib), q(lib), q(lib)).shape).toEqual([2, 2]);
  });

  test("a runtime that refuses to compile bytes gets an error that names the fix", async () => {
    const lib = await fresh();
    const spy = vi.spyOn(WebAssembly, "compile").mockRejectedValue(new WebAssembly.CompileError("Wasm code generation disallowed by embedder"));
    await expect(lib.init()).rejects.toThrow(/import wasm from "wasm-attention\/kernels.wasm".*init\(wasm\)/);
    spy.mockRestore();
    await lib.init(new WebAssembly.Module(bytes()));
  });
});
