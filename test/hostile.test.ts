// Issue #10, hostile tensor-likes. Every public function that takes tensors (scaledDotProductAttention's
// query, key, value, attnMask and block layout; the forwards of Linear, LayerNorm, MultiHeadAttention
// (also decoding with a KVCache), TransformerEncoderLayer and TransformerDecoderLayer; tensor();
// residentTensor(); loadStateDict values; linearAttention and LinearAttentionState.step) given a
// hostile variant of an honest input (test/support/hostile.ts: lying length / byteLength /
// byteOffset getters, Proxies, a lying Symbol.toStringTag, Symbol.species, shapes and data that
// change between reads, shape elements that are getters) must either return the right answer (the
// bits of the same call with the honest input it stands for) or throw a WasmAttentionError; it must
// never write outside its own memory (a canary placed before the call keeps its bits), leave bytes
// allocated, or leave the heap unusable (the honest call gives the same bits afterwards).
//
// A property test (fast-check) over every (function, argument, kind of lie), seeded: FUZZ_SEED
// (default fixed) and FUZZ_RUNS (default 100); and one plain test per kind of lie through
// scaledDotProductAttention's key, so that each kind is named in the results. The library is
// initialised afresh for every case, so a case that breaks the heap does not break the next one.
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import * as lib from "../src/index.js";
import { rng } from "./reference.js";
import { canary } from "./support/canary.js";
import { type Family, type Honest, families, hostile } from "./support/hostile.js";

const runs = Number(process.env.FUZZ_RUNS ?? 100);
const seed = Number(process.env.FUZZ_SEED ?? 20261130);

type Rng = ReturnType<typeof rng>;
interface Dims {
  B: number;
  H: number;
  Lq: number;
  Lk: number;
  E: number;
  Ev: number;
}
interface Setup {
  honest: Honest[];
  /** The call on tensor-likes in the order of `honest`; returns every output to compare. */
  run(args: unknown[]): Float32Array[];
  dispose(): void;
}
interface Case {
  name: string;
  /** The arguments that get a hostile variant; raw: the data and shape arguments of tensor() / residentTensor(). */
  slots: { name: string; index: number; raw?: boolean }[];
  setup(d: Dims, r: Rng): Setup;
}

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const f32 = (r: Rng, shape: number[], scale = 1): Honest => ({ data: r.floats(size(shape), scale), shape });
const u8 = (r: Rng, shape: number[], pTrue = 0.7): Honest => ({ data: r.bools(size(shape), pTrue), shape });
const minus = (r: Rng, shape: number[]): Honest => ({
  data: Float32Array.from({ length: size(shape) }, () => (r.next() < 0.25 ? -Infinity : r.next() - 0.5)),
  shape,
});
const T = (x: unknown) => x as lib.Tensor;
function weights(m: lib.Module, r: Rng): Record<string, lib.Tensor> {
  return Object.fromEntries(m.params().map((p) => [p.key, lib.tensor(r.floats(size(p.shape), 0.4), p.shape)]));
}
function loaded<M extends lib.Module>(m: M, r: Rng): M {
  return m.loadStateDict(weights(m, r));
}

