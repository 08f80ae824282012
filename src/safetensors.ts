import { ArgumentError, ShapeError } from "./errors.js";
import { type Tensor, describe, fmt, size, tag } from "./tensor.js";

const BYTES = { F32: 4, F16: 2, BF16: 2 } as const;
type DType = keyof typeof BYTES;

/**
 * Parses a safetensors file (8-byte little-endian header length, a JSON header, raw little-endian
 * data) into float32 tensors. F16 and BF16 are widened exactly (subnormals, +-0, +-Infinity and NaN
 * included). `__metadata__` is skipped. Every offset is checked before any byte is read, so a
 * malformed file gets an ArgumentError or ShapeError and never a read outside the buffer.
 */
export function loadSafetensors(bytes: Uint8Array | ArrayBuffer): Record<string, Tensor> {
  const buf = tag(bytes) === "ArrayBuffer" ? new Uint8Array(bytes as ArrayBuffer) : bytes;
  if (tag(buf) !== "Uint8Array") throw new ArgumentError(`loadSafetensors: expected a Uint8Array or ArrayBuffer, got ${describe(bytes)}`);
  const u8 = buf as Uint8Array;
  if (u8.byteLength < 8) throw new ArgumentError(`loadSafetensors: ${u8.byteLength} bytes is too short for the 8-byte header length`);
  const view = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > u8.byteLength - 8) {
    throw new ArgumentError(`loadSafetensors: header length ${headerLength} runs past the end of the ${u8.byteLength}-byte buffer`);
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(u8.subarray(8, 8 + headerLength)));
  } catch (cause) {
    throw new ArgumentError(`loadSafetensors: the header is not valid UTF-8 JSON (${String(cause)})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new ArgumentError(`loadSafetensors: the header must be a JSON object, got ${describe(header)}`);
  }
  const dataStart = 8 + headerLength;
  const dataLength = u8.byteLength - dataStart;
  const out: Record<string, Tensor> = {};
  const spans: [number, number, string][] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const { dtype, shape, begin, end } = checkEntry(name, entry, dataLength);
    spans.push([begin, end, name]);
    out[name] = { data: decode(view, dataStart + begin, size(shape), dtype), shape };
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i][0] < spans[i - 1][1]) {
      throw new ArgumentError(`loadSafetensors: tensors "${spans[i - 1][2]}" and "${spans[i][2]}" overlap in the data`);
    }
  }
  return out;
}

function checkEntry(name: string, entry: unknown, dataLength: number) {
  const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (e === null || typeof e !== "object") throw new ArgumentError(`loadSafetensors: "${name}" must be an object, got ${describe(entry)}`);
  if (typeof e.dtype !== "string" || !(e.dtype in BYTES)) {
    throw new ArgumentError(`loadSafetensors: "${name}" has dtype ${JSON.stringify(e.dtype)}; supported are F32, F16, BF16`);
  }
  const dtype = e.dtype as DType;
  if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new ShapeError(`loadSafetensors: "${name}" has shape ${JSON.stringify(e.shape)}; expected an array of non-negative integers`);
  }
  const shape = e.shape as number[];
  const offsets = e.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
    throw new ArgumentError(`loadSafetensors: "${name}" has data_offsets ${JSON.stringify(offsets)}; expected [begin, end] with 0 <= begin <= end`);
  }
  const [begin, end] = offsets as number[];
  if (end > dataLength) {
    throw new ArgumentError(`loadSafetensors: "${name}" data_offsets [${begin}, ${end}] run past the ${dataLength} bytes of data`);
  }
  if (end - begin !== size(shape) * BYTES[dtype]) {
    throw new ShapeError(`loadSafetensors: "${name}" has shape ${fmt(shape)} of ${dtype} (${size(shape) * BYTES[dtype]} bytes) but data_offsets span ${end - begin} bytes`);
  }
  return { dtype, shape, begin, end };
}

function decode(view: DataView, at: number, n: number, dtype: DType): Float32Array {
  const out = new Float32Array(n);
  if (dtype === "F32") for (let i = 0; i < n; i++) out[i] = view.getFloat32(at + 4 * i, true);
  else if (dtype === "BF16") {
    // bf16 is the top half of an f32
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) bits[i] = view.getUint16(at + 2 * i, true) << 16;
  } else for (let i = 0; i < n; i++) out[i] = f16(view.getUint16(at + 2 * i, true));
  return out;
}

// IEEE half -> number, exactly
function f16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero and subnormals
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}
