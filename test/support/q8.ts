// The q8 rules written plainly in float64 (with Math.fround where the kernels round to float32),
// for the q8 tests: quantization of rows, and the dequantized product as a float64 oracle.

/** Largest |q|: symmetric int8, activations and weights alike. */
export const QMAX = 127;
const TINY = 2 ** -100; // rows whose max |x| is below quantize to zeros

const f = Math.fround;

/** round to nearest, ties to even (f32x4.nearest); NaN -> 0 (i32x4.trunc_sat_f32x4_s) */
export function nearestEven(x: number): number {
  if (Number.isNaN(x)) return 0;
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * x (M, K) -> q (M, K) int8 and scales (M): scale = max|x_row| / 127, q = nearest(x * fl(127 / max)),
 * every step rounded to float32 as the kernel does.
 */
export function quantizeRows(x: Float32Array, M: number, K: number): { q: Int8Array; scales: Float32Array } {
  const q = new Int8Array(M * K);
  const scales = new Float32Array(M);
  for (let m = 0; m < M; m++) {
    let max = 0;
    for (let k = 0; k < K; k++) max = Math.max(max, Math.abs(x[m * K + k]!));
    scales[m] = f(max / QMAX);
    const inv = max >= TINY ? f(QMAX / max) : 0;
    for (let k = 0; k < K; k++) q[m * K + k] = nearestEven(f(x[m * K + k]! * inv));
  }
  return { q, scales };
}

// float64 activations, as in test/gemm.test.ts
const erf = (x: number): number => {
  const z = Math.abs(x);
  if (z < 3) {
    let term = z;
    let sum = z;
    for (let n = 1; n < 200; n++) {
      term *= (-z * z) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  let c = 0;
  for (let n = 60; n >= 1; n--) c = n / 2 / (z + c);
  return Math.sign(x) * (1 - Math.exp(-z * z) / Math.sqrt(Math.PI) / (z + c));
};

export const activations = {
  none: (x: number) => x,
  relu: (x: number) => Math.max(x, 0),
  gelu: (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  "gelu-tanh": (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  silu: (x: number) => x / (1 + Math.exp(-x)),
} as const;

/** exact integer sums (M, N) of aq (M, K) . wq (N, K)^T */
export function intSums(aq: Int8Array, wq: Int8Array, M: number, N: number, K: number): Float64Array {
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += aq[i * K + k]! * wq[j * K + k]!;
      out[i * N + j] = s;
    }
  }
  return out;
}