const cases: Case[] = [
  {
    name: "scaledDotProductAttention (boolean attnMask, GQA, returnWeights)",
    slots: [
      { name: "query", index: 0 },
      { name: "key", index: 1 },
      { name: "value", index: 2 },
      { name: "attnMask (boolean)", index: 3 },
    ],
    setup: ({ B, H, Lq, Lk, E, Ev }, r) => ({
      honest: [f32(r, [B, 2 * H, Lq, E]), f32(r, [B, H, Lk, E]), f32(r, [B, H, Lk, Ev]), u8(r, [Lq, Lk])],
      run: ([q, k, v, m]) => {
        const { output, weights: w } = lib.scaledDotProductAttention(T(q), T(k), T(v), { attnMask: T(m), enableGqa: true, returnWeights: true });
        return [output.data, w.data];
      },
      dispose: () => {},
    }),
  },
  {
    name: "scaledDotProductAttention (float attnMask [B, 1, Lq, Lk])",
    slots: [
      { name: "query", index: 0 },
      { name: "attnMask (float)", index: 2 },
    ],
    setup: ({ B, H, Lq, Lk, E }, r) => ({
      honest: [f32(r, [B, H, Lq, E]), f32(r, [B, H, Lk, E]), minus(r, [B, 1, Lq, Lk])],
      run: ([q, k, m]) => [lib.scaledDotProductAttention(T(q), T(k), T(k), { attnMask: T(m) }).data],
      dispose: () => {},
    }),
  },
  {
    name: "scaledDotProductAttention (blockSparse layout)",
    slots: [{ name: "blockSparse.layout", index: 1 }],
    setup: ({ H, Lq, Lk, E }, r) => {
      const [Q, K] = [8 * Lq, 8 * Lk]; // block size 8: layout [Lq, Lk]
      const layout: Honest = {
        data: Uint8Array.from({ length: Lq * Lk }, (_, n) => (n % (Lk + 1) === 0 || r.next() < 0.5 ? 1 : 0)),
        shape: [Lq, Lk],
      };
      return {
        honest: [f32(r, [H, Q, E]), layout, f32(r, [H, K, E])],
        run: ([q, l, k]) => [lib.scaledDotProductAttention(T(q), T(k), T(k), { blockSparse: { layout: l as lib.BoolTensor, blockSize: 8 } }).data],
        dispose: () => {},
      };
    },
  },
  {
    name: "Linear.forward",
    slots: [{ name: "x", index: 0 }],
    setup: ({ B, Lq }, r) => {
      const m = loaded(new lib.Linear({ inFeatures: 8, outFeatures: 5 }), r);
      return { honest: [f32(r, [B, Lq, 8])], run: ([x]) => [m.forward(T(x)).data], dispose: () => m.dispose() };
    },
  },
  {
    name: "LayerNorm.forward",
    slots: [{ name: "x", index: 0 }],
    setup: ({ B, Lq }, r) => {
      const m = loaded(new lib.LayerNorm({ normalizedShape: 8 }), r);
      return { honest: [f32(r, [B, Lq, 8])], run: ([x]) => [m.forward(T(x)).data], dispose: () => m.dispose() };
    },
  },
  {
    name: "MultiHeadAttention.forward",
    slots: [
      { name: "query", index: 0 },
      { name: "key", index: 1 },
      { name: "value", index: 2 },
      { name: "keyPaddingMask (boolean)", index: 3 },
      { name: "attnMask (float)", index: 4 },
    ],
    setup: ({ B, Lq, Lk }, r) => {
      const m = loaded(new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 }), r);
      return {
        honest: [f32(r, [B, Lq, 8]), f32(r, [B, Lk, 8]), f32(r, [B, Lk, 8]), u8(r, [B, Lk], 0.3), minus(r, [Lq, Lk])],
        run: ([q, k, v, pad, mask]) => {
          const { output, weights: w } = m.forward(T(q), T(k), T(v), { keyPaddingMask: T(pad), attnMask: T(mask), averageAttnWeights: false });
          return [output.data, w!.data];
        },
        dispose: () => m.dispose(),
      };
    },
  },
  {
    name: "TransformerEncoderLayer.forward",
    slots: [
      { name: "src", index: 0 },
      { name: "srcKeyPaddingMask (boolean)", index: 1 },
    ],
    setup: ({ B, Lq }, r) => {
      const m = loaded(new lib.TransformerEncoderLayer({ dModel: 8, nhead: 2, dimFeedforward: 16 }), r);
      return {
        honest: [f32(r, [B, Lq, 8]), u8(r, [B, Lq], 0.3)],
        run: ([x, pad]) => [m.forward(T(x), { srcKeyPaddingMask: T(pad) }).data],
        dispose: () => m.dispose(),
      };
    },
  },
  {
    name: "TransformerDecoderLayer.forward",
    slots: [
      { name: "tgt", index: 0 },
      { name: "memory", index: 1 },
      { name: "memoryKeyPaddingMask (boolean)", index: 2 },
    ],
    setup: ({ B, Lq, Lk }, r) => {
      const m = loaded(new lib.TransformerDecoderLayer({ dModel: 8, nhead: 2, dimFeedforward: 16 }), r);
      return {
        honest: [f32(r, [B, Lq, 8]), f32(r, [B, Lk, 8]), u8(r, [B, Lk], 0.3)],
        run: ([x, mem, pad]) => [m.forward(T(x), T(mem), { memoryKeyPaddingMask: T(pad), tgtIsCausal: true }).data],
        dispose: () => m.dispose(),
      };
    },
  },
  {
    name: "MultiHeadAttention decoding with a KVCache (the hostile tensor as the second step's query, key and value)",
    slots: [{ name: "step", index: 1 }],
    setup: ({ B, Lq }, r) => {
      const m = loaded(new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 }), r);
      return {
        honest: [f32(r, [B, Lq, 8]), f32(r, [B, 1, 8])],
        run: ([prefill, step]) => {
          const cache = new lib.KVCache();
          try {
            m.forward(T(prefill), T(prefill), T(prefill), { isCausal: true, cache });
            return [m.forward(T(step), T(step), T(step), { isCausal: true, cache }).output.data];
          } finally {
            cache.dispose();
          }
        },
        dispose: () => m.dispose(),
      };
    },
  },
  {
    name: "LinearAttentionState.step",
    slots: [
      { name: "query", index: 0 },
      { name: "key", index: 1 },
      { name: "value", index: 2 },
    ],
    setup: ({ B, Lq, E, Ev }, r) => ({
      honest: [f32(r, [B, Lq, E]), f32(r, [B, Lq, E]), f32(r, [B, Lq, Ev])],
      run: ([q, k, v]) => {
        const state = new lib.LinearAttentionState([B], E, Ev);
        try {
          return [state.step(T(q), T(k), T(v)).data];
        } finally {
          state.dispose();
        }
      },
      dispose: () => {},
    }),
  },
  {
    name: "tensor() (then scaledDotProductAttention on the result)",
    slots: [
      { name: "data", index: 0, raw: true },
      { name: "shape", index: 0, raw: true },
    ],
    setup: ({ H, Lq, E }, r) => ({
      honest: [f32(r, [H, Lq, E])],
      run: ([x]) => {
        const { data, shape } = x as { data: Float32Array; shape: number[] };
        const t = lib.tensor(data, shape);
        return [lib.scaledDotProductAttention(t, t, t).data];
      },
      dispose: () => {},
    }),
  },
  {
    name: "residentTensor() (its shape and data)",
    slots: [
      { name: "data", index: 0, raw: true },
      { name: "shape", index: 0, raw: true },
    ],
    setup: ({ B, Lq, E }, r) => ({
      honest: [f32(r, [B, Lq, E])],
      run: ([x]) => {
        const { data, shape } = x as { data: Float32Array; shape: number[] };
        const t = lib.residentTensor(shape, data);
        try {
          return [Float32Array.from(t.shape), t.data.slice()];
        } finally {
          t.dispose();
        }
      },
      dispose: () => {},
    }),
  },
  {
    name: "Linear.loadStateDict (weight), then a forward",
    slots: [{ name: "weight", index: 0 }],
    setup: ({ B, Lq }, r) => {
      const bias = lib.tensor(r.floats(5), [5]);
      const x = lib.tensor(r.floats(B * Lq * 8), [B, Lq, 8]);
      return {
        honest: [f32(r, [5, 8])],
        run: ([w]) => {
          const m = new lib.Linear({ inFeatures: 8, outFeatures: 5 });
          try {
            return [m.loadStateDict({ weight: T(w), bias }).forward(x).data];
          } finally {
            m.dispose();
          }
        },
        dispose: () => {},
      };
    },
  },
  {
    name: "MultiHeadAttention.loadStateDict (in_proj_weight, in_proj_bias), then a forward",
    slots: [
      { name: "in_proj_weight", index: 0 },
      { name: "in_proj_bias", index: 1 },
    ],
    setup: ({ B, Lq }, r) => {
      const dict = weights(new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 }), r);
      const x = lib.tensor(r.floats(B * Lq * 8), [B, Lq, 8]);
      return {
        honest: [f32(r, [24, 8], 0.4), f32(r, [24], 0.4)],
        run: ([w, b]) => {
          const m = new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 });
          try {
            return [m.loadStateDict({ ...dict, in_proj_weight: T(w), in_proj_bias: T(b) }).forward(x, x, x).output.data];
          } finally {
            m.dispose();
          }
        },
        dispose: () => {},
      };
    },
  },
  {
    name: "LayerNorm.loadStateDict (bias), then a forward",
    slots: [{ name: "bias", index: 0 }],
    setup: ({ B, Lq }, r) => {
      const weight = lib.tensor(r.floats(8), [8]);
      const x = lib.tensor(r.floats(B * Lq * 8), [B, Lq, 8]);
      return {
        honest: [f32(r, [8])],
        run: ([b]) => {
          const m = new lib.LayerNorm({ normalizedShape: 8 });
          try {
            return [m.loadStateDict({ weight, bias: T(b) }).forward(x).data];
          } finally {
            m.dispose();
          }
        },
        dispose: () => {},
      };
    },
  },
  {
    name: "linearAttention (causal)",
    slots: [
      { name: "query", index: 0 },
      { name: "key", index: 1 },
      { name: "value", index: 2 },
    ],
    setup: ({ B, H, Lq, E, Ev }, r) => ({
      honest: [f32(r, [B, H, Lq, E]), f32(r, [B, H, Lq, E]), f32(r, [B, H, Lq, Ev])],
      run: ([q, k, v]) => [lib.linearAttention(T(q), T(k), T(v), { causal: true }).data],
      dispose: () => {},
    }),
  },
];

