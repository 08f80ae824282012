// The q8 kernels: quantize_rows_i8 / quantize_weights_i8 against the rule written in float64,
// gemm_q8 against a float64 oracle of the same dequantized math (integer sums are exact, so only
// the float32 store rounds), over a table of shapes with tails (M, N, K of 1, 3, 4, 5, 17, 64 + 3;
// K odd), every activation, bias, residual (also in place); and the baseline build against the
// relaxed one, bit for bit (both run dot_i16x8_s), in a child Node with --experimental-wasm-relaxed-simd.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { init, runtime } from "../src/init.js";
import { ACT } from "../src/linear.js";
import { expectClose, freshSeed, rng } from "./reference.js";
import { describeRun, removeBundle, runChild } from "./support/child.js";
import { QMAX, activations, intSums, quantizeRows } from "./support/q8.js";

beforeAll(() => init());
afterAll(() => removeBundle());

const K4 = (K: number) => Math.ceil(K / 4) * 4;

// quantize_rows_i8 of x (M, K) (stride K4), read back unpadded
function kernelQuantize(x: Float32Array, M: number, K: number) {
  const { kernels: k, heap } = runtime();
  const s = heap.scope();
  try {
    const q = s.alloc(M * K4(K));
    const scales = s.alloc(4 * M);
    k.quantize_rows_i8(q, scales, s.put(x), M, K);
    const all = new Int8Array(heap.memory.buffer, q, M * K4(K));
    const rows = new Int8Array(M * K);
    for (let m = 0; m < M; m++) rows.set(all.subarray(m * K4(K), m * K4(K) + K), m * K);
    const pad = Array.from({ length: M }, (_, m) => all.subarray(m * K4(K) + K, (m + 1) * K4(K))).flatMap((p) => [...p]);
    return { q: rows, scales: heap.f32(scales, M).slice(), pad };
  } finally {
    s.release();
  }
}

// out (M, N) through the kernels: aq, aScales from quantize_rows_i8 of a; wq (N, K) int8 (stride K)
// packed by pack_q8 with wScales
function gemmQ8(
  a: Float32Array,
  wq: Int8Array,
  wScales: Float32Array,
  bias: Float32Array | null,
  residual: Float32Array | null,
  M: number,
  N: number,
  K: number,
  act: keyof typeof ACT,
  alias: boolean,
) {
  const { kernels: k, heap } = runtime();
  const s = heap.scope();
  try {
    const rawW = s.alloc(N * K);
    new Int8Array(heap.memory.buffer, rawW, N * K).set(wq);
    const packed = s.alloc(k.pack_q8_bytes(N, K));
    k.pack_q8(packed, rawW, K, N, K);
    const aq = s.alloc(M * K4(K));
    const aScales = s.alloc(4 * M);
    k.quantize_rows_i8(aq, aScales, s.put(a), M, K);
    const res = residual ? s.put(residual) : 0;
    const out = alias ? res : s.alloc(4 * M * N);
    k.gemm_q8(out, aq, aScales, packed, s.put(wScales), bias ? s.put(bias) : 0, res, s.alloc(k.gemm_q8_workspace(K)), M, N, K, ACT[act]);
    return heap.f32(out, M * N).slice();
  } finally {
    s.release();
  }
}

