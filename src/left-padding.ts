// Decoder-only batches are left-padded (Hugging Face's padding_side="left"): each row of the
// attention mask is zeros, then ones. What the decoder needs of a mask is each row's count of
// leading zeros; positions then count real tokens (generate's cumsum(mask) - 1).
import { ArgumentError, ShapeError } from "./errors.js";
import type { AttentionMask } from "./encoder-model.js";
import { checkShape, describe, fmt, honest, size, typedKind } from "./tensor.js";

export type { AttentionMask };

const KINDS = ["Uint8Array", "Int32Array", "BigInt64Array"];

/**
 * @internal Reads an attention mask once and returns the padding columns of each row (its leading
 * zeros). `shape` is the mask's expected shape ([past + L] or [B, past + L]); `cached(b)` the
 * padding columns the cache holds for row b (null without a cache), which the mask's past must
 * agree with. Without a mask: the cache's padding (none without a cache).
 */
export function readLeftPadding(
  name: string,
  mask: unknown,
  shape: readonly number[],
  past: number,
  cached: ((b: number) => number) | null,
): Int32Array {
  const [B, width] = (shape.length === 2 ? shape : [1, ...shape]) as [number, number];
  if (mask === undefined || mask === null) return Int32Array.from({ length: B }, (_, b) => cached?.(b) ?? 0);
  const values = read(name, mask, shape);
  const pads = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    let p = 0;
    while (p < width && values[b * width + p] === 0) p++;
    for (let c = p; c < width; c++) {
      if (values[b * width + c] === 0)
        throw new ArgumentError(
          `${name}: expected left padding only (zeros, then ones), got a 0 at column ${c} after a 1${B > 1 ? ` in row ${b}` : ""}`,
        );
    }
    const have = cached?.(b) ?? 0;
    if (past > 0 && (have < past ? p !== have : p < past)) {
      throw new ArgumentError(
        `${name}: expected past columns${B > 1 ? ` in row ${b}` : ""} that match the cache, which holds ${have} padding column${have === 1 ? "" : "s"} of ${past}, got ${p} leading zero${p === 1 ? "" : "s"}`,
      );
    }
    pads[b] = p;
  }
  return pads;
}

/**
 * @internal Each new row's RoPE position and each sequence's first query position: row i of
 * sequence b is column past + i, at position past + i - pads[b] when real; padding rows get 1
 * (as Hugging Face's generate) and see no key.
 */
export function stepPositions(B: number, L: number, past: number, pads: Int32Array): { positions: Int32Array; qpos0: number[] } {
  const positions = new Int32Array(B * L);
  for (let b = 0; b < B; b++) {
    const pad = pads[b]!;
    for (let i = 0; i < L; i++) positions[b * L + i] = past + i >= pad ? past + i - pad : 1;
  }
  return { positions, qpos0: Array.from(pads, (p) => past - p) };
}

// the mask's values as 0 / 1 bytes, checked against `shape`
function read(name: string, mask: unknown, shape: readonly number[]): Uint8Array {
  let data: ArrayLike<number | bigint>;
  let got: readonly number[];
  if (Array.isArray(mask)) [data, got] = [Array.from({ length: mask.length }, (_, i): unknown => mask[i]) as number[], [mask.length]];
  else if (KINDS.includes(typedKind(mask)!)) {
    data = honest<Uint8Array>(mask);
    got = [data.length];
  } else if (mask !== null && typeof mask === "object" && "data" in mask && "shape" in mask) {
    const t = mask as { data: unknown; shape: unknown };
    const d = t.data;
    if (!KINDS.includes(typedKind(d)!)) throw new ArgumentError(`${name}: expected data of type ${KINDS.join(", ")}, got ${describe(d)}`);
    [data, got] = [honest<Uint8Array>(d), checkShape(`${name}.shape`, t.shape)];
    if (data.length !== size(got)) throw new ShapeError(`${name}.data: expected ${size(got)} elements (shape ${fmt(got)}), got ${data.length}`);
  } else {
    throw new ArgumentError(
      `${name}: expected a Uint8Array, Int32Array, BigInt64Array, an array of numbers or { data, shape }, got ${describe(mask)}`,
    );
  }
  if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
    throw new ShapeError(
      `${name}: expected shape ${fmt(shape)}${shape.length && shape[shape.length - 1] ? " (past and new columns)" : ""}, got ${fmt(got)}`,
    );
  }
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v !== 0 && v !== 1 && v !== 0n && v !== 1n)
      throw new ArgumentError(
        `${name}: expected values 1 (token) or 0 (padding), got ${typeof v === "bigint" ? `${v}n` : describe(v)} at position ${i}`,
      );
    out[i] = Number(v);
  }
  return out;
}