const bits = (xs: Float32Array[]) => xs.map((x) => Array.from(new Uint32Array(x.slice().buffer)));
type Outcome = { out: Float32Array[] } | { error: unknown };
function attempt(call: () => Float32Array[]): Outcome {
  try {
    return { out: call() };
  } catch (error) {
    return { error };
  }
}
const describeError = (e: unknown) => (e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e));

/**
 * One case: a fresh library, the honest call, the twins' calls, then the hostile call between a
 * canary's placing and checking; afterwards no bytes left allocated and the honest call unchanged.
 */
async function check(c: Case, slotIndex: number, family: Family, option: number, after: number, d: Dims, seedOfValues: number): Promise<void> {
  lib.shutdown();
  await lib.init({ simd: "baseline" });
  const s = c.setup(d, rng(seedOfValues));
  const slot = c.slots[slotIndex];
  const withArg = (value: unknown) => s.honest.map((h, i) => (i === slot.index ? value : h));
  const honest = s.run(s.honest);
  const h = hostile(family, "tensor", s.honest[slot.index], option, after);
  const where = `${c.name}, ${slot.name}: ${h.what}`;
  const twins = h.twins.map((tw) => attempt(() => s.run(withArg(tw))));
  const live = lib.memoryStats().liveBytes;
  const guard = canary(lib);
  const got = attempt(() => s.run(withArg(h.value)));
  guard();
  guard.dispose();
  if ("error" in got) {
    expect(got.error, `${where}: threw ${describeError(got.error)}, not a WasmAttentionError`).toBeInstanceOf(lib.WasmAttentionError);
  } else {
    const answers = twins.flatMap((t) => ("out" in t ? [bits(t.out)] : []));
    expect(answers.length, `${where}: returned where the honest input it stands for is rejected`).toBeGreaterThan(0);
    const mine = bits(got.out);
    const same = answers.some((a) => JSON.stringify(a) === JSON.stringify(mine));
    expect(same, `${where}: returned a wrong answer (not the bits of the honest call)`).toBe(true);
  }
  expect(lib.memoryStats().liveBytes, `${where}: bytes left allocated (or freed twice) by the call`).toBe(live);
  const again = attempt(() => s.run(s.honest));
  expect("out" in again ? bits(again.out) : describeError((again as { error: unknown }).error), `${where}: the honest call afterwards`).toEqual(
    bits(honest),
  );
  s.dispose();
}

