import { ArgumentError, ShapeError } from "./errors.js";
import { runtime } from "./init.js";
import type { Param } from "./module.js";
import { type Tensor, checkOptions, describe, fmt, honest, size, tag, typedKind } from "./tensor.js";

/** The integer and boolean dtypes of the format, read without conversion. */
export type IntegerDType = "I64" | "I32" | "I16" | "I8" | "U64" | "U32" | "U16" | "U8" | "BOOL";

/** The float dtypes of the format, read as float32 tensors. */
export type FloatDType = "F64" | "F32" | "F16" | "BF16";

/**
 * An integer or boolean tensor of a safetensors file, exactly as stored: `data` is its own typed
 * array (I64: `BigInt64Array`, U64: `BigUint64Array`, I32: `Int32Array`, U32: `Uint32Array`,
 * I16: `Int16Array`, U16: `Uint16Array`, I8: `Int8Array`, U8 and BOOL: `Uint8Array` of 0 / 1).
 */
export interface IntegerTensor {
  data: BigInt64Array | BigUint64Array | Int32Array | Uint32Array | Int16Array | Uint16Array | Int8Array | Uint8Array;
  shape: readonly number[];
  dtype: IntegerDType;
}

/** What `loadSafetensors` returns: tensors by name, in a null-prototype object. */
export type StateDict = Record<string, Tensor | IntegerTensor>;

export interface SafetensorsOptions {
  /**
   * F32 tensors at 4-byte aligned offsets become `Float32Array` views of the file's buffer: no
   * copy, and writes to either show in the other. Default false: float tensors are read from the
   * bytes when first used (see `loadSafetensors`).
   */
  view?: boolean;
}

type Typed = IntegerTensor["data"];
type IntegerCtor = { new (buffer: ArrayBuffer): Typed; BYTES_PER_ELEMENT: number };

// bytes per element of every dtype read, and how: floats widen to f32, integers keep their type
const DTYPES = new Map<string, { bytes: number; float: true } | { bytes: number; float: false; ctor: IntegerCtor }>([
  ["F64", { bytes: 8, float: true }],
  ["F32", { bytes: 4, float: true }],
  ["F16", { bytes: 2, float: true }],
  ["BF16", { bytes: 2, float: true }],
  ["I64", { bytes: 8, float: false, ctor: BigInt64Array }],
  ["I32", { bytes: 4, float: false, ctor: Int32Array }],
  ["I16", { bytes: 2, float: false, ctor: Int16Array }],
  ["I8", { bytes: 1, float: false, ctor: Int8Array }],
  ["U64", { bytes: 8, float: false, ctor: BigUint64Array }],
  ["U32", { bytes: 4, float: false, ctor: Uint32Array }],
  ["U16", { bytes: 2, float: false, ctor: Uint16Array }],
  ["U8", { bytes: 1, float: false, ctor: Uint8Array }],
  ["BOOL", { bytes: 1, float: false, ctor: Uint8Array }],
]);
const SUPPORTED = [...DTYPES.keys()].join(", ");

/** @internal where a float tensor's values are: its bytes in the file, little-endian */
export interface FileSource {
  bytes: Uint8Array;
  dtype: FloatDType;
  shape: readonly number[];
}

// the float tensors whose data has not been read yet, and where it is
const pending = new WeakMap<object, FileSource>();

/**
 * Parses a safetensors file (8-byte little-endian header length, a JSON header, raw little-endian
 * data). Float tensors (F64, F32, F16, BF16) become float32 `Tensor`s: F16 and BF16 widen exactly,
 * F64 rounds to nearest (Math.fround). Integer and boolean tensors keep their type (`IntegerTensor`).
 * `__metadata__` is skipped. Every offset is checked before any byte is read, so a malformed file
 * gets an ArgumentError or ShapeError and never a read outside the buffer.
 *
 * Float tensors are read from `bytes` when first used: `Module.loadStateDict` copies them straight
 * into WebAssembly memory, and reading `t.data` makes the tensor's own Float32Array once. With
 * `{ view: true }`, aligned F32 tensors are views of `bytes` instead. Either way `bytes` must not
 * change while the result is in use.
 */
