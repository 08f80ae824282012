// The kernels of the weight formats q8, f16 and q4 against the rules written in float64: one table
// of the formats (KERNELS: how each gets its weights, the shapes it is run on) and one body of
// each test. gemm_q8, gemm_f16 and gemm_q4 against a float64 oracle of the same dequantized math
// (q8's integer sums are exact, so only the float32 store rounds) over each format's table of
// shapes with tails (q8: M 1, 3, 4, 5, 17, 67; N 1, 3, 8, 17, 67; K 1, 3, 4, 5, 67, for the rows
// padded to K4; f16 and q4: M 1, 3, 4, 5, 17; N 1, 7, 8, 9, 130; K 1, 5, 31, 32, 33, 67, for the
// blocks of 32), every activation, bias, residual (also in place); any rows give the same bits; a
// NaN row; and the baseline build against the relaxed one, bit for bit, in a child Node with
// --experimental-wasm-relaxed-simd. Next to the table, what is one format's own:
// quantize_rows_i8 (q8's rule, also q4's activations), half widening (every bit pattern) and
// rounding (pack_f16), and pack_q4 against llama.cpp's q4_0 rule (read back exactly through
// gemm_q4 with identity activations).
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { init, runtime } from "../src/init.js";
import { ACT } from "../src/linear.js";
import { expectClose, freshSeed, rng } from "./reference.js";
import { type ChildResult, describeRun, removeBundle, runChild } from "./support/child.js";
import { type Format, QMAX, type Q8Rows, activations, halfToF32Bits, product, q4Weights, quantizeRows, toHalf } from "./support/quantized.js";

beforeAll(() => init());
afterAll(() => removeBundle());

const K4 = (K: number) => Math.ceil(K / 4) * 4;
type Shape = [number, number, number];
const grid = (Ms: number[], Ns: number[], Ks: number[]): Shape[] => Ms.flatMap((M) => Ns.flatMap((N) => Ks.map((K) => [M, N, K] as Shape)));

/** the weights a kernel is given: q8 int8 rows (N, K) and their scales; f16 and q4 float32 (N, K), which pack_* rounds */
type Weights = Float32Array | Q8Rows;

interface Kernel {
  name: Format;
  /** the shapes of the oracle test: tails where the format has them */
  shapes: Shape[];
  /** the weights (N, K) the kernel multiplies, from float32 values */
  weights(w: Float32Array, N: number, K: number): Weights;
}

const KERNELS: Kernel[] = [
  {
    name: "q8",
    // K 3, 4, 5: the rows of int8 activations are padded to K4
    shapes: [...grid([1, 3, 4, 5, 17, 67], [1, 3, 8, 17, 67], [1, 3, 4, 5, 67]), [5, 130, 768], [2, 8, 3072]],
    // rows from the float rule (they reach +-127) but row 0 raw, using all of [-128, 127]
    weights: (w, N, K) => {
      const rows = quantizeRows(w, N, K);
      for (let k = 0; k < K; k++) rows.q[k] = k % 2 ? -128 : 127 - (k % 256);
      return rows;
    },
  },
  {
    name: "f16",
    // N 7, 8, 9: panels of 8
    shapes: [...grid([1, 3, 4, 5, 17], [1, 7, 8, 9, 130], [1, 5, 31, 32, 33, 67]), [5, 70, 768], [2, 9, 3072]],
    weights: (w) => w,
  },
  {
    name: "q4",
    // K 31, 32, 33: blocks of 32
    shapes: [...grid([1, 3, 4, 5, 17], [1, 7, 8, 9, 130], [1, 5, 31, 32, 33, 67]), [5, 70, 768], [2, 9, 3072]],
    weights: (w) => w,
  },
];

// out (M, N) through pack_<format> of w and gemm_<format>; q8 and q4 quantize the activations with
// quantize_rows_i8 first, as the host does
function gemm(
  format: Format,
  a: Float32Array,
  w: Weights,
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
    const res = residual ? s.put(residual) : 0;
    const out = alias ? res : s.alloc(4 * M * N);
    const [pa, pb] = [s.put(a), bias ? s.put(bias) : 0];
    const quantized = () => {
      const [aq, aScales] = [s.alloc(M * K4(K)), s.alloc(4 * M)];
      k.quantize_rows_i8(aq, aScales, pa, M, K);
      return [aq, aScales] as const;
    };
    if (format === "q8") {
      if (w instanceof Float32Array) throw new Error("gemm q8: int8 rows expected");
      const rawW = s.alloc(N * K);
      new Int8Array(heap.memory.buffer, rawW, N * K).set(w.q);
      const packed = s.alloc(k.pack_q8_bytes(N, K));
      k.pack_q8(packed, rawW, K, N, K);
      const [aq, aScales] = quantized();
      k.gemm_q8(out, aq, aScales, packed, s.put(w.scales), pb, res, s.alloc(k.gemm_q8_workspace(K)), M, N, K, ACT[act]);
    } else {
      if (!(w instanceof Float32Array)) throw new Error(`gemm ${format}: float32 weights expected`);
      const src = s.put(w);
      if (format === "f16") {
        const packed = s.alloc(k.pack_f16_bytes(N, K));
        k.pack_f16(packed, src, K, N, K, 0);
        k.gemm_f16(out, pa, packed, pb, res, s.alloc(k.gemm_f16_workspace(K)), M, N, K, ACT[act]);
      } else {
        const packed = s.alloc(k.pack_q4_bytes(N, K));
        k.pack_q4(packed, src, K, N, K);
        const [aq, aScales] = quantized();
        k.gemm_q4(out, aq, aScales, packed, pb, res, s.alloc(k.gemm_q4_workspace(K)), M, N, K, ACT[act]);
      }
    }
    return heap.f32(out, M * N).slice();
  } finally {
    s.release();
  }
}

