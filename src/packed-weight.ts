// A weight W (N, K) in WebAssembly memory, held in one of the WeightFormats in the layout its
// matrix product reads (groups of 32 rows: pack_f32_w; panels of 8: pack_f16, pack_q8 + scales, pack_q4): what
// Linear and the vocabulary tables (Embedding, CausalLM's embedding and LM head) share. Writing
// one in, reading it back as float32 rows (f32, f16), and reading single rows dequantized (the
// tables' gather).
import { runtime } from "./init.js";
import { Heap } from "./memory.js";
import type { Resident } from "./module.js";
import { f16Table } from "./safetensors.js";
import { type WeightFormat, preQuantizedRows } from "./weights.js";

/** @internal bytes of WebAssembly memory W (N, K) takes held in `format` (q8: the int8 panels, then N scales) */
export function packedBytes(format: WeightFormat, N: number, K: number): number {
  const { kernels } = runtime();
  if (format === "f32") return 4 * K * Math.ceil(N / 32) * 32;
  if (format === "f16") return kernels.pack_f16_bytes(N, K);
  if (format === "q8") return kernels.pack_q8_bytes(N, K) + 4 * N;
  return kernels.pack_q4_bytes(N, K);
}

/**
 * @internal W (N, K) float32 rows, as torch stores them, into `name` of `w`, held in `format`:
 * f32 packed, f16 rounded to half, q8 quantized per row (or, for rows of a pre-quantized tensor,
 * its int8 rows as they are), q4 quantized per block of 32
 */
export function packWeight(w: Resident, name: string, data: Float32Array, N: number, K: number, format: WeightFormat): void {
  if (format === "f32") w.set(name, data, { N, K });
  else if (format === "f16" || format === "q4") packHalfOrQ4(w, name, data, N, K, format);
  else {
    const rows = preQuantizedRows(data, K);
    if (rows) packQ8(w, name, rows.q, rows.scales, N, K);
    else quantizeQ8(w, name, data, N, K);
  }
}

/** @internal int8 rows q (N, K) and their scales (N) into `name` of `w`: w = q * scale */
export function packQ8(w: Resident, name: string, q: Int8Array, scales: Float32Array, N: number, K: number): void {
  const { kernels, heap } = runtime();
  const packed = kernels.pack_q8_bytes(N, K);
  w.setWith(name, packed + 4 * N, N * K, (at, scope) => {
    const src = scope.alloc(N * K);
    new Int8Array(heap.memory.buffer, src, N * K).set(q);
    kernels.pack_q8(at, src, K, N, K);
    heap.f32(at + packed, N).set(scales);
  });
}

// W (N, K) float32 -> int8 panels and scales (one block: pack_q8's bytes, then N scales)
function quantizeQ8(w: Resident, name: string, data: Float32Array, N: number, K: number): void {
  const { kernels } = runtime();
  const K4 = Math.ceil(K / 4) * 4;
  const packed = kernels.pack_q8_bytes(N, K);
  // a view of WebAssembly memory (a file's tensor widened there) is read where it is: its address
  // stays valid if the memory grows below, the view would not
  const inPlace = Heap.owns(data.buffer) ? data.byteOffset : null;
  w.setWith(name, packed + 4 * N, N * K4 + (inPlace === null ? data.byteLength : 0), (at, scope) => {
    const src = inPlace ?? scope.put(data);
    const q = scope.alloc(N * K4);
    kernels.quantize_rows_i8(q, at + packed, src, N, K);
    kernels.pack_q8(at, q, K4, N, K);
  });
}

// W (N, K) float32 -> pack_f16's halves or pack_q4's blocks, straight from the float32 rows
function packHalfOrQ4(w: Resident, name: string, data: Float32Array, N: number, K: number, format: "f16" | "q4"): void {
  const { kernels } = runtime();
  const inPlace = Heap.owns(data.buffer) ? data.byteOffset : null;
  w.setWith(name, packedBytes(format, N, K), inPlace === null ? data.byteLength : 0, (at, scope) => {
    const src = inPlace ?? scope.put(data);
    if (format === "f16") kernels.pack_f16(at, src, K, N, K, 0);
    else kernels.pack_q4(at, src, K, N, K);
  });
}

