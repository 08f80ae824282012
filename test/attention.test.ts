import { beforeAll, describe, expect, test } from "vitest";
import { init, scaledDotProductAttention, tensor } from "../src/index.js";
import { type Dims, attentionRef, expectClose, freshSeed, rng } from "./reference.js";

beforeAll(() => init());

const TOL = { atol: 2e-6, rtol: 1e-5 };

interface Case {
  name: string;
  dims: Dims;
  window?: [number, number];
  mask?: { shape: number[]; dtype: "bool" | "float" };
  causal?: "top-left" | "bottom-right";
  scale?: number;
}

const d = (batch: number[], Hq: number, Hk: number, Lq: number, Lk: number, E: number, Ev = E): Dims => ({ batch, Hq, Hk, Lq, Lk, E, Ev });

// head dims 1..80, L = 1, Lq != Lk, two tiles of keys plus a tail (64 + 3, 130), batch > 1, GQA
const cases: Case[] = [
  ...[1, 3, 4, 5, 7, 17, 33, 64, 80].map((E) => ({ name: `E=${E}`, dims: d([2], 3, 3, 5, 67, E) })),
  { name: "L=1", dims: d([1], 1, 1, 1, 1, 8) },
  { name: "Lq=1 decode-like", dims: d([2], 4, 4, 1, 130, 16) },
  { name: "Lq=1, E=7: keys read in place, odd tails", dims: d([2], 3, 3, 1, 67, 7, 5) },
  { name: "Lq=2, E=33, bool mask: keys read in place", dims: d([1], 2, 2, 2, 70, 33), mask: { shape: [2, 70], dtype: "bool" } },
  { name: "Lq=3, E=1, causal bottom-right: keys read in place", dims: d([1], 2, 2, 3, 9, 1), causal: "bottom-right" },
  { name: "Lq>Lk", dims: d([1], 2, 2, 17, 5, 7) },
  { name: "Ev != E", dims: d([2], 2, 2, 9, 13, 12, 5) },
  { name: "Ev=1", dims: d([1], 2, 2, 4, 9, 3, 1) },
  { name: "no batch dims [H, L, E]", dims: d([], 3, 3, 6, 10, 8) },
  { name: "two batch dims", dims: d([2, 3], 2, 2, 3, 4, 5) },
  { name: "GQA 6/2", dims: d([2], 6, 2, 5, 67, 16) },
  { name: "MQA 4/1", dims: d([1], 4, 1, 3, 20, 8) },
  { name: "long keys", dims: d([1], 1, 1, 3, 300, 32) },
  { name: "bool mask [Lq, Lk]", dims: d([2], 2, 2, 7, 67, 8), mask: { shape: [7, 67], dtype: "bool" } },
  { name: "float mask [B, 1, Lq, Lk]", dims: d([2], 3, 3, 5, 9, 4), mask: { shape: [2, 1, 5, 9], dtype: "float" } },
  { name: "bool mask [B, 1, 1, Lk]", dims: d([2], 3, 3, 5, 70, 4), mask: { shape: [2, 1, 1, 70], dtype: "bool" } },
  { name: "float mask [Lk]", dims: d([2], 2, 2, 4, 11, 6), mask: { shape: [11], dtype: "float" } },
  { name: "float mask [Lq, 1]", dims: d([1], 2, 2, 4, 11, 6), mask: { shape: [4, 1], dtype: "float" } },
  { name: "mask full shape with GQA", dims: d([2], 4, 2, 3, 8, 5), mask: { shape: [2, 4, 3, 8], dtype: "bool" } },
  { name: "causal square", dims: d([2], 2, 2, 67, 67, 16), causal: "top-left" },
  { name: "causal Lq < Lk top-left", dims: d([1], 2, 2, 5, 130, 8), causal: "top-left" },
  { name: "causal Lq > Lk top-left", dims: d([1], 2, 2, 9, 4, 8), causal: "top-left" },
  { name: "causal Lq < Lk bottom-right", dims: d([1], 2, 2, 5, 130, 8), causal: "bottom-right" },
  { name: "causal Lq > Lk bottom-right (first rows fully masked)", dims: d([1], 2, 2, 9, 4, 8), causal: "bottom-right" },
  { name: "explicit scale", dims: d([1], 2, 2, 5, 6, 7), scale: 0.05 },
  // Lk - Lq = -1 once collided with the thread pool's scratch placeholder (found by the property tests)
  { name: "causal bottom-right, Lq = Lk + 1 (diagonal at -1)", dims: d([1], 2, 2, 4, 3, 26), causal: "bottom-right" },
  { name: "window [3, 2]", dims: d([2], 2, 2, 67, 67, 16), window: [3, 2] },
  { name: "window [0, 0]: each query sees itself", dims: d([1], 2, 2, 9, 9, 4), window: [0, 0] },
  { name: "window [70, Infinity] across tiles", dims: d([1], 1, 1, 200, 200, 8), window: [70, Infinity] },
  { name: "window [5, 3] with causal (right becomes 0)", dims: d([1], 2, 2, 40, 40, 7), window: [5, 3], causal: "top-left" },
  { name: "window [4, 4] bottom-right, Lq < Lk, keys read in place", dims: d([2], 2, 2, 3, 150, 16), window: [4, 4], causal: "bottom-right" },
  { name: "window with a bool mask and GQA", dims: d([1], 4, 2, 33, 70, 8), window: [10, 10], mask: { shape: [33, 70], dtype: "bool" } },
];

