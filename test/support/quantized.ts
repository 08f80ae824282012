// The weight formats q8, f16 and q4 written plainly in float64 (with Math.fround where the kernels
// round to float32), for the tests of the formats: q8's quantization of rows, rounding to half,
// llama.cpp's q4_0 quantization, the dequantized weights, and the dequantized product as a float64
// oracle. FORMATS is their table: for each, its quantize helper, its dequantize reference and the
// tolerances the tests hold it to; the tests loop over it.
import { readFileSync } from "node:fs";
import { vi } from "vitest";
import { type StateDict, loadSafetensors } from "../../src/index.js";
import { runtime } from "../../src/init.js";

export type Format = "q8" | "f16" | "q4";

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

/** int8 rows (M, K) and one float32 scale per row */
export interface Q8Rows {
  q: Int8Array;
  scales: Float32Array;
}

/**
 * x (M, K) -> q (M, K) int8 and scales (M): scale = max|x_row| / 127, q = nearest(x * fl(127 / max)),
 * every step rounded to float32 as the kernel does.
 */
export function quantizeRows(x: Float32Array, M: number, K: number): Q8Rows {
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

/** int8 rows (N, K) times their scales, rounded to float32 once: what q8 weights stand for */
export function dequantizeRows({ q, scales }: Q8Rows, K: number): Float32Array {
  return Float32Array.from(q, (v, i) => v * scales[Math.floor(i / K)]!);
}

export { activations } from "../reference.js";

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

/** half bit patterns of float32 values that are halves already (exact) */
export function halfBits(x: Float32Array): Uint16Array {
  return Uint16Array.from(x, (v) => {
    if (v === 0) return Object.is(v, -0) ? 0x8000 : 0;
    const sign = v < 0 ? 0x8000 : 0;
    const a = Math.abs(v);
    const e = Math.floor(Math.log2(a));
    if (e < -14) return sign | Math.round(a * 2 ** 24);
    return sign | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
  });
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
//   q8:  the activations quantized per row (quantizeRows), the exact integer sum of aq * wq times
//        both scales; the kernel adds no terms in float32 (abs 0, terms 0). w: float32 weights
//        (quantized here by the same rule) or int8 rows as they are (pre-quantized, any of [-128, 127]);
//   f16: the float32 activations times the halves, K terms;
//   q4:  the activations quantized per row as q8 does (quantizeRows), per block of 32 the exact
//        integer sum of aq * q, times the block's d, NB terms, times the row's scale
export function product(
  format: Format,
  a: Float32Array,
  w: Float32Array | Q8Rows,
  M: number,
  N: number,
  K: number,
): { x: Float64Array; abs: Float64Array; terms: number } {
  const x = new Float64Array(M * N);
  const abs = new Float64Array(M * N);
  if (format === "q8") {
    const wq = w instanceof Float32Array ? quantizeRows(w, N, K) : w;
    const aq = quantizeRows(a, M, K);
    const sums = intSums(aq.q, wq.q, M, N, K);
    for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) x[i * N + j] = sums[i * N + j]! * aq.scales[i]! * wq.scales[j]!;
    return { x, abs, terms: 0 };
  }
  if (!(w instanceof Float32Array)) throw new Error(`product: ${format} takes float32 weights`);
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

export interface FormatSpec {
  name: Format;
  /** W (N, K) as the format holds it: q8 int8 rows and their scales, q4 q and d per block, f16 the halves */
  quantize(w: Float32Array, N: number, K: number): { q?: Int8Array; scales?: Float32Array | Float64Array; deq: Float32Array };
  /** W (N, K) as the format holds it, dequantized (float32, exact): what an embedding gather returns */
  dequantize(w: Float32Array, N: number, K: number): Float32Array;
  /**
   * The host's product (Linear.forward, an LM head's project) against `product`: |got - want| <=
   * atol + rtol |want|, for the largest |want| and the largest |bias| added (0 without one).
   * q8's sums are exact, so only the float32 conversions round.
   */
  oracle(maxWant: number, maxBias: number): { atol: number; rtol: number };
  /** relative RMS against float32 below which the format's output must be (and above 0: it really ran) */
  relRms: {
    /** a BERT-base-sized TransformerEncoderLayer (hidden 768, ff 3072, L = 32): the targets */
    bertLayer: number;
    /** its first feed-forward matrix alone, 768 -> 3072 */
    linear768: number;
    /** the tiny BERT fixture (test/fixtures/encoders), as an EncoderModel */
    bertFixture: number;
    /** the tiny untied Llama fixture's logits (test/fixtures/decoders), as a CausalLM */
    llamaFixture: number;
  };
  /** the bytes of a matrix (N, K) with N a multiple of 8 and K of 32 (no padding) */
  matrixBytes(N: number, K: number): number;
  /** the BERT-base-sized layer's weightBytes (and liveBytes) over float32's: below this */
  bytesRatio: number;
}

export const FORMATS: readonly FormatSpec[] = [
  {
    name: "q8",
    quantize: (w, N, K) => {
      const rows = quantizeRows(w, N, K);
      return { ...rows, deq: dequantizeRows(rows, K) };
    },
    dequantize: (w, N, K) => dequantizeRows(quantizeRows(w, N, K), K),
    oracle: (maxWant, maxBias) => ({ atol: 1e-6 * (1 + maxBias + maxWant), rtol: 1e-6 }),
    relRms: { bertLayer: 0.01, linear768: 0.015, bertFixture: 0.03, llamaFixture: 0.05 },
    matrixBytes: (N, K) => N * K + 4 * N, // a byte a weight and a float32 scale a row
    bytesRatio: 0.3,
  },
  {
    name: "f16",
    quantize: (w) => ({ deq: halfWeights(w) }),
    dequantize: (w) => halfWeights(w),
    oracle: () => ({ atol: 1e-5, rtol: 1e-5 }),
    relRms: { bertLayer: 0.001, linear768: 0.001, bertFixture: 0.001, llamaFixture: 0.001 },
    matrixBytes: (N, K) => 2 * N * K,
    bytesRatio: 0.501,
  },
  {
    name: "q4",
    quantize: (w, N, K) => q4Weights(w, N, K),
    dequantize: (w, N, K) => q4Weights(w, N, K).deq,
    oracle: () => ({ atol: 1e-5, rtol: 1e-5 }),
    // q4 on the tiny fixtures (hidden 36, random weights) is far coarser than on BERT-base: a
    // block of 32 holds most of a row, so its step is set by the row's largest weight. The three
    // embedding tables of the BERT fixture are q4 too: 24.5% (17.6% with them in float32)
    relRms: { bertLayer: 0.06, linear768: 0.1, bertFixture: 0.3, llamaFixture: 0.5 },
    matrixBytes: (N, K) => (N * K * 18) / 32, // per block of 32: 16 bytes of nibbles and a half d
    bytesRatio: 1 / 7,
  },
];

/** FORMATS by name */
export const FORMAT = Object.fromEntries(FORMATS.map((s) => [s.name, s])) as Record<Format, FormatSpec>;

/** the relative RMS of got - want */
export function relRms(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let d = 0;
  let w = 0;
  for (let i = 0; i < want.length; i++) {
    d += (got[i]! - want[i]!) ** 2;
    w += want[i]! ** 2;
  }
  return Math.sqrt(d / w);
}

/** a safetensors file of raw tensors */
export function safetensors(tensors: Record<string, { dtype: string; shape: number[]; bytes: Uint8Array }>): Uint8Array {
  let offset = 0;
  const header: Record<string, unknown> = {};
  for (const [k, t] of Object.entries(tensors)) {
    header[k] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header).padEnd(Math.ceil(JSON.stringify(header).length / 8) * 8));
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const t of Object.values(tensors)) {
    out.set(t.bytes, at);
    at += t.bytes.length;
  }
  return out;
}

