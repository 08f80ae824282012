// Reads the fixtures written by scripts/fixtures.py: {shape, dtype, base64} little-endian arrays.
import { readFileSync } from "node:fs";

export interface Stored {
  shape: number[];
  dtype: "f32" | "f64" | "u8";
  base64: string;
}

export function fixture<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), "utf8")) as T;
}

export function decode(s: Stored): Float32Array | Float64Array | Uint8Array {
  const bytes = Uint8Array.from(Buffer.from(s.base64, "base64"));
  const Ctor = { f32: Float32Array, f64: Float64Array, u8: Uint8Array }[s.dtype];
  return new Ctor(bytes.buffer, 0, bytes.byteLength / Ctor.BYTES_PER_ELEMENT);
}
