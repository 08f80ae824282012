// Issue #10, sizes that hang or abort, and an OutOfMemoryError that must come before the work:
// each call throws a WasmAttentionError promptly or returns quickly. Calls that hang or abort the
// process today run in a child Node (test/support/hardening-child.mjs), killed when it runs long.
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { freshLibrary } from "./support/fresh.js";
import * as lib from "../src/index.js";
import { describeRun, removeBundle, runChild } from "./support/child.js";

beforeAll(() => lib.init({ simd: "baseline" }));
afterAll(() => removeBundle());

const t = (...shape: number[]) => lib.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.25), shape);
const loaded = <M extends lib.Module>(m: M): M => m.loadStateDict(Object.fromEntries(m.params().map((p) => [p.key, t(...p.shape)])));

// runs a child case: it must end by itself, exit 0, and have thrown a WasmAttentionError or returned, within `ms`
async function expectPrompt(which: string, ms = 2_000, kill = 8_000): Promise<Record<string, unknown>> {
  const run = await runChild("hardening-child.mjs", [which], { timeoutMs: kill });
  expect(run.timedOut, describeRun(run)).toBe(false);
  expect(run.code, describeRun(run)).toBe(0);
  const json = run.json!;
  expect(json, describeRun(run)).toBeTruthy();
  if (json.outcome === "threw") expect(json.wasmAttentionError, `${json.name}: ${json.message}`).toBe(true);
  expect(json.ms as number, describeRun(run)).toBeLessThan(ms);
  return json;
}

describe("empty tensors with enormous dimensions: a prompt error or a quick empty result (child process)", () => {
  test("scaledDotProductAttention on [2 ** 40, 0, 4] (empty data)", () => expectPrompt("empty-2^40-sdpa-rank3"), 20_000);
  test("scaledDotProductAttention on [2 ** 40, 1, 0, 4] (empty data), causal", () => expectPrompt("empty-2^40-sdpa-rank4"), 20_000);
  test("MultiHeadAttention.forward on [2 ** 40, 0, 8] (empty data)", () => expectPrompt("empty-2^40-mha"), 20_000);
  test("linearAttention on [2 ** 40, 0, 4] (empty data)", () => expectPrompt("empty-2^40-linear-attention"), 20_000);
  test("tensor(new Float32Array(0), [2 ** 40, 0, 4]) then scaledDotProductAttention", () => expectPrompt("empty-2^40-tensor"), 20_000);
  test(
    "2 ** 31 heads of nothing ([1, 2 ** 31, 0, 4]) with a boolean attnMask: no giant JavaScript array, no process abort",
    () => expectPrompt("2^31-heads-bool-mask"),
    20_000,
  );
  test("2 ** 31 heads of nothing with a float attnMask: no process abort", () => expectPrompt("2^31-heads-float-mask"), 20_000);
});

describe("init({ threads }) beyond a sane maximum is an ArgumentError, before any worker starts", () => {
  // A guard for this machine: a fake Worker, so that today's code (which would start every one of
  // the threads asked for) fails fast instead of starting thousands of real threads.
  let made = 0;
  class FakeWorker {
    constructor() {
      if (++made > 300) throw new Error(`test guard: ${made} workers started for one init()`);
    }
    addEventListener(): void {}
    postMessage(): void {}
    terminate(): void {}
  }
  const withinSeconds = <T>(p: Promise<T>, s: number) =>
    Promise.race([
      p,
      new Promise<never>((_, fail) => setTimeout(() => fail(new Error(`init() neither resolved nor rejected within ${s} s`)), s * 1000)),
    ]);

  for (const threads of [257, 1000, 100_000]) {
    test(`init({ threads: ${threads} }) rejects with an ArgumentError within 2 s`, async () => {
      const fresh = await freshLibrary();
      made = 0;
      vi.stubGlobal("Worker", FakeWorker);
      const t0 = performance.now();
      try {
        await expect(withinSeconds(fresh.init({ threads }), 3)).rejects.toThrow(fresh.ArgumentError);
      } finally {
        vi.unstubAllGlobals();
      }
      expect(performance.now() - t0).toBeLessThan(2_000);
      expect(made, "workers started").toBe(0);
    });
  }
});