// every (case, argument, family) that fits: the raw data and shape arguments of tensor() and
// residentTensor() take the families that lie in a data array or in a shape
const usable = (f: Family, slot: Case["slots"][number]) => !slot.raw || f.levels.includes(slot.name === "data" ? "data" : "shape");
const combos = cases.flatMap((c) => c.slots.flatMap((slot, si) => families.filter((f) => usable(f, slot)).map((f) => ({ c, si, f }))));

describe("hostile tensor-likes: the right answer or a WasmAttentionError, never a write outside the call's memory", () => {
  test(`property: every public function, every argument, every kind of lie (${runs} runs, seed ${seed})`, async () => {
    const dims = fc.record({
      B: fc.integer({ min: 1, max: 2 }),
      H: fc.integer({ min: 1, max: 2 }),
      Lq: fc.integer({ min: 1, max: 9 }),
      Lk: fc.integer({ min: 1, max: 9 }),
      E: fc.integer({ min: 1, max: 8 }),
      Ev: fc.integer({ min: 1, max: 8 }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.nat(combos.length - 1),
        fc.nat(99),
        fc.integer({ min: 1, max: 4 }),
        dims,
        fc.nat(2 ** 31 - 1),
        async (i, option, after, d, values) => {
          const { c, si, f } = combos[i];
          await check(c, si, f, option, after, d, values);
        },
      ),
      { numRuns: runs, seed },
    );
  }, 300_000);

  // one test per kind of lie through scaledDotProductAttention's query and key (and, for masks, its
  // attnMask), every sub-variant, lies starting at the 1st to the 6th read
  const sdpa = cases[0];
  const afters = (f: Family) => (f.changes ? [1, 2, 3, 4, 5, 6] : [1]);
  for (const f of families) {
    for (let option = 0; option < Math.min(f.options, 10); option++) {
      test(`scaledDotProductAttention query and key: ${f.name}, variant ${option}`, async () => {
        for (const slot of [0, 1])
          for (const after of afters(f)) await check(sdpa, slot, f, option, after, { B: 1, H: 2, Lq: 5, Lk: 7, E: 4, Ev: 3 }, 1000 + option);
      });
    }
    if (f.levels.includes("data")) {
      test(`scaledDotProductAttention boolean attnMask: ${f.name}, every variant`, async () => {
        for (let option = 0; option < f.options; option++)
          await check(sdpa, 3, f, option, 2, { B: 1, H: 1, Lq: 6, Lk: 5, E: 4, Ev: 4 }, 2000 + option);
      });
    }
  }

  // every argument of every function, every kind of lie and sub-variant: one test per function,
  // naming every (argument, kind) that fails with its first failure
  for (const c of cases) {
    test(`survey: ${c.name}: every argument, every kind of lie`, async () => {
      const failures = new Map<string, string>();
      for (const [si, slot] of c.slots.entries()) {
        for (const f of families.filter((x) => usable(x, slot))) {
          for (let option = 0; option < f.options; option += f.options > 12 ? 5 : 1) {
            for (const after of f.changes ? [1, 2, 3, 5] : [1]) {
              const key = `${slot.name} / ${f.name}`;
              if (failures.has(key)) continue;
              try {
                await check(c, si, f, option, after, { B: 2, H: 2, Lq: 5, Lk: 7, E: 4, Ev: 3 }, 5000 + option);
              } catch (e) {
                failures.set(key, String((e as Error).message).split("\n")[0]);
              }
            }
          }
        }
      }
      expect([...failures].map(([k, m]) => `${k}: ${m}`)).toEqual([]);
    }, 120_000);
  }

  test("a shape getter answering [2, 3, 4] and then [200, 300, 400], through each function that takes [2, 3, 4]", async () => {
    const shapeFamily = families.find((f) => f.name.startsWith("tensor whose shape getter"))!;
    const d = { B: 2, H: 3, Lq: 3, Lk: 3, E: 4, Ev: 4 };
    const custom: Case[] = [
      {
        name: "scaledDotProductAttention query",
        slots: [{ name: "query", index: 0 }],
        setup: (_, r) => ({
          honest: [f32(r, [2, 3, 4]), f32(r, [2, 3, 4])],
          run: ([q, k]) => [lib.scaledDotProductAttention(T(q), T(k), T(k)).data],
          dispose: () => {},
        }),
      },
      {
        name: "linearAttention query",
        slots: [{ name: "query", index: 0 }],
        setup: (_, r) => ({
          honest: [f32(r, [2, 3, 4]), f32(r, [2, 3, 4])],
          run: ([q, k]) => [lib.linearAttention(T(q), T(k), T(k)).data],
          dispose: () => {},
        }),
      },
      {
        name: "Linear(4 -> 4).forward",
        slots: [{ name: "x", index: 0 }],
        setup: (_, r) => {
          const m = loaded(new lib.Linear({ inFeatures: 4, outFeatures: 4 }), r);
          return { honest: [f32(r, [2, 3, 4])], run: ([x]) => [m.forward(T(x)).data], dispose: () => m.dispose() };
        },
      },
      {
        name: "LayerNorm(4).forward",
        slots: [{ name: "x", index: 0 }],
        setup: (_, r) => {
          const m = loaded(new lib.LayerNorm({ normalizedShape: 4 }), r);
          return { honest: [f32(r, [2, 3, 4])], run: ([x]) => [m.forward(T(x)).data], dispose: () => m.dispose() };
        },
      },
    ];
    for (const c of custom) for (const after of [1, 2, 3]) await check(c, 0, shapeFamily, 8, after, d, 3000 + after);
  });

  test("option arrays (globalTokens, window, alibi) that answer differently on later reads: the right answer or a WasmAttentionError, canary intact", async () => {
    lib.shutdown();
    await lib.init({ simd: "baseline" });
    const q = lib.tensor(rng(9).floats(2 * 24 * 8), [1, 2, 24, 8]);
    // a Proxy whose length and each element answer honestly for their first `after` reads and as
    // `lie` afterwards (a library that reads each once sees the honest array); an array whose
    // elements are such getters
    const proxy = (arr: number[], after: number, lie: number[]) => {
      const reads = new Map<PropertyKey, number>();
      return new Proxy(arr, {
        get: (t, p, recv) => {
          if (p !== "length" && !/^\d+$/.test(String(p))) return Reflect.get(t, p, recv);
          const n = reads.get(p) ?? 0;
          reads.set(p, n + 1);
          return n >= after ? lie[p as never] : Reflect.get(t, p, recv);
        },
      });
    };
    const getters = (arr: number[], after: number, lie: number[]) => {
      const a = [...arr];
      a.forEach((x, i) => {
        let n = 0;
        Object.defineProperty(a, i, { get: () => (n++ < after ? x : lie[i]) });
      });
      return a;
    };
    const failures: string[] = [];
    for (let after = 0; after < 8; after++) {
      for (const lie of [
        [1e6, 5],
        [-3, 5],
        [0, 1e9],
        [0, 23, 24, 25],
        [NaN, 5],
        [2 ** 31, 5],
      ]) {
        // [what, the call with the array that `a` makes of the honest one]
        const calls: [string, (a: (arr: number[]) => number[]) => lib.Tensor][] = [
          ["globalTokens (Proxy)", (a) => lib.scaledDotProductAttention(q, q, q, { window: [2, 2], globalTokens: a([0, 5]) })],
          ["globalTokens (element getters)", (a) => lib.scaledDotProductAttention(q, q, q, { window: [2, 2], globalTokens: a([0, 5]) })],
          [
            "window (element getters)",
            (a) => lib.scaledDotProductAttention(q, q, q, { window: a([2, 2]) as unknown as [number, number], globalTokens: [0, 5] }),
          ],
          ["alibi (Proxy)", (a) => lib.scaledDotProductAttention(q, q, q, { alibi: a([0.5, 0.25]) })],
        ];
        for (const [name, call] of calls) {
          const make = name.includes("Proxy") ? (arr: number[]) => proxy(arr, after, lie) : (arr: number[]) => getters(arr, after, lie);
          // right answers: the honest array's, or the lie's where the lie is a valid value itself
          const answers = [JSON.stringify(bits([call((arr) => arr).data]))];
          try {
            const plainLie = name.includes("Proxy") ? lie : lie.slice(0, 2);
            answers.push(JSON.stringify(bits([call(() => plainLie).data])));
          } catch {
            // the lie alone is rejected
          }
          const live = lib.memoryStats().liveBytes;
          const guard = canary(lib);
          const what = `${name}, honest for ${after} reads, then ${JSON.stringify(lie)}`;
          try {
            const got = call(make);
            if (!answers.includes(JSON.stringify(bits([got.data])))) failures.push(`${what}: a wrong answer`);
          } catch (e) {
            if (!(e instanceof lib.WasmAttentionError)) failures.push(`${what}: ${describeError(e)}`);
          }
          try {
            guard();
          } catch (e) {
            failures.push(`${what}: ${(e as Error).message}`);
          }
          guard.dispose();
          if (lib.memoryStats().liveBytes !== live) failures.push(`${what}: live bytes ${live} -> ${lib.memoryStats().liveBytes}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });

  test("data whose byteLength is NaN leaves the heap usable", () =>
    check(sdpa, 0, families.find((f) => f.name.includes("byteLength getter"))!, 2, 1, { B: 1, H: 1, Lq: 4, Lk: 4, E: 4, Ev: 4 }, 4000));
});