describe("scaledDotProductAttention vs the float64 reference", () => {
  for (const c of cases) {
    test(c.name, () => {
      const seed = freshSeed();
      const r = rng(seed);
      const { batch, Hq, Hk, Lq, Lk, E, Ev } = c.dims;
      const q = tensor(
        r.floats(
          [...batch, Hq, Lq, E].reduce((a, b) => a * b, 1),
          2,
        ),
        [...batch, Hq, Lq, E],
      );
      const k = tensor(
        r.floats(
          [...batch, Hk, Lk, E].reduce((a, b) => a * b, 1),
          2,
        ),
        [...batch, Hk, Lk, E],
      );
      const v = tensor(r.floats([...batch, Hk, Lk, Ev].reduce((a, b) => a * b, 1)), [...batch, Hk, Lk, Ev]);
      const n = c.mask ? c.mask.shape.reduce((a, b) => a * b, 1) : 0;
      const mask = c.mask && (c.mask.dtype === "bool" ? tensor(r.bools(n), c.mask.shape) : tensor(r.floats(n, 3), c.mask.shape));
      const qCopy = q.data.slice();
      const { output, weights } = scaledDotProductAttention(q, k, v, {
        attnMask: mask,
        isCausal: c.causal !== undefined && !c.window,
        causalAlignment: c.causal,
        window: c.window && c.causal ? [c.window[0], 0] : c.window,
        scale: c.scale,
        enableGqa: Hq !== Hk,
        returnWeights: true,
      });
      const ref = attentionRef(q.data, k.data, v.data, c.dims, {
        scale: c.scale,
        mask,
        causalOffset: c.causal === "bottom-right" ? Lk - Lq : c.causal ? 0 : undefined,
        window: c.window && c.causal ? [c.window[0], 0] : c.window,
        diag: c.causal === "bottom-right" ? Lk - Lq : 0,
      });
      expect(output.shape).toEqual([...batch, Hq, Lq, Ev]);
      expect(weights.shape).toEqual([...batch, Hq, Lq, Lk]);
      expectClose(output.data, ref.out, output.shape as number[], TOL, `output (seed ${seed})`);
      expectClose(weights.data, ref.weights, weights.shape as number[], TOL, `weights (seed ${seed})`);
      // without weights: the same numbers, bit for bit
      const plain = scaledDotProductAttention(q, k, v, {
        attnMask: mask,
        isCausal: c.causal !== undefined && !c.window,
        causalAlignment: c.causal,
        window: c.window && c.causal ? [c.window[0], 0] : c.window,
        scale: c.scale,
        enableGqa: Hq !== Hk,
      });
      expect(plain.data).toEqual(output.data);
      expect(q.data).toEqual(qCopy);
    });
  }
});