export function loadSafetensors(bytes: Uint8Array | ArrayBuffer, options: SafetensorsOptions = {}): StateDict {
  const { view = false } = checkOptions("loadSafetensors options", options, ["view"]);
  if (typeof view !== "boolean") throw new ArgumentError(`loadSafetensors view: expected a boolean, got ${describe(view)}`);
  // the bytes through their own slots (a subclass or a Proxy cannot lie about their length), read once
  const kind = typedKind(bytes);
  if (kind !== "Uint8Array" && tag(bytes) !== "ArrayBuffer")
    throw new ArgumentError(`loadSafetensors bytes: expected a Uint8Array or ArrayBuffer, got ${describe(bytes)}`);
  const u8 = kind ? honest<Uint8Array>(bytes) : new Uint8Array(bytes as ArrayBuffer);
  if (u8.byteLength < 8)
    throw new ArgumentError(`loadSafetensors bytes: expected at least the 8 bytes of the header length, got ${u8.byteLength} bytes`);
  const headerLength = Number(new DataView(u8.buffer, u8.byteOffset, 8).getBigUint64(0, true));
  if (headerLength > u8.byteLength - 8) {
    throw new ArgumentError(
      `loadSafetensors header length: expected at most the ${u8.byteLength - 8} bytes after it in the ${u8.byteLength}-byte buffer, got ${headerLength}`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(u8.subarray(8, 8 + headerLength)));
  } catch (cause) {
    throw new ArgumentError(`loadSafetensors header: expected valid UTF-8 JSON, got bytes that are not (${String(cause)})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new ArgumentError(`loadSafetensors header: expected a JSON object, got ${describe(header)}`);
  }
  const data = u8.subarray(8 + headerLength);
  // 1. check every entry and that no two tensors share bytes
  const entries = Object.entries(header)
    .filter(([name]) => name !== "__metadata__")
    .map(([name, entry]) => ({ name, ...checkEntry(name, entry, data.length) }));
  const spans = entries.filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin);
  let last: (typeof spans)[number] | undefined;
  for (const span of spans) {
    if (last && span.begin < last.end)
      throw new ArgumentError(
        `loadSafetensors "${span.name}".data_offsets: expected bytes of its own, got bytes of "${last.name}" too (the tensors overlap)`,
      );
    if (!last || span.end > last.end) last = span;
  }
  // 2. make the tensors; a null prototype makes "__proto__" or "constructor" ordinary names
  const out: StateDict = Object.create(null);
  for (const { name, dtype, shape, begin, end } of entries) {
    const bytesOf = data.subarray(begin, end);
    const kind = DTYPES.get(dtype)!;
    if (!kind.float) out[name] = { data: integers(bytesOf, kind.ctor), shape, dtype: dtype as IntegerDType };
    else if (view && dtype === "F32" && bytesOf.byteOffset % 4 === 0)
      out[name] = { data: new Float32Array(bytesOf.buffer, bytesOf.byteOffset, size(shape)), shape };
    else out[name] = lazyTensor({ bytes: bytesOf, dtype: dtype as FloatDType, shape });
  }
  return out;
}

function checkEntry(name: string, entry: unknown, dataLength: number) {
  if (entry === null || typeof entry !== "object") throw new ArgumentError(`loadSafetensors "${name}": expected an object, got ${describe(entry)}`);
  const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  // own properties only: a header cannot reach Object.prototype through "constructor" or "__proto__"
  const dtype = Object.hasOwn(e, "dtype") ? e.dtype : undefined;
  const kind = typeof dtype === "string" ? DTYPES.get(dtype) : undefined;
  if (typeof dtype !== "string" || !kind) {
    throw new ArgumentError(`loadSafetensors "${name}".dtype: expected one of ${SUPPORTED}, got ${JSON.stringify(dtype) ?? "undefined"}`);
  }
  const shape = Object.hasOwn(e, "shape") ? e.shape : undefined;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new ShapeError(`loadSafetensors "${name}".shape: expected an array of non-negative integers, got ${JSON.stringify(shape) ?? "undefined"}`);
  }
  const offsets = Object.hasOwn(e, "data_offsets") ? e.data_offsets : undefined;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
    throw new ArgumentError(
      `loadSafetensors "${name}".data_offsets: expected [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offsets) ?? "undefined"}`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataLength) {
    throw new ArgumentError(`loadSafetensors "${name}".data_offsets: expected an end within the ${dataLength} bytes of data, got [${begin}, ${end}]`);
  }
  const n = size(shape as number[]);
  if (end - begin !== n * kind.bytes) {
    throw new ShapeError(
      `loadSafetensors "${name}".data_offsets: expected a span of ${n * kind.bytes} bytes (shape ${fmt(shape as number[])} of ${dtype}), got ${end - begin} bytes`,
    );
  }
  return { dtype, shape: [...(shape as number[])], begin, end };
}

// a copy in its own buffer (typed arrays are host-endian; every host that runs WebAssembly is little-endian)
function integers(bytes: Uint8Array, ctor: IntegerCtor): Typed {
  const own = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(own).set(bytes);
  return new ctor(own);
}

/**
 * A float tensor whose `data` is made from the file's bytes on first read (then an ordinary
 * property). Until then `pending` knows where its bytes are, so loadStateDict can skip `data`.
 */
function lazyTensor(source: FileSource): Tensor {
  const t = { shape: source.shape } as Tensor;
  const settle = (data: Float32Array) => {
    pending.delete(t);
    Object.defineProperty(t, "data", { value: data, writable: true, enumerable: true, configurable: true });
  };
  Object.defineProperty(t, "data", {
    get() {
      const data = new Float32Array(size(source.shape));
      widen(source, data);
      settle(data);
      return data;
    },
    set: settle,
    enumerable: true,
    configurable: true,
  });
  pending.set(t, source);
  return t;
}

/** @internal where a tensor from loadSafetensors still reads its data from, if it does */
export function fileSource(t: unknown): FileSource | undefined {
  return t !== null && typeof t === "object" ? pending.get(t) : undefined;
}

/**
 * @internal A param that takes its rows a block at a time (Embedding's table): from a file, its
 * tensor is then widened one block of `blockRows` rows at a time, never whole. `load` must split
 * a whole tensor into the same blocks.
 */
export interface BlockParam extends Param {
  blockRows: number;
  /** block k: rows k * blockRows ... of the tensor (the last block may be shorter) */
  loadBlock(k: number, rows: Float32Array): void;
}

/**
 * @internal Loads `p` from a file tensor, copying each value once into WebAssembly memory: an
 * aligned F32 tensor through a view of the file; a BlockParam block by block through one small
 * scratch array; anything else widened straight into a block of WebAssembly memory (no
 * JavaScript copy), freed afterwards. Room for what `p.load` allocates (at most twice the tensor,
 * plus packing's padding) is made first, so the memory cannot grow, and detach the block's view,
 * during the load.
 */
export function loadFromFile(source: FileSource, p: Param): void {
  const n = size(source.shape);
  const { bytes, shape } = source;
  if (source.dtype === "F32" && bytes.byteOffset % 4 === 0) {
    p.load({ data: new Float32Array(bytes.buffer, bytes.byteOffset, n), shape });
    return;
  }
  if ("loadBlock" in p) {
    const { blockRows, loadBlock } = p as BlockParam;
    const R = shape[0];
    if (R === undefined) throw new Error(`wasm-attention internal: "${p.key}" loads by rows but has no rows`);
    const rowLength = n / R;
    const width = DTYPES.get(source.dtype)!.bytes * rowLength;
    const scratch = new Float32Array(Math.min(n, blockRows * rowLength));
    for (let k = 0, first = 0; first < R; k++, first += blockRows) {
      const rows = Math.min(blockRows, R - first);
      const out = scratch.subarray(0, rows * rowLength);
      widen({ ...source, bytes: bytes.subarray(first * width, (first + rows) * width) }, out);
      loadBlock(k, out);
    }
    return;
  }
  const { heap } = runtime();
  const at = heap.alloc(4 * n);
  try {
    heap.free(heap.alloc(8 * n + 128 * (shape[shape.length - 1] ?? 1) + 1024));
    const data = heap.f32(at, n);
    widen(source, data);
    p.load({ data, shape });
  } finally {
    heap.free(at);
  }
}

/** The values of `source` into `out` (its size): F16 and BF16 exactly, F64 rounded to nearest. */
function widen({ bytes, dtype }: FileSource, out: Float32Array): void {
  const n = out.length;
  if (dtype === "F32") new Uint8Array(out.buffer, out.byteOffset, 4 * n).set(bytes);
  else if (dtype === "F64") out.set(aligned(bytes, Float64Array, n));
  else {
    // bit patterns, so NaN payloads survive: bf16 is the top half of an f32; f16 through a table
    const half = aligned(bytes, Uint16Array, n);
    const bits = new Uint32Array(out.buffer, out.byteOffset, n);
    if (dtype === "BF16") for (let i = 0; i < n; i++) bits[i] = half[i]! << 16;
    else {
      const table = f16Table();
      for (let i = 0; i < n; i++) bits[i] = table[half[i]!]!;
    }
  }
}

// a view of bytes as T when its offset allows, else a copy (safetensors files written by torch are aligned)
function aligned<T extends Float64Array | Uint16Array>(
  bytes: Uint8Array,
  ctor: { new (b: ArrayBuffer, at: number, n: number): T; BYTES_PER_ELEMENT: number },
  n: number,
): T {
  const ok = bytes.byteOffset % ctor.BYTES_PER_ELEMENT === 0;
  const b = ok ? bytes : bytes.slice();
  return new ctor(b.buffer as ArrayBuffer, ok ? b.byteOffset : 0, n);
}

let f16Bits: Uint32Array | null = null;

/** @internal the f32 bit pattern of every f16 bit pattern (256 KB, made on first use) */
export function f16Table(): Uint32Array {
  if (f16Bits) return f16Bits;
  const table = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0x1f)
      table[h] = sign | 0x7f800000 | (frac << 13); // Infinity, NaN (payload kept)
    else if (exp !== 0) table[h] = sign | ((exp - 15 + 127) << 23) | (frac << 13);
    else if (frac === 0)
      table[h] = sign; // +-0
    else {
      // subnormal: frac * 2^-24, normalised: shift the leading 1 up to bit 10
      let e = -14;
      let f = frac;
      while (!(f & 0x400)) {
        f <<= 1;
        e--;
      }
      table[h] = sign | ((e + 127) << 23) | ((f & 0x3ff) << 13);
    }
  }
  f16Bits = table;
  return table;
}
