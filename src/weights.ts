// Weight formats, and what a load in progress tells the Linear layers and embedding tables it
// reaches: the format asked for (`loadStateDict(dict, prefix, { weights })`) and the int8 rows of
// pre-quantized tensors.
//
// A state dict's params reach Linear.setWeight (and a table's blocks) through loaders that other modules write
// (MultiHeadAttention splits in_proj_weight into three, EncoderModel joins Hugging Face's query,
// key and value), so neither travels as an argument: loadParams sets them for the duration of the
// (synchronous) copy, and setWeight reads them.

/**
 * How a Linear layer (or an embedding table, each row an output channel) holds its weight in
 * WebAssembly memory:
 * - "f32": float32, as loaded (4 bytes a weight);
 * - "f16": IEEE half, rounded to nearest (2 bytes a weight), widened to float32 in the kernel;
 * - "q8": int8 with one float32 scale per output channel, symmetric (scale = max|w_row| / 127,
 *   w ~ q * scale): about 1 byte a weight. Activations are quantized per row on each call;
 * - "q4": llama.cpp's q4_0: blocks of 32 weights along the input dimension, one half scale
 *   d = max / -8 each (max: the block's value of largest magnitude), q in [-8, 7] stored as 4 bits,
 *   w ~ q * d: 4.5 bits a weight. Activations are quantized per row to int8 on each call (as for
 *   "q8"), with an exact integer sum per block.
 */
export type WeightFormat = "f32" | "f16" | "q8" | "q4";

export const WEIGHT_FORMATS: readonly WeightFormat[] = ["f32", "f16", "q8", "q4"];

/** The int8 rows (N, K) and per-row scales (N) a dequantized float32 tensor came from. */
export interface Q8Rows {
  q: Int8Array;
  scales: Float32Array;
  /** row length */
  K: number;
}

/**
 * @internal A param that loads a file's F16 or BF16 tensor itself, from its bytes, when it can (a
 * Linear weight held as f16 or q4: packed a block of rows at a time, with no float32 copy of the
 * whole weight); `loadHalf` returns false when it does not, and the loader widens as usual.
 */
export interface HalfParam {
  loadHalf(source: { bytes: Uint8Array; dtype: string; shape: readonly number[] }): boolean;
}

/** @internal `p`'s loadHalf, if it has one */
export function halfLoader(p: object): HalfParam["loadHalf"] | undefined {
  return "loadHalf" in p ? (p as HalfParam).loadHalf : undefined;
}

interface Loading {
  /** the format asked for; undefined: each Linear keeps its own */
  weights: WeightFormat | undefined;
  /** the tensor being loaded was pre-quantized (int8 + scales) */
  preQuantized: boolean;
}

let loading: Loading | null = null;
// dequantized tensors (by their buffer) -> the int8 rows they came from
const sources = new WeakMap<ArrayBufferLike, Q8Rows>();

/** @internal Runs `body` (the copies of a load) with the weight format asked for. */
export function whileLoading<T>(weights: WeightFormat | undefined, body: () => T): T {
  const outer = loading;
  loading = { weights, preQuantized: false };
  try {
    return body();
  } finally {
    loading = outer;
  }
}

/** @internal Runs `body` (one param's load) knowing whether its tensor was pre-quantized. */
export function loadingPreQuantized<T>(body: () => T): T {
  const state = loading;
  if (!state) return body();
  const was = state.preQuantized;
  state.preQuantized = true;
  try {
    return body();
  } finally {
    state.preQuantized = was;
  }
}

/**
 * @internal The format a Linear (or a table) stores a weight in: the one the load asks for; else
 * q8 for a pre-quantized tensor; else the format the layer already has.
 */
export function formatFor(own: WeightFormat): WeightFormat {
  return loading?.weights ?? (loading?.preQuantized ? "q8" : own);
}

/**
 * @internal int8 rows (N, K) with their scales as float32 (w = q * scale, rounded once), the form
 * every loader passes on; `preQuantizedRows` finds the int8 rows again from any part of it.
 */
export function dequantize(q: Int8Array, scales: Float32Array, K: number): Float32Array {
  const w = new Float32Array(q.length);
  for (let n = 0; n < scales.length; n++) {
    const s = scales[n]!;
    for (let k = n * K; k < (n + 1) * K; k++) w[k] = q[k]! * s;
  }
  sources.set(w.buffer, { q, scales, K });
  return w;
}

/**
 * @internal The int8 rows and scales `data` (whole rows of K of a dequantized tensor, as a Linear
 * or a table's block receives them: the tensor or a subarray of it) was made from, or null: then it is quantized
 * again, which gives the same int8 rows back for rows that reach +-127 (the symmetric max rule).
 */
export function preQuantizedRows(data: Float32Array, K: number): Q8Rows | null {
  const src = sources.get(data.buffer);
  if (!src || src.K !== K || data.byteOffset % (4 * K) !== 0 || data.length % K !== 0) return null;
  const row = data.byteOffset / (4 * K);
  const rows = data.length / K;
  if (row + rows > src.scales.length) return null;
  return { q: src.q.subarray(row * K, (row + rows) * K), scales: src.scales.subarray(row, row + rows), K };
}
