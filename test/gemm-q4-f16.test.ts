// The f16 and q4 kernels: half widening (every bit pattern) and rounding (pack_f16) against the
// rules written in float64; pack_q4 against llama.cpp's q4_0 rule (read back exactly through
// gemm_q4 with identity activations); gemm_f16 and gemm_q4 against a float64 oracle of the same
// dequantized math over a table of odd shapes (M 1, 3, 4, 5, 17; N 1, 7, 8, 9, 130; K 1, 5, 31,
// 32, 33, 67), every activation, bias, residual (also in place); and the baseline build against
// the relaxed one, bit for bit, in a child Node with --experimental-wasm-relaxed-simd.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { init, runtime } from "../src/init.js";
import { ACT } from "../src/linear.js";
import { expectClose, freshSeed, rng } from "./reference.js";
import { describeRun, removeBundle, runChild } from "./support/child.js";
import { halfToF32Bits, product, q4Weights, toHalf } from "./support/q4f16.js";
import { activations } from "./support/q8.js";

beforeAll(() => init());
afterAll(() => removeBundle());

type Format = "f16" | "q4";

// out (M, N) through pack_<format> of w (N, K) float32 and gemm_<format>
function gemm(
  format: Format,
  a: Float32Array,
  w: Float32Array,
  bias: Float32Array | null,
  residual: Float32Array | null,
  M: number,
  N: number,
  K: number,
  act: keyof typeof ACT,
  alias: boolean,
): Float32Array {
  const { kernels: k, heap } = runtime();
  const s = heap.scope();
  try {
    const src = s.put(w);
    const res = residual ? s.put(residual) : 0;
    const out = alias ? res : s.alloc(4 * M * N);
    const [pa, pb] = [s.put(a), bias ? s.put(bias) : 0];
    if (format === "f16") {
      const packed = s.alloc(k.pack_f16_bytes(N, K));
      k.pack_f16(packed, src, K, N, K, 0);
      k.gemm_f16(out, pa, packed, pb, res, s.alloc(k.gemm_f16_workspace(K)), M, N, K, ACT[act]);
    } else {
      const packed = s.alloc(k.pack_q4_bytes(N, K));
      k.pack_q4(packed, src, K, N, K);
      const [aq, aScales] = [s.alloc(M * (Math.ceil(K / 4) * 4)), s.alloc(4 * M)];
      k.quantize_rows_i8(aq, aScales, pa, M, K);
      k.gemm_q4(out, aq, aScales, packed, pb, res, s.alloc(k.gemm_q4_workspace(K)), M, N, K, ACT[act]);
    }
    return heap.f32(out, M * N).slice();
  } finally {
    s.release();
  }
}

// the weights each format multiplies by, in float64 (exact: halves and q * d are float32 values)