describe("masking at the edges", () => {
  const r = rng(freshSeed());
  const q = tensor(r.floats(2 * 3 * 4), [2, 3, 4]);
  const k = tensor(r.floats(2 * 5 * 4), [2, 5, 4]);
  const v = tensor(r.floats(2 * 5 * 2), [2, 5, 2]);

  test("a fully masked row gives zeros in output and weights, other rows are untouched", () => {
    const keep = new Uint8Array(3 * 5).fill(1);
    keep.fill(0, 5, 10); // query row 1 sees nothing
    const { output, weights } = scaledDotProductAttention(q, k, v, { attnMask: tensor(keep, [3, 5]), returnWeights: true });
    for (const h of [0, 1]) {
      expect(Array.from(output.data.subarray(h * 6 + 2, h * 6 + 4))).toEqual([0, 0]);
      expect(Array.from(weights.data.subarray(h * 15 + 5, h * 15 + 10))).toEqual([0, 0, 0, 0, 0]);
    }
    const ref = attentionRef(q.data, k.data, v.data, d([], 2, 2, 3, 5, 4, 2), { mask: tensor(keep, [3, 5]) });
    expectClose(output.data, ref.out, [2, 3, 2], TOL);
    expect(output.data.every(Number.isFinite)).toBe(true);
  });

  test("-Infinity in a float mask removes exactly those keys", () => {
    const m = new Float32Array(5).fill(0);
    m[1] = -Infinity;
    m[3] = -Infinity;
    const { weights } = scaledDotProductAttention(q, k, v, { attnMask: tensor(m, [5]), returnWeights: true });
    for (let row = 0; row < 6; row++) {
      expect(weights.data[row * 5 + 1]).toBe(0);
      expect(weights.data[row * 5 + 3]).toBe(0);
      const sum = weights.data.subarray(row * 5, row * 5 + 5).reduce((a, b) => a + b, 0);
      expect(Math.abs(sum - 1)).toBeLessThan(1e-6);
    }
  });

  test("a whole tile of masked keys (keys 64..127 of 130) is skipped and gets zero weight", () => {
    const r2 = rng(freshSeed());
    const Lk = 130;
    const qq = tensor(r2.floats(2 * 5 * 8), [1, 2, 5, 8]);
    const kk = tensor(r2.floats(2 * Lk * 8), [1, 2, Lk, 8]);
    const keep = Uint8Array.from({ length: Lk }, (_, j) => (j >= 64 && j < 128 ? 0 : 1));
    const mask = tensor(keep, [1, 1, 1, Lk]);
    const { output, weights } = scaledDotProductAttention(qq, kk, kk, { attnMask: mask, returnWeights: true });
    for (let row = 0; row < 10; row++) {
      expect(weights.data.subarray(row * Lk + 64, row * Lk + 128).every((w) => w === 0)).toBe(true);
    }
    const ref = attentionRef(qq.data, kk.data, kk.data, d([1], 2, 2, 5, Lk, 8), { mask });
    expectClose(output.data, ref.out, output.shape, TOL);
  });

  test("an all -Infinity float mask gives zeros, not NaN", () => {
    const out = scaledDotProductAttention(q, k, v, { attnMask: tensor(new Float32Array(5).fill(-Infinity), [5]) });
    expect(Array.from(out.data)).toEqual(new Array(12).fill(0));
  });

  test("a -3.4e38 mask is a bias, not a removal: a row of only such keys is uniform, as in torch", () => {
    const out = scaledDotProductAttention(q, k, v, { attnMask: tensor(new Float32Array(5).fill(-3.4e38), [5]), returnWeights: true });
    const ref = attentionRef(q.data, k.data, v.data, d([], 2, 2, 3, 5, 4, 2), { mask: tensor(new Float32Array(5).fill(-3.4e38), [5]) });
    expect(out.output.data.every(Number.isFinite)).toBe(true);
    expectClose(out.output.data, ref.out, [2, 3, 2], { atol: 1e-6, rtol: 1e-5 });
  });

  test("scores of magnitude 1e4 do not overflow", () => {
    const big = tensor(
      q.data.map((x) => x * 300),
      q.shape,
    );
    const bigK = tensor(
      k.data.map((x) => x * 300),
      k.shape,
    );
    const out = scaledDotProductAttention(big, bigK, v);
    const ref = attentionRef(big.data, bigK.data, v.data, d([], 2, 2, 3, 5, 4, 2));
    expect(out.data.every(Number.isFinite)).toBe(true);
    expectClose(out.data, ref.out, [2, 3, 2], { atol: 1e-5, rtol: 1e-4 });
  });

  test("NaN in one query row stays in that row", () => {
    const bad = q.data.slice();
    bad[4] = NaN; // head 0, row 1
    const out = scaledDotProductAttention(tensor(bad, q.shape), k, v);
    for (let row = 0; row < 6; row++) {
      const vals = Array.from(out.data.subarray(row * 2, row * 2 + 2));
      expect(vals.every(Number.isNaN)).toBe(row === 1);
    }
  });

  test("empty: Lq = 0 and batch 0 give empty outputs; Lk = 0 gives zeros", () => {
    const e = scaledDotProductAttention(tensor(new Float32Array(0), [2, 0, 4]), k, v);
    expect(e.shape).toEqual([2, 0, 2]);
    const b0 = scaledDotProductAttention(
      tensor(new Float32Array(0), [0, 2, 3, 4]),
      tensor(new Float32Array(0), [0, 2, 5, 4]),
      tensor(new Float32Array(0), [0, 2, 5, 2]),
    );
    expect(b0.shape).toEqual([0, 2, 3, 2]);
    const z = scaledDotProductAttention(q, tensor(new Float32Array(0), [2, 0, 4]), tensor(new Float32Array(0), [2, 0, 2]));
    expect(Array.from(z.data)).toEqual(new Array(12).fill(0));
  });

  test("L = 100,000 with a causal window of 128: no index overflow past 65,535, rows checked against the reference", () => {
    const r2 = rng(freshSeed());
    const [L, E, w] = [100_000, 16, 128];
    const big = tensor(r2.floats(L * E), [1, L, E]);
    const out = scaledDotProductAttention(big, big, big, { window: [w, 0] });
    for (const i of [0, 1, 127, 128, 65_535, 65_536, 65_600, 99_999]) {
      const lo = Math.max(0, i - w);
      const rows = i - lo + 1;
      const slice = (t: Float32Array) => t.slice(lo * E, (i + 1) * E);
      const ref = attentionRef(slice(big.data).slice(-E), slice(big.data), slice(big.data), d([], 1, 1, 1, rows, E));
      expectClose(out.data.subarray(i * E, (i + 1) * E), ref.out, [E], { atol: 2e-6, rtol: 1e-5 }, `row ${i}`);
    }
  });

  test("window errors", () => {
    expect(() => scaledDotProductAttention(q, k, v, { window: [1] as never })).toThrow(
      /window: expected \[left, right\], each a non-negative integer or Infinity, got \[1\]/,
    );
    expect(() => scaledDotProductAttention(q, k, v, { window: [-1, 2] })).toThrow(/got \[-1, 2\]/);
    expect(() => scaledDotProductAttention(q, k, v, { window: [1.5, 2] })).toThrow(/non-negative integer/);
  });

  test("the same input gives bit-identical output across 100 calls", () => {
    const first = scaledDotProductAttention(q, k, v).data;
    for (let i = 0; i < 100; i++) expect(scaledDotProductAttention(q, k, v).data).toEqual(first);
  });
});