/** @internal the float32 rows (N, K) of W held as f32 or f16 at `at` (f16: widened exactly) */
export function unpackWeight(at: number, format: "f32" | "f16", N: number, K: number): Float32Array {
  const { kernels, heap } = runtime();
  // f32 puts row r at group r >> 5, lane r & 31, its element k 32 elements after k - 1; f16 at
  // panel r >> 3, lane r & 7, 8 elements apart
  const lanes = format === "f32" ? 32 : 8;
  const n = Math.ceil(N / lanes) * lanes * K;
  const rows = (packed: Float32Array) => {
    const w = new Float32Array(N * K);
    for (let r = 0; r < N; r++) {
      const from = Math.floor(r / lanes) * K * lanes + (r % lanes);
      for (let k = 0; k < K; k++) w[r * K + k] = packed[from + k * lanes]!;
    }
    return w;
  };
  if (format === "f32") return rows(heap.f32(at, n));
  const scope = heap.scope();
  try {
    const wide = scope.alloc(4 * n);
    kernels.f16_to_f32_n(wide, at, n);
    return rows(heap.f32(wide, n));
  } finally {
    scope.release();
  }
}

/**
 * @internal A reader of single rows of W (N, K) held in `format` at `at`: `read(r, row)` writes
 * row r into `row` (K floats) dequantized, exactly as the product sees it: f16 widened, q8
 * q * scale, q4 q * d (each rounded once to float32, which is exact for q4). The views it reads
 * through are made once: nothing may allocate WebAssembly memory while it is in use.
 */
export function rowReader(format: WeightFormat, at: number, N: number, K: number): (r: number, row: Float32Array) => void {
  const { kernels, heap } = runtime();
  const buffer = heap.memory.buffer;
  if (format === "f32") {
    const f32 = new Float32Array(buffer);
    return (r, row) => {
      const from = at / 4 + (r >> 5) * K * 32 + (r & 31);
      for (let k = 0; k < K; k++) row[k] = f32[from + 32 * k]!;
    };
  }
  if (format === "q8") {
    // pack_q8: panel r >> 3 of K4 x 8 bytes, per pair of k 16 bytes (row j's k0, k1 at 2j, 2j + 1);
    // then the N scales
    const i8 = new Int8Array(buffer);
    const scales = new Float32Array(buffer, at + kernels.pack_q8_bytes(N, K), N);
    const panel = Math.ceil(K / 4) * 4 * 8;
    return (r, row) => {
      const from = at + (r >> 3) * panel + (r & 7) * 2;
      const s = scales[r]!;
      for (let k = 0; k < K; k++) row[k] = i8[from + (k >> 1) * 16 + (k & 1)]! * s;
    };
  }
  const halves = new Uint16Array(buffer);
  const table = f16Table();
  if (format === "f16") {
    // pack_f16: panel r >> 3 of K x 8 halves, row r at lane r & 7
    return (r, row) => {
      const bits = new Uint32Array(row.buffer, row.byteOffset, K);
      const from = at / 2 + (r >> 3) * K * 8 + (r & 7);
      for (let k = 0; k < K; k++) bits[k] = table[halves[from + 8 * k]!]!;
    };
  }
  const bytes = new Uint8Array(buffer);
  // pack_q4: panel r >> 3 of NB blocks of 144 bytes: 8 half scales, then per 4 k 16 bytes (row j's
  // nibbles of k0, k0 + 1 in byte j, of k0 + 2, k0 + 3 in byte 8 + j; low nibble first), q = nibble - 8
  const NB = Math.ceil(K / 32);
  const d = new Float32Array(1);
  const dBits = new Uint32Array(d.buffer);
  return (r, row) => {
    const j = r & 7;
    for (let b = 0; b < NB; b++) {
      const blk = at + (r >> 3) * NB * 144 + b * 144;
      dBits[0] = table[halves[blk / 2 + j]!]!;
      const scale = d[0]!;
      for (let i = 0; i < 32 && 32 * b + i < K; i++) {
        const byte = bytes[blk + 16 + (i >> 2) * 16 + j + ((i & 2) << 2)]!;
        row[32 * b + i] = ((i & 1 ? byte >> 4 : byte & 15) - 8) * scale;
      }
    }
  };
}
