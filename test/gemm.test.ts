import { beforeAll, describe, expect, test } from "vitest";
import { init, runtime } from "../src/init.js";
import { ACT } from "../src/linear.js";
import { activations, expectClose, freshSeed, rng } from "./reference.js";

beforeAll(() => init());

// out (M, N) = act(a (M, K) . w (N, K)^T + bias) + residual, through pack_f32_w and gemm_f32
function gemm(
  a: Float32Array,
  w: Float32Array,
  bias: Float32Array | null,
  residual: Float32Array | null,
  M: number,
  N: number,
  K: number,
  act: keyof typeof ACT,
  aliasResidual: boolean,
) {
  const { kernels: k, heap } = runtime();
  const s = heap.scope();
  try {
    const wRaw = s.put(w);
    const packed = s.alloc(4 * K * Math.ceil(N / 32) * 32);
    k.pack_f32_w(packed, wRaw, K, N, K);
    const res = residual ? s.put(residual) : 0;
    const out = aliasResidual ? res : s.alloc(4 * M * N);
    k.gemm_f32(out, s.put(a), packed, bias ? s.put(bias) : 0, res, s.alloc(k.gemm_f32_workspace()), M, N, K, ACT[act]);
    return heap.f32(out, M * N).slice();
  } finally {
    s.release();
  }
}

describe("gemm_f32's one-row kernel (row blocks of fewer than 4 rows) gives the same bits as the 4 x 8 tile", () => {
  for (const [N, K] of [
    [1, 5],
    [7, 67],
    [33, 64],
    [130, 67],
    [300, 768],
  ] as const) {
    test(`N=${N} K=${K}: each row alone equals the same row inside a block of 4`, () => {
      const r = rng(freshSeed());
      const a = r.floats(8 * K, 2);
      const w = r.floats(N * K);
      const bias = r.floats(N);
      const residual = r.floats(8 * N);
      const all = gemm(a, w, bias, residual, 8, N, K, "gelu", false);
      for (let i = 0; i < 8; i++) {
        const one = gemm(a.subarray(i * K, (i + 1) * K), w, bias, residual.subarray(i * N, (i + 1) * N), 1, N, K, "gelu", false);
        expect(Array.from(one)).toEqual(Array.from(all.subarray(i * N, (i + 1) * N)));
      }
      // 7 rows: a block of 4, then 3 rows through the one-row kernel
      expect(Array.from(gemm(a.subarray(0, 7 * K), w, bias, residual.subarray(0, 7 * N), 7, N, K, "gelu", false))).toEqual(
        Array.from(all.subarray(0, 7 * N)),
      );
    });
  }
});

describe("gemm_f32 vs the float64 reference", () => {
  const shapes: [number, number, number][] = [];
  for (const M of [1, 3, 4, 5, 67]) for (const N of [1, 7, 8, 9, 130]) for (const K of [1, 5, 67]) shapes.push([M, N, K]);
  shapes.push([17, 300, 64], [2, 8, 768]);
  for (const [M, N, K] of shapes) {
    test(`M=${M} N=${N} K=${K}`, () => {
      const seed = freshSeed();
      const r = rng(seed);
      const a = r.floats(M * K, 2);
      const w = r.floats(N * K);
      const bias = r.floats(N);
      const residual = r.floats(M * N);
      for (const act of Object.keys(ACT) as (keyof typeof ACT)[]) {
        for (const [withBias, withResidual, alias] of [
          [false, false, false],
          [true, false, false],
          [true, true, false],
          [true, true, true],
        ]) {
          const got = gemm(a, w, withBias ? bias : null, withResidual ? residual : null, M, N, K, act, alias);
          const want = new Float64Array(M * N);
          for (let i = 0; i < M; i++) {
            for (let j = 0; j < N; j++) {
              let acc = withBias ? bias[j] : 0;
              for (let k = 0; k < K; k++) acc += a[i * K + k] * w[j * K + k];
              want[i * N + j] = activations[act](acc) + (withResidual ? residual[i * N + j] : 0);
            }
          }
          // f32 sums of K products: the rounding error grows with K, so atol does too
          expectClose(
            got,
            want,
            [M, N],
            { atol: 1e-5 * Math.max(1, K / 64), rtol: 1e-5 },
            `${act} bias=${withBias} residual=${withResidual} alias=${alias} (seed ${seed})`,
          );
        }
      }
    });
  }
});