/** the tiny BERT fixture (test/fixtures/encoders/bert-f32.*) and the ids (2, 9) the tests run it on */
export function bertFixture(): { config: Record<string, unknown>; dict: StateDict; ids: { data: Int32Array; shape: number[] } } {
  const dir = new URL("../fixtures/encoders/", import.meta.url);
  return {
    config: JSON.parse(readFileSync(new URL("bert-f32.config.json", dir), "utf8")) as Record<string, unknown>,
    dict: loadSafetensors(readFileSync(new URL("bert-f32.safetensors", dir))),
    ids: { data: Int32Array.from({ length: 2 * 9 }, (_, i) => (i * 7) % 61), shape: [2, 9] },
  };
}

/** a tiny decoder fixture (test/fixtures/decoders/<name>.*): llama-tied, llama-untied, gemma2 */
export function decoderFixture(name: string): { config: Record<string, unknown>; dict: StateDict } {
  const dir = new URL("../fixtures/decoders/", import.meta.url);
  return {
    config: JSON.parse(readFileSync(new URL(`${name}.config.json`, dir), "utf8")) as Record<string, unknown>,
    dict: loadSafetensors(readFileSync(new URL(`${name}.safetensors`, dir))),
  };
}

/** fn's result and the largest block it allocated in WebAssembly memory (no float32 copy of a whole weight) */
export function largestAllocation<T>(fn: () => T): [T, number] {
  const { heap } = runtime();
  const original = heap.alloc.bind(heap);
  let largest = 0;
  const alloc = vi.spyOn(heap, "alloc").mockImplementation((bytes: number) => {
    largest = Math.max(largest, bytes);
    return original(bytes);
  });
  try {
    return [fn(), largest];
  } finally {
    alloc.mockRestore();
  }
}