describe("half: widening and rounding", () => {
  test("f16_to_f32_n widens all 65536 bit patterns exactly (subnormals, +-0, +-Infinity, NaN payloads)", () => {
    const { kernels: k, heap } = runtime();
    const s = heap.scope();
    try {
      const src = s.alloc(2 * 65536);
      const dst = s.alloc(4 * 65536);
      const h = new Uint16Array(heap.memory.buffer, src, 65536);
      for (let i = 0; i < 65536; i++) h[i] = i;
      k.f16_to_f32_n(dst, src, 65535); // 65535: the scalar tail runs too
      k.f16_to_f32_n(dst + 4 * 65535, src + 2 * 65535, 1);
      const got = new Uint32Array(heap.memory.buffer, dst, 65536);
      for (let i = 0; i < 65536; i++)
        if (got[i] !== halfToF32Bits(i)) expect(`${got[i]!.toString(16)}`, `half 0x${i.toString(16)}`).toBe(halfToF32Bits(i).toString(16));
    } finally {
      s.release();
    }
  });

  test("pack_f16 rounds float32 to nearest half, ties to even: ties, overflow at 65520, subnormals, NaN", () => {
    const r = rng(freshSeed());
    const special = [
      0,
      -0,
      1,
      -1,
      65504,
      65519.99,
      65520,
      -65520,
      1e9,
      Infinity,
      -Infinity,
      2 ** -14,
      2 ** -24,
      2 ** -25,
      1.5 * 2 ** -25,
      2 ** -26,
      3 * 2 ** -25,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      1 + 2 ** -11 + 2 ** -20,
      2047.5,
      2049,
      1e-10,
      -3.25,
      6.1e-5,
      6.097555e-5,
    ];
    const x = Float32Array.from([...special, ...Array.from(r.floats(200, 4)), ...Array.from(r.floats(100, 1e-4)), ...Array.from(r.floats(100, 7e4))]);
    const K = x.length;
    const { kernels: k, heap } = runtime();
    const s = heap.scope();
    try {
      const packed = s.alloc(k.pack_f16_bytes(1, K));
      k.pack_f16(packed, s.put(x), K, 1, K, 0);
      // channel 0 of the one panel: every 8th half
      const halves = s.alloc(2 * K);
      const all = new Uint16Array(heap.memory.buffer, packed, 8 * K);
      new Uint16Array(heap.memory.buffer, halves, K).set(Array.from({ length: K }, (_, i) => all[8 * i]!));
      const wide = s.alloc(4 * K);
      k.f16_to_f32_n(wide, halves, K);
      const got = heap.f32(wide, K);
      for (let i = 0; i < K; i++)
        expect(Object.is(got[i], toHalf(x[i]!)) || got[i] === toHalf(x[i]!), `x = ${x[i]}: got ${got[i]}, want ${toHalf(x[i]!)}`).toBe(true);
      // channels 1..7 of the panel are zeros
      for (let i = 0; i < 8 * K; i++) if (i % 8) expect(all[i]).toBe(0);
      const nan = s.alloc(k.pack_f16_bytes(1, 1));
      k.pack_f16(nan, s.put(Float32Array.of(NaN)), 1, 1, 1, 0);
      expect(new Uint16Array(heap.memory.buffer, nan, 1)[0]! & 0x7e00).toBe(0x7e00);
    } finally {
      s.release();
    }
  });

  test("pack_f16 from half bits (copied) and from bfloat16 bits (rounded) gives the same panel as from float32", () => {
    const [N, K] = [9, 13];
    const w = rng(freshSeed()).floats(N * K, 3);
    const { kernels: k, heap } = runtime();
    const s = heap.scope();
    try {
      const bytes = k.pack_f16_bytes(N, K);
      const fromF32 = s.alloc(bytes);
      k.pack_f16(fromF32, s.put(w), K, N, K, 0);
      // half bits of w, row by row (rows K + 3 apart: the stride is honoured)
      const halfRows = s.alloc(2 * N * (K + 3));
      const hr = new Uint16Array(heap.memory.buffer, halfRows, N * (K + 3));
      const panel = new Uint16Array(heap.memory.buffer, fromF32, bytes / 2);
      for (let n = 0; n < N; n++) for (let kk = 0; kk < K; kk++) hr[n * (K + 3) + kk] = panel[(n >> 3) * K * 8 + kk * 8 + (n & 7)]!;
      const fromF16 = s.alloc(bytes);
      k.pack_f16(fromF16, halfRows, K + 3, N, K, 1);
      expect(Array.from(new Uint8Array(heap.memory.buffer, fromF16, bytes))).toEqual(Array.from(new Uint8Array(heap.memory.buffer, fromF32, bytes)));
      // bfloat16: the top halves of w's float32 bits (truncated), against float32 of the same values
      const bits = new Uint32Array(w.buffer);
      const bf = s.alloc(2 * N * K);
      new Uint16Array(heap.memory.buffer, bf, N * K).set(Array.from(bits, (b) => b >>> 16));
      const truncated = new Float32Array(Uint32Array.from(bits, (b) => (b >>> 16) << 16).buffer);
      const fromBf16 = s.alloc(bytes);
      const fromTrunc = s.alloc(bytes);
      k.pack_f16(fromBf16, bf, K, N, K, 2);
      k.pack_f16(fromTrunc, s.put(truncated), K, N, K, 0);
      expect(Array.from(new Uint8Array(heap.memory.buffer, fromBf16, bytes))).toEqual(
        Array.from(new Uint8Array(heap.memory.buffer, fromTrunc, bytes)),
      );
    } finally {
      s.release();
    }
  });
});

