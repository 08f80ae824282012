// Issue #10, KV caches: reset() then a bigger batch, an allocation that fails inside a cache, and
// one cache passed to two modules. Each test fails where the bug exists and passes once fixed.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import * as lib from "../src/index.js";
import { rng } from "./reference.js";
import { canary } from "./support/canary.js";
import { describeRun, removeBundle, runChild } from "./support/child.js";

const r = rng(20261130);
const t = (shape: number[], scale = 0.5) =>
  lib.tensor(
    r.floats(
      shape.reduce((a, b) => a * b, 1),
      scale,
    ),
    shape,
  );
const loaded = <M extends lib.Module>(m: M): M => m.loadStateDict(Object.fromEntries(m.params().map((p) => [p.key, t([...p.shape])])));
const bits = (x: Float32Array) => Array.from(new Uint32Array(x.slice().buffer));

beforeAll(() => lib.init({ simd: "baseline" }));
afterAll(() => removeBundle());

// one sequence of decoding calls on a cache: a prefill, then `steps` single tokens; every output
function decode(
  forward: (x: lib.Tensor, cache: lib.KVCache) => Float32Array[],
  cache: lib.KVCache,
  prefill: lib.Tensor,
  tokens: lib.Tensor[],
): Float32Array[] {
  return [prefill, ...tokens].flatMap((x) => forward(x, cache));
}

describe("KVCache.reset() then a bigger batch", () => {
  const mhaForward = (m: lib.MultiHeadAttention) => (x: lib.Tensor, cache: lib.KVCache) => {
    const { output, weights } = m.forward(x, x, x, { isCausal: true, cache });
    return [output.data, weights!.data];
  };

  test("MultiHeadAttention: batch 1, reset(), batch 8 gives the outputs of a fresh cache and writes nothing outside the cache", () => {
    const mha = loaded(new lib.MultiHeadAttention({ embedDim: 16, numHeads: 4 }));
    const canaryBefore = canary(); // made before the cache exists
    const cache = new lib.KVCache();
    decode(mhaForward(mha), cache, t([1, 3, 16]), [t([1, 1, 16])]);
    cache.reset();
    const canaryAfter = canary(); // made once the cache holds its batch-1 memory
    const prefill = t([8, 3, 16]);
    const tokens = [t([8, 1, 16]), t([8, 1, 16])];
    const got = decode(mhaForward(mha), cache, prefill, tokens);
    canaryBefore();
    canaryAfter();
    const fresh = new lib.KVCache();
    const want = decode(mhaForward(mha), fresh, prefill, tokens);
    got.forEach((g, i) => expect(bits(g), `call ${i >> 1}, ${i % 2 ? "weights" : "output"}`).toEqual(bits(want[i])));
    [cache, fresh].forEach((c) => c.dispose());
    [canaryBefore, canaryAfter].forEach((c) => c.dispose());
    mha.dispose();
  });

  test("TransformerEncoder (one cache entry per layer): batch 2, reset(), batch 6 equals a fresh cache, canaries unchanged", () => {
    const enc = loaded(new lib.TransformerEncoder({ layer: { dModel: 8, nhead: 2, dimFeedforward: 16 }, numLayers: 2 }));
    const canaryBefore = canary();
    const cache = new lib.KVCache({ capacity: 4 });
    const forward = (x: lib.Tensor, c: lib.KVCache) => [enc.forward(x, { isCausal: true, cache: c }).data];
    decode(forward, cache, t([2, 2, 8]), [t([2, 1, 8])]);
    cache.reset();
    const canaryAfter = canary();
    const prefill = t([6, 2, 8]);
    const tokens = [t([6, 1, 8]), t([6, 1, 8]), t([6, 1, 8])];
    const got = decode(forward, cache, prefill, tokens);
    canaryBefore();
    canaryAfter();
    const fresh = new lib.KVCache({ capacity: 4 });
    const want = decode(forward, fresh, prefill, tokens);
    got.forEach((g, i) => expect(bits(g), `call ${i}`).toEqual(bits(want[i])));
    [cache, fresh].forEach((c) => c.dispose());
    [canaryBefore, canaryAfter].forEach((c) => c.dispose());
    enc.dispose();
  });

  test("a smaller batch after reset() also equals a fresh cache", () => {
    const mha = loaded(new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 }));
    const cache = new lib.KVCache();
    decode(mhaForward(mha), cache, t([5, 2, 8]), [t([5, 1, 8])]);
    cache.reset();
    const prefill = t([2, 4, 8]);
    const tokens = [t([2, 1, 8])];
    const got = decode(mhaForward(mha), cache, prefill, tokens);
    const want = decode(mhaForward(mha), new lib.KVCache(), prefill, tokens);
    got.forEach((g, i) => expect(bits(g)).toEqual(bits(want[i])));
    cache.dispose();
    mha.dispose();
  });

  test("a batch change without reset() is a ShapeError that mentions reset()", () => {
    const mha = loaded(new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 }));
    const cache = new lib.KVCache();
    const x1 = t([1, 2, 8]);
    mha.forward(x1, x1, x1, { isCausal: true, cache });
    const live = lib.memoryStats().liveBytes;
    const x8 = t([8, 1, 8]);
    expect(() => mha.forward(x8, x8, x8, { isCausal: true, cache })).toThrow(lib.ShapeError);
    expect(() => mha.forward(x8, x8, x8, { isCausal: true, cache })).toThrow(/reset\(\)/);
    expect(lib.memoryStats().liveBytes).toBe(live);
    cache.dispose();
    mha.dispose();
  });
});

