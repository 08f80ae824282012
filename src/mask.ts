import { OutOfMemoryError, ShapeError } from "./errors.js";
import { Heap } from "./memory.js";
import { type Snapshot, type Tensor, checkMask, fmt, size, typedKind } from "./tensor.js";

/**
 * A mask as the attention kernel reads it: additive float rows of Lk entries.
 *   data:      the mask with its last dimension expanded to Lk
 *   rowStride: elements between the rows of consecutive queries (0: one row serves every query)
 *   offset(n): for slice n (batch..., head, in order) of the scores, the element offset of its rows
 */
export interface KernelMask {
  data: Float32Array;
  rowStride: number;
  offset(n: number): number;
}

/**
 * A mask as numbers added to the scores. Booleans become 0 / -Infinity: `keepWhenTrue` is SDPA's
 * convention (true = takes part); false is nn.MultiheadAttention's (true = masked out).
 */
export function additive(mask: Snapshot<Float32Array | Uint8Array>, keepWhenTrue: boolean): Tensor {
  if (typedKind(mask.data) !== "Uint8Array") return mask as Tensor;
  const data = Float32Array.from(mask.data, (x) => ((x !== 0) === keepWhenTrue ? 0 : -Infinity));
  return { data, shape: mask.shape };
}

/**
 * Broadcasts an additive mask (numpy rules) against scores of shape [...lead, Lq, Lk] without
 * copying what broadcasting repeats, except along Lk.
 */
export function kernelMask(name: string, mask: Tensor, scores: readonly number[]): KernelMask {
  const rank = scores.length;
  if (mask.shape.length > rank) {
    throw new ShapeError(`${name}: expected at most the ${rank} dimensions of the scores ${fmt(scores)}, got ${fmt(mask.shape)}`);
  }
  const padded = [...Array<number>(rank - mask.shape.length).fill(1), ...mask.shape];
  padded.forEach((d, i) => {
    if (d !== scores[i] && d !== 1) {
      throw new ShapeError(
        `${name}: expected a shape that broadcasts to the scores' shape ${fmt(scores)} (dimension ${i - rank}: ${scores[i]} or 1), ` +
          `got ${fmt(mask.shape)}`,
      );
    }
  });
  const Lk = scores[rank - 1];
  if (rank < 2 || Lk === undefined) throw new Error(`wasm-attention internal: ${name}: scores ${fmt(scores)} without [Lq, Lk]`);
  const srcLast = padded[rank - 1]!;
  const rows = size(padded.slice(0, -1));
  // a resident mask is read now: a view of WebAssembly memory is detached if the call grows it
  let data = Heap.owns(mask.data.buffer) ? mask.data.slice() : mask.data;
  if (srcLast !== Lk) {
    if (rows * Lk > 2 ** 30)
      throw new OutOfMemoryError(`${name}: broadcast along Lk, the mask needs ${rows * Lk} floats, more than WebAssembly memory holds`);
    data = new Float32Array(rows * Lk);
    for (let r = 0; r < rows; r++) data.fill(mask.data[r]!, r * Lk, (r + 1) * Lk);
  }
  // element strides of the expanded mask over the scores' dimensions; 0 where it broadcasts
  const strides = new Array<number>(rank);
  let stride = Lk;
  strides[rank - 1] = 1;
  for (let i = rank - 2; i >= 0; i--) {
    const d = padded[i]!;
    strides[i] = d === 1 ? 0 : stride;
    stride *= d;
  }
  // computed per slice when asked: a list of them would be as long as batch x heads
  const lead = scores.slice(0, -2);
  const offset = (n: number) => {
    let rest = n;
    let at = 0;
    for (let i = lead.length - 1; i >= 0; i--) {
      at += (rest % lead[i]!) * strides[i]!;
      rest = Math.floor(rest / lead[i]!);
    }
    return at;
  };
  return { data, rowStride: strides[rank - 2]!, offset };
}

/**
 * nn.MultiheadAttention's masks (true = masked out) as one kernel mask over scores [B, H, Lq, Lk]:
 * attnMask [Lq, Lk] or [B*H, Lq, Lk], keyPaddingMask [B, Lk]; both given are added, as torch does.
 */
export function mhaMask(
  names: { attn: string; padding: string },
  attnMask: unknown,
  keyPaddingMask: unknown,
  B: number,
  H: number,
  Lq: number,
  Lk: number,
): KernelMask | null {
  const scores = [B, H, Lq, Lk];
  let attn: { data: Float32Array; shape: [number, number, number, number] } | null = null;
  if (attnMask !== undefined && attnMask !== null) {
    const m = additive(checkMask(names.attn, attnMask), false);
    const s = m.shape;
    if (s.length === 2 && s[0] === Lq && s[1] === Lk) attn = { data: m.data, shape: [1, 1, Lq, Lk] };
    else if (s.length === 3 && s[0] === B * H && s[1] === Lq && s[2] === Lk) attn = { data: m.data, shape: [B, H, Lq, Lk] };
    else throw new ShapeError(`${names.attn}: expected [${Lq}, ${Lk}] or [${B * H}, ${Lq}, ${Lk}] (batch * heads, Lq, Lk), got ${fmt(s)}`);
  }
  let padding: Tensor | null = null;
  if (keyPaddingMask !== undefined && keyPaddingMask !== null) {
    const m = additive(checkMask(names.padding, keyPaddingMask), false);
    if (m.shape.length !== 2 || m.shape[0] !== B || m.shape[1] !== Lk) {
      throw new ShapeError(`${names.padding}: expected [${B}, ${Lk}] (batch, Lk), got ${fmt(m.shape)}`);
    }
    padding = { data: m.data, shape: [B, 1, 1, Lk] };
  }
  if (!attn && !padding) return null;
  if (!attn || !padding) return kernelMask(attn ? names.attn : names.padding, (attn ?? padding)!, scores);
  const Hm = attn.shape[1];
  const sum = new Float32Array(B * Hm * Lq * Lk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hm; h++) {
      const src = ((attn.shape[0] === 1 ? 0 : b) * Hm + h) * Lq * Lk;
      const dst = (b * Hm + h) * Lq * Lk;
      for (let i = 0; i < Lq; i++) {
        for (let j = 0; j < Lk; j++) sum[dst + i * Lk + j] = attn.data[src + i * Lk + j]! + padding.data[b * Lk + j]!;
      }
    }
  }
  return kernelMask(names.attn, { data: sum, shape: [B, Hm, Lq, Lk] }, scores);
}