describe.each(KERNELS.map((k) => [k.name, k] as const))("gemm_%s vs the float64 oracle of the dequantized product", (format, { shapes, weights }) => {
  test.each(shapes)("M=%i N=%i K=%i", (M, N, K) => {
    const seed = freshSeed();
    const r = rng(seed);
    const a = r.floats(M * K, 2);
    const w = weights(r.floats(N * K, 0.05), N, K);
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
          // float32 rounding: each term and sum the kernel adds in float32 (<= (terms + 2) 2^-24 sum |term|;
          // none for q8, whose sums are exact integers), then the conversion, the bias, activation, residual
          const atol = (terms + 3) * 2 ** -24 * abs[n]! + 1e-6 * (Math.abs(x[n]!) + Math.abs(b) + Math.abs(res));
          if (!(Math.abs(got[n]! - want) <= atol + 1e-6 * Math.abs(want)))
            expectClose([got[n]!], [want], [1], { atol, rtol: 1e-6 }, `${what} at [${Math.floor(n / N)}, ${n % N}]`);
        }
      }
    }
  });

  test("any rows give the same bits (f16: M <= 4 widens in registers, M > 4 a group of panels once; q8 and q4: one path)", () => {
    for (const [N, K] of [
      [9, 37],
      [130, 67],
      [70, 768],
    ]) {
      const r = rng(freshSeed());
      const [a, w, bias] = [r.floats(17 * K, 2), weights(r.floats(N * K, 0.05), N, K), r.floats(N)];
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

  test.each([
    [3, 9, 5],
    [3, 9, 37],
  ])("a NaN activation gives NaN in its row only; the other rows are untouched (M=%i N=%i K=%i)", (M, N, K) => {
    const r = rng(freshSeed());
    const a = r.floats(M * K);
    a[K + 2] = NaN;
    const got = gemm(format, a, weights(r.floats(N * K), N, K), null, null, M, N, K, "none", false);
    for (let j = 0; j < N; j++) {
      expect(Number.isNaN(got[N + j])).toBe(true);
      expect(Number.isNaN(got[j]) || Number.isNaN(got[2 * N + j])).toBe(false);
    }
  });
});

describe("the relaxed build against the baseline", () => {
  // one child runs every format (test/support/quantized-relaxed-child.mjs); each format's results are checked on their own
  let run: ChildResult;
  beforeAll(async () => {
    run = await runChild("quantized-relaxed-child.mjs", [], { timeoutMs: 120_000, nodeArgs: ["--experimental-wasm-relaxed-simd"] });
  }, 130_000);

  test.each(KERNELS.map((k) => k.name))(
    "in a child Node with --experimental-wasm-relaxed-simd: gemm_%s gives identical bits for act none and relu, first call and after tier-up",
    (format) => {
      const all = run.json as {
        relaxed: boolean;
        formats: Record<Format, { identical: boolean; stable: boolean; cases: number; worstOther: number; mismatch: string | null }>;
      } | null;
      expect(all, describeRun(run)).not.toBeNull();
      expect(all!.relaxed).toBe(true);
      const r = all!.formats[format];
      expect(r, describeRun(run)).toBeDefined();
      expect(r.mismatch, describeRun(run)).toBeNull();
      expect(r.identical).toBe(true);
      expect(r.stable).toBe(true);
      expect(r.cases).toBeGreaterThan(20);
      // gelu and silu go through exp_f32x4, whose multiply-adds the relaxed build may fuse
      expect(r.worstOther).toBeLessThan(1e-6); // normwise: max |d| / max |out|
    },
  );
});

// what is one format's own

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

describe("quantize_rows_i8 (q8's rule; q8 and q4's activations): the rule, exactly", () => {
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

describe("half (f16): widening and rounding", () => {
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

  test("gemm_f16: Infinity weights (past the half range) give +-Infinity or NaN as float32 does", () => {
    const [N, K] = [9, 37];
    const w = new Float32Array(N * K).fill(0.5);
    w[3 * K] = 1e6; // past the half range: +Infinity
    const out = gemm("f16", new Float32Array(K).fill(1), w, null, null, 1, N, K, "none", false);
    expect(out[3]).toBe(Infinity);
    expect(out[4]).toBe(K * 0.5);
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