describe("options that do not fit the kernels' types are ArgumentErrors", () => {
  const q = t(1, 2, 16, 8);
  // the call throws an ArgumentError, leaves memory as it was, and the next call works
  const rejected = (call: () => unknown, memory = true) => {
    const before = lib.memoryStats();
    let error: unknown;
    try {
      call();
    } catch (e) {
      error = e;
    }
    expect(error, error === undefined ? "returned instead of throwing" : `threw ${String(error)}`).toBeInstanceOf(lib.ArgumentError);
    if (memory) expect(lib.memoryStats()).toEqual(before);
    expect(lib.scaledDotProductAttention(q, q, q).data.every(Number.isFinite)).toBe(true);
  };
  const layout = lib.tensor(new Uint8Array([1]), [1, 1]);
  const integers: [string, Omit<lib.AttentionOptions, "returnWeights">][] = [
    ["blockSparse.blockSize 2 ** 32", { blockSparse: { layout, blockSize: 2 ** 32 } }],
    ["blockSparse.blockSize 2 ** 31", { blockSparse: { layout, blockSize: 2 ** 31 } }],
    ["window dilation 2 ** 32", { window: [4, 4], dilation: 2 ** 32 }],
    ["window dilation 2 ** 31", { window: [4, 4], dilation: 2 ** 31 }],
    ["rope.positionOffset 2 ** 32", { rope: { positionOffset: 2 ** 32 } }],
    ["rope.positionOffset 2 ** 31", { rope: { positionOffset: 2 ** 31 } }],
  ];
  for (const [name, options] of integers) {
    test(`scaledDotProductAttention: integer option above 2 ** 31 - 1: ${name}`, () =>
      rejected(() => lib.scaledDotProductAttention(q, q, q, options)));
  }
  // a window side past 2 ** 31 - 1 bounds nothing a tensor can reach: an ArgumentError, or the answer of Infinity
  for (const [name, big, unbounded] of [
    ["left", [2 ** 32, 1], [Infinity, 1]],
    ["right", [1, 2 ** 32], [1, Infinity]],
    ["left, with dilation 2", [2 ** 31, 3], [Infinity, 3]],
  ] as [string, [number, number], [number, number]][]) {
    test(`scaledDotProductAttention: window ${name} side ${big.find((x) => x > 4)}: an ArgumentError or the answer of an unbounded side`, () => {
      const dilation = name.includes("dilation") ? 2 : undefined;
      let out: lib.Tensor | undefined;
      try {
        out = lib.scaledDotProductAttention(q, q, q, { window: big, dilation });
      } catch (e) {
        expect(e).toBeInstanceOf(lib.ArgumentError);
        return;
      }
      expect(Array.from(out.data)).toEqual(Array.from(lib.scaledDotProductAttention(q, q, q, { window: unbounded, dilation }).data));
    });
  }
  const floats: [string, Omit<lib.AttentionOptions, "returnWeights">][] = [
    ["scale 1e39", { scale: 1e39 }],
    ["an ALiBi slope of 1e39", { alibi: [0.5, 1e39] }],
    ["an ALiBi slope of -1e39", { alibi: [-1e39, 0.5] }],
    ["softcap 1e39", { softcap: 1e39 }],
    ["rope.theta 1e39", { rope: { theta: 1e39 } }],
  ];
  for (const [name, options] of floats) {
    test(`scaledDotProductAttention: float option beyond float32's range: ${name}`, () =>
      rejected(() => lib.scaledDotProductAttention(q, q, q, options)));
  }

  const variants: [string, lib.AttentionVariant][] = [
    ["dilation 2 ** 32", { window: [4, 4], dilation: 2 ** 32 }],
    ["rope.positionOffset 2 ** 32", { rope: { positionOffset: 2 ** 32 } }],
    ["blockSparse blockSize 2 ** 32", { blockSparse: { pattern: "bigbird", window: 1, global: 1, random: 0, blockSize: 2 ** 32 } }],
    ["softcap 1e39", { softcap: 1e39 }],
    ["an ALiBi slope of 1e39", { alibi: [1e39, 0.5] }],
    ["rope.theta 1e39", { rope: { theta: 1e39 } }],
  ];
  for (const [name, attention] of variants) {
    test(`MultiHeadAttention({ attention }): ${name} (at construction or at the first forward)`, () => {
      const x = t(1, 16, 8);
      rejected(() => {
        const m = loaded(new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2, attention }));
        try {
          m.forward(x, x, x, { needWeights: false });
        } finally {
          m.dispose();
        }
      }, false);
    });
  }
});

describe("an OutOfMemoryError before the work", () => {
  test("MultiHeadAttention with needWeights on [1, 40000, 2] (embedDim 2, one head; 6.4 GB of weights): OutOfMemoryError in < 2 s, WebAssembly memory as before (child process)", async () => {
    const json = await expectPrompt("mha-weights-40000", 2_000, 10_000);
    expect(json.name, String(json.message)).toBe("OutOfMemoryError");
    expect(json.after).toEqual(json.before);
  }, 30_000);
});
