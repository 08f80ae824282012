// The f16 and q4 rules written plainly in float64 (Math.fround where the kernels round to
// float32), for the f16 / q4 tests: rounding to half, llama.cpp's q4_0 quantization, and the
// dequantized weights the float64 oracles multiply.
import { nearestEven, quantizeRows } from "./q8.js";

const f = Math.fround;

/** x (a float32) rounded to the nearest half, ties to even, as a number: +-Infinity from 65520 up */
export function toHalf(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= 65520) return Math.sign(x) * Infinity;
  // the unit in the last place: 2^-24 below 2^-14 (subnormals), else 2^(e - 10)
  let e = Math.floor(Math.log2(a)); // log2 may round: 2^e <= a < 2^(e + 1) made sure below
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(-14, e) - 10);
  return Math.sign(x) * nearestEven(a / ulp) * ulp;
}

/** The float32 bit pattern of the half with bit pattern h (NaN: quiet or not, payload kept). */
export function halfToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (frac << 13)) >>> 0;
  const v = exp === 0 ? frac * 2 ** -24 : (1 + frac / 1024) * 2 ** (exp - 15);
  const bits = new Uint32Array(Float32Array.of(v).buffer)[0]!;
  return (sign | bits) >>> 0;
}

/** W (N, K) rounded to halves, as float32 (exact) */
export function halfWeights(w: Float32Array): Float32Array {
  return w.map(toHalf);
}

/**
 * W (N, K) quantized as llama.cpp's quantize_row_q4_0_ref, block by block of 32 along K (the last
 * block shorter): max = the value of largest magnitude (the first on a tie), d = max / -8,
 * id = d ? 1 / d : 0, q = min(15, trunc(w * id + 8.5)) - 8; the scale kept is d rounded to half.
 * Returns q (N, K) in [-8, 7], scales (N, NB) as halves, and the dequantized weights q * scale.
 */
export function q4Weights(w: Float32Array, N: number, K: number): { q: Int8Array; scales: Float64Array; deq: Float32Array } {
  const NB = Math.ceil(K / 32);
  const q = new Int8Array(N * K);
  const scales = new Float64Array(N * NB);
  const deq = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < NB; b++) {
      const [k0, k1] = [b * 32, Math.min(K, b * 32 + 32)];
      let amax = 0;
      let max = 0;
      for (let k = k0; k < k1; k++) {
        const v = w[n * K + k]!;
        if (amax < Math.abs(v)) [amax, max] = [Math.abs(v), v];
      }
      const d = f(max / -8);
      const id = d !== 0 ? f(1 / d) : 0;
      const s = toHalf(d);
      scales[n * NB + b] = s;
      for (let k = k0; k < k1; k++) {
        const v = Math.min(15, Math.trunc(f(f(w[n * K + k]! * id) + 8.5))) - 8;
        q[n * K + k] = v;
        deq[n * K + k] = v * s;
      }
    }
  }
  return { q, scales, deq };
}

// x = a . W^T (M, N) in float64 as each format computes it, and the sum of the magnitudes of the
// terms the kernel adds in float32 (for its rounding error):
//   f16: the float32 activations times the halves, K terms;
//   q4:  the activations quantized per row as q8 does (quantizeRows), per block of 32 the exact
//        integer sum of aq * q, times the block's d, NB terms, times the row's scale
export function product(
  format: "f16" | "q4",
  a: Float32Array,
  w: Float32Array,
  M: number,
  N: number,
  K: number,
): { x: Float64Array; abs: Float64Array; terms: number } {
  const x = new Float64Array(M * N);
  const abs = new Float64Array(M * N);
  if (format === "f16") {
    const wd = halfWeights(w);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        for (let k = 0; k < K; k++) {
          x[i * N + j] += a[i * K + k]! * wd[j * K + k]!;
          abs[i * N + j] += Math.abs(a[i * K + k]! * wd[j * K + k]!);
        }
      }
    }
    return { x, abs, terms: K };
  }
  const NB = Math.ceil(K / 32);
  const aq = quantizeRows(a, M, K);
  const wq = q4Weights(w, N, K);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      for (let b = 0; b < NB; b++) {
        let sum = 0;
        for (let k = 32 * b; k < Math.min(K, 32 * b + 32); k++) sum += aq.q[i * K + k]! * wq.q[j * K + k]!;
        x[i * N + j] += sum * wq.scales[j * NB + b]! * aq.scales[i]!;
        abs[i * N + j] += Math.abs(sum * wq.scales[j * NB + b]! * aq.scales[i]!);
      }
    }
  }
  return { x, abs, terms: NB };
}