describe("quantize_rows_i8: the rule, exactly", () => {
  test.each([
    [1, 1],
    [3, 5],
    [4, 16],
    [5, 17],
    [17, 67],
    [2, 768],
  ])("M=%i K=%i: q and scales equal the float64 rule's; the padding to K4 is zeros", (M, K) => {
    const seed = freshSeed();
    const x = rng(seed).floats(M * K, 3);
    const got = kernelQuantize(x, M, K);
    const want = quantizeRows(x, M, K);
    expect(Array.from(got.scales), `scales (seed ${seed})`).toEqual(Array.from(want.scales));
    expect(Array.from(got.q), `q (seed ${seed})`).toEqual(Array.from(want.q));
    expect(got.pad.every((v) => v === 0)).toBe(true);
    for (let m = 0; m < M; m++) expect(Math.max(...Array.from(got.q.subarray(m * K, (m + 1) * K), Math.abs))).toBe(QMAX); // each row reaches 127
  });

  test("ties round to even; a zero row, a tiny row (max < 2^-100) and a NaN row", () => {
    // max 127: x * (127 / max) = x, so each x.5 is a tie
    const ties = Float32Array.from([127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 31.5]);
    expect(Array.from(kernelQuantize(ties, 1, 8).q)).toEqual([127, 0, 2, 2, 0, -2, -2, 32]);
    const rows = Float32Array.from([0, 0, 0, 1e-31, -1e-31, 0, NaN, 1, 2]);
    const got = kernelQuantize(rows, 3, 3);
    expect(Array.from(got.q)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(got.scales[0]).toBe(0);
    expect(Number.isNaN(got.scales[2])).toBe(true);
    const want = quantizeRows(rows, 3, 3);
    expect(Array.from(want.q)).toEqual(Array.from(got.q));
  });
});

describe("gemm_q8 vs the float64 oracle of the dequantized product", () => {
  const shapes: [number, number, number][] = [];
  for (const M of [1, 3, 4, 5, 17, 67]) for (const N of [1, 3, 8, 17, 67]) for (const K of [1, 3, 4, 5, 67]) shapes.push([M, N, K]);
  shapes.push([5, 130, 768], [2, 8, 3072]);
  for (const [M, N, K] of shapes) {
    test(`M=${M} N=${N} K=${K}`, () => {
      const seed = freshSeed();
      const r = rng(seed);
      const a = r.floats(M * K, 2);
      // weights from the float rule (rows reach +-127) plus one raw row using all of [-128, 127]
      const w = quantizeRows(r.floats(N * K, 0.05), N, K);
      for (let k = 0; k < K; k++) w.q[k] = k % 2 ? -128 : 127 - (k % 256);
      const bias = r.floats(N);
      const residual = r.floats(M * N);
      const aq = quantizeRows(a, M, K);
      const sums = intSums(aq.q, w.q, M, N, K);
      for (const act of Object.keys(ACT) as (keyof typeof ACT)[]) {
        for (const [withBias, withResidual, alias] of [
          [false, false, false],
          [true, false, false],
          [true, true, false],
          [false, true, true],
        ] as const) {
          const got = gemmQ8(a, w.q, w.scales, withBias ? bias : null, withResidual ? residual : null, M, N, K, act, alias);
          const want = new Float64Array(M * N);
          const atol = new Float64Array(M * N);
          for (let i = 0; i < M; i++) {
            for (let j = 0; j < N; j++) {
              const x = sums[i * N + j]! * aq.scales[i]! * w.scales[j]!;
              const b = withBias ? bias[j]! : 0;
              const res = withResidual ? residual[i * N + j]! : 0;
              want[i * N + j] = activations[act](x + b) + res;
              // float32 rounding of each term (convert, two products, the sum, the activation, the residual)
              atol[i * N + j] = 1e-6 * (Math.abs(x) + Math.abs(b) + Math.abs(res));
            }
          }
          const what = `${act} bias=${withBias} residual=${withResidual} alias=${alias} (seed ${seed})`;
          for (let n = 0; n < want.length; n++) {
            if (!(Math.abs(got[n]! - want[n]!) <= atol[n]! + 1e-6 * Math.abs(want[n]!))) {
              expectClose([got[n]!], [want[n]!], [1], { atol: atol[n]!, rtol: 1e-6 }, `${what} at [${Math.floor(n / N)}, ${n % N}]`);
            }
          }
        }
      }
    });
  }

  test("a row of NaN gives a row of NaN; the other rows are untouched", () => {
    const [M, N, K] = [3, 9, 5];
    const r = rng(freshSeed());
    const a = r.floats(M * K);
    a[K + 2] = NaN;
    const w = quantizeRows(r.floats(N * K), N, K);
    const got = gemmQ8(a, w.q, w.scales, null, null, M, N, K, "none", false);
    for (let j = 0; j < N; j++) {
      expect(Number.isNaN(got[N + j])).toBe(true);
      expect(Number.isNaN(got[j]) || Number.isNaN(got[2 * N + j])).toBe(false);
    }
  });
});

describe("the relaxed build against the baseline", () => {
  test("in a child Node with --experimental-wasm-relaxed-simd: identical bits for act none and relu, first call and after tier-up", async () => {
    const run = await runChild("q8-relaxed-child.mjs", [], { timeoutMs: 120_000, nodeArgs: ["--experimental-wasm-relaxed-simd"] });
    const r = run.json as {
      relaxed: boolean;
      identical: boolean;
      stable: boolean;
      cases: number;
      worstOther: number;
      mismatch: string | null;
    } | null;
    expect(r, describeRun(run)).not.toBeNull();
    expect(r!.relaxed).toBe(true);
    expect(r!.mismatch, describeRun(run)).toBeNull();
    expect(r!.identical).toBe(true);
    expect(r!.stable).toBe(true);
    expect(r!.cases).toBeGreaterThan(10);
    // gelu and silu go through exp_f32x4, whose multiply-adds the relaxed build may fuse
    expect(r!.worstOther).toBeLessThan(1e-6); // normwise: max |d| / max |out|
  });
});