describe("pack_q4: llama.cpp's q4_0 rule, exactly", () => {
  test.each([
    [1, 1],
    [3, 5],
    [8, 31],
    [9, 32],
    [17, 33],
    [130, 67],
    [5, 768],
  ])("N=%i K=%i: identity activations read back q * d (to a rounding: 127 q d times the row scale 1/127)", (N, K) => {
    const seed = freshSeed();
    const r = rng(seed);
    const w = r.floats(N * K, 0.05);
    // a tie of magnitudes (the first wins: d = -(-0.04) / 8 > 0), a zero block, a block of large weights
    if (K >= 3) [w[0], w[1]] = [-0.04, 0.04];
    if (N >= 3) w.fill(0, 2 * K, 3 * K);
    if (N >= 2) w[K] = 4e5; // d = -5e4, near the top of the half range
    const identity = new Float32Array(K * K);
    for (let i = 0; i < K; i++) identity[i * K + i] = 1;
    const got = gemm("q4", identity, w, null, null, K, N, K, "none", false); // (K, N): column n is row n of W
    const want = q4Weights(w, N, K).deq;
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        // one nibble off would be off by d, a 1/8 of the block's largest weight
        if (!(Math.abs(got[k * N + n]! - want[n * K + k]!) <= 2 ** -22 * Math.abs(want[n * K + k]!))) {
          expect(got[k * N + n], `w[${n}, ${k}] = ${w[n * K + k]} (seed ${seed})`).toBe(want[n * K + k]);
        }
      }
    }
  });

  test("the q levels: the largest weight of a block is -8 * d; 16 levels are used", () => {
    const K = 32;
    const w = Float32Array.from({ length: K }, (_, i) => (i - 15.5) / 16);
    const { q, scales } = q4Weights(w, 1, K);
    expect(Math.min(...q)).toBe(-8);
    expect(Math.max(...q)).toBe(7);
    expect(new Set(q).size).toBe(16);
    expect(scales[0]).toBe(toHalf(15.5 / 16 / 8)); // max = -15.5/16 (the first of the tie), d = max / -8
    expect(
      Array.from(
        gemm(
          "q4",
          Float32Array.from({ length: K }, (_, i) => (i === 0 ? 1 : 0)),
          w,
          null,
          null,
          1,
          1,
          K,
          "none",
          false,
        ),
      ),
    ).toEqual([Math.fround(127 * q[0]! * scales[0]! * Math.fround(1 / 127))]);
  });
});