describe("an allocation that fails inside a cache", () => {
  test("new KVCache({ capacity: 2 ** 30 }) then a forward: OutOfMemoryError, no half allocation, dispose() works, the module works with a new cache", () => {
    const mha = loaded(new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 }));
    const x = t([1, 3, 8]);
    const expected = mha.forward(x, x, x, { isCausal: true, cache: new lib.KVCache() }).output.data;
    const live = lib.memoryStats().liveBytes;
    const cache = new lib.KVCache({ capacity: 2 ** 30 });
    expect(() => mha.forward(x, x, x, { isCausal: true, cache })).toThrow(lib.OutOfMemoryError);
    expect(lib.memoryStats().liveBytes).toBe(live);
    expect(() => cache.dispose()).not.toThrow();
    expect(lib.memoryStats().liveBytes).toBe(live);
    const next = new lib.KVCache();
    expect(bits(mha.forward(x, x, x, { isCausal: true, cache: next }).output.data)).toEqual(bits(expected));
    next.dispose();
    mha.dispose();
  });

  test("the same through a TransformerEncoder: OutOfMemoryError, live bytes as before, dispose() works", () => {
    const enc = loaded(new lib.TransformerEncoder({ layer: { dModel: 8, nhead: 2, dimFeedforward: 16 }, numLayers: 2 }));
    const x = t([2, 3, 8]);
    const live = lib.memoryStats().liveBytes;
    const cache = new lib.KVCache({ capacity: 2 ** 30 });
    expect(() => enc.forward(x, { isCausal: true, cache })).toThrow(lib.OutOfMemoryError);
    expect(lib.memoryStats().liveBytes).toBe(live);
    expect(() => cache.dispose()).not.toThrow();
    expect(enc.forward(x, { isCausal: true, cache: new lib.KVCache() }).data.every(Number.isFinite)).toBe(true);
    enc.dispose();
  });

  test("such a cache dropped to the garbage collector does not crash the process (child Node with --expose-gc)", async () => {
    const run = await runChild("hardening-child.mjs", ["cache-oom-then-gc"], { timeoutMs: 30_000, nodeArgs: ["--expose-gc"] });
    expect(run.code, describeRun(run)).toBe(0);
    expect(run.json, describeRun(run)).toMatchObject({ outcome: "threw", name: "OutOfMemoryError", survived: true });
    expect(run.json!.after, describeRun(run)).toBe(run.json!.base);
  });
});

describe("one KVCache passed to two different modules", () => {
  // torch has no such sharing: the second module must get a clear error, or results as if the
  // cache held only its own keys, never keys (or weight columns) it never wrote
  test("the second module gets a StateError/ArgumentError or its own correct results, over several alternating steps", () => {
    const a = loaded(new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 }));
    const b = loaded(new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 }));
    const shared = new lib.KVCache();
    const own = new lib.KVCache();
    const check = canary();
    const xa = [t([1, 3, 8]), t([1, 1, 8]), t([1, 1, 8])];
    const xb = [t([1, 2, 8]), t([1, 1, 8]), t([1, 1, 8])];
    for (let step = 0; step < 3; step++) {
      a.forward(xa[step], xa[step], xa[step], { isCausal: true, cache: shared });
      let got: ReturnType<typeof b.forward> | undefined;
      try {
        got = b.forward(xb[step], xb[step], xb[step], { isCausal: true, cache: shared });
      } catch (e) {
        expect(e, String(e)).toSatisfy((x: unknown) => x instanceof lib.StateError || x instanceof lib.ArgumentError);
        break;
      }
      const want = b.forward(xb[step], xb[step], xb[step], { isCausal: true, cache: own });
      expect(got.weights!.shape, `step ${step}: weights shape`).toEqual(want.weights!.shape);
      expect(bits(got.weights!.data), `step ${step}: weights`).toEqual(bits(want.weights!.data));
      expect(bits(got.output.data), `step ${step}: output`).toEqual(bits(want.output.data));
    }
    check();
    check.dispose();
    [shared, own].forEach((c) => c.dispose());
    [a, b].forEach((m) => m.dispose());
  });
});