describe.each(["f16", "q4"] as const)("gemm_%s vs the float64 oracle of the dequantized product", (format) => {
  const shapes: [number, number, number][] = [];
  for (const M of [1, 3, 4, 5, 17]) for (const N of [1, 7, 8, 9, 130]) for (const K of [1, 5, 31, 32, 33, 67]) shapes.push([M, N, K]);
  shapes.push([5, 70, 768], [2, 9, 3072]);
  test.each(shapes)("M=%i N=%i K=%i", (M, N, K) => {
    const seed = freshSeed();
    const r = rng(seed);
    const a = r.floats(M * K, 2);
    const w = r.floats(N * K, 0.05);
    const bias = r.floats(N);
    const residual = r.floats(M * N);
    const { x, abs, terms } = product(format, a, w, M, N, K);
    for (const act of Object.keys(ACT) as (keyof typeof ACT)[]) {
      for (const [withBias, withResidual, alias] of [
        [false, false, false],
        [true, false, false],
        [true, true, false],
        [false, true, true],
      ] as const) {
        const got = gemm(format, a, w, withBias ? bias : null, withResidual ? residual : null, M, N, K, act, alias);
        const what = `${format} ${act} bias=${withBias} residual=${withResidual} alias=${alias} (seed ${seed})`;
        for (let n = 0; n < M * N; n++) {
          const b = withBias ? bias[n % N]! : 0;
          const res = withResidual ? residual[n]! : 0;
          const want = activations[act](x[n]! + b) + res;
          // float32 rounding: each term and sum (<= (terms + 2) 2^-24 sum |term|), then the bias, activation, residual
          const atol = (terms + 3) * 2 ** -24 * abs[n]! + 1e-6 * (Math.abs(x[n]!) + Math.abs(b) + Math.abs(res));
          if (!(Math.abs(got[n]! - want) <= atol + 1e-6 * Math.abs(want)))
            expectClose([got[n]!], [want], [1], { atol, rtol: 1e-6 }, `${what} at [${Math.floor(n / N)}, ${n % N}]`);
        }
      }
    }
  });

  test("any rows give the same bits (f16: M <= 4 widens in registers, M > 4 a group of panels once; q4: one path)", () => {
    for (const [N, K] of [
      [9, 37],
      [130, 67],
      [70, 768],
    ]) {
      const r = rng(freshSeed());
      const [a, w, bias] = [r.floats(17 * K, 2), r.floats(N * K, 0.05), r.floats(N)];
      const all = gemm(format, a, w, bias, null, 17, N, K, "relu", false);
      for (const [r0, rows] of [
        [0, 4],
        [4, 1],
        [13, 3],
        [16, 1],
      ]) {
        const part = gemm(format, a.subarray(r0 * K, (r0 + rows) * K), w, bias, null, rows, N, K, "relu", false);
        expect(Array.from(part), `rows ${r0}..${r0 + rows - 1} of N=${N} K=${K}`).toEqual(Array.from(all.subarray(r0 * N, (r0 + rows) * N)));
      }
    }
  });

  test("a NaN activation gives NaN in its row only; Infinity weights (f16) give +-Infinity or NaN as float32 does", () => {
    const [M, N, K] = [3, 9, 37];
    const r = rng(freshSeed());
    const a = r.floats(M * K);
    a[K + 2] = NaN;
    const got = gemm(format, a, r.floats(N * K), null, null, M, N, K, "none", false);
    for (let j = 0; j < N; j++) {
      expect(Number.isNaN(got[N + j])).toBe(true);
      expect(Number.isNaN(got[j]) || Number.isNaN(got[2 * N + j])).toBe(false);
    }
    if (format === "f16") {
      const w = new Float32Array(N * K).fill(0.5);
      w[3 * K] = 1e6; // past the half range: +Infinity
      const out = gemm(format, new Float32Array(K).fill(1), w, null, null, 1, N, K, "none", false);
      expect(out[3]).toBe(Infinity);
      expect(out[4]).toBe(K * 0.5);
    }
  });
});

describe("the relaxed build against the baseline", () => {
  test("in a child Node with --experimental-wasm-relaxed-simd: gemm_f16 and gemm_q4 give identical bits for act none and relu, first call and after tier-up", async () => {
    const run = await runChild("q4f16-relaxed-child.mjs", [], { timeoutMs: 120_000, nodeArgs: ["--experimental-wasm-relaxed-simd"] });
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
    expect(r!.cases).toBeGreaterThan(20);
    // gelu and silu go through exp_f32x4, whose multiply-adds the relaxed build may fuse
    expect(r!.worstOther).toBeLessThan(1e-6);
  });
});
