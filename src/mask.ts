import { ShapeError } from "./errors.js";
import { type BoolTensor, type Tensor, fmt, size, tag } from "./tensor.js";

/**
 * A mask as the attention kernel reads it: additive float rows of Lk entries.
 *   data:      the mask with its last dimension expanded to Lk, booleans turned into 0 / -Infinity
 *   rowStride: elements between the rows of consecutive queries (0: one row serves every query)
 *   offsets:   for each (batch..., head) slice of the scores, in order, the element offset of its rows
 */
export interface KernelMask {
  data: Float32Array;
  rowStride: number;
  offsets: number[];
}

/**
 * Broadcasts `mask` (numpy rules) against scores of shape [...lead, Lq, Lk] without copying what
 * broadcasting repeats, except along Lk. `keepWhenTrue` is SDPA's convention for booleans
 * (true = takes part); false is nn.MultiheadAttention's (true = masked out).
 */
export function kernelMask(name: string, mask: Tensor | BoolTensor, scores: readonly number[], keepWhenTrue: boolean): KernelMask {
  const rank = scores.length;
  if (mask.shape.length > rank) {
    throw new ShapeError(`${name}: shape ${fmt(mask.shape)} has more dimensions than the scores ${fmt(scores)}`);
  }
  const padded = [...Array<number>(rank - mask.shape.length).fill(1), ...mask.shape];
  padded.forEach((d, i) => {
    if (d !== scores[i] && d !== 1) {
      throw new ShapeError(
        `${name}: shape ${fmt(mask.shape)} does not broadcast to the scores' shape ${fmt(scores)} ` +
          `(dimension ${i - rank}: ${d}, expected ${scores[i]} or 1)`,
      );
    }
  });
  const Lk = scores[rank - 1];
  const srcLast = padded[rank - 1];
  const rows = size(padded.slice(0, -1));
  const data = new Float32Array(rows * Lk);
  const src = mask.data;
  const isBool = tag(src) === "Uint8Array";
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < Lk; j++) {
      const x = src[r * srcLast + (srcLast === 1 ? 0 : j)];
      data[r * Lk + j] = isBool ? ((x !== 0) === keepWhenTrue ? 0 : -Infinity) : x;
    }
  }
  // element strides of the expanded mask over the scores' dimensions; 0 where it broadcasts
  const strides = new Array<number>(rank);
  let stride = Lk;
  strides[rank - 1] = 1;
  for (let i = rank - 2; i >= 0; i--) {
    strides[i] = padded[i] === 1 ? 0 : stride;
    stride *= padded[i];
  }
  const lead = scores.slice(0, -2);
  const offsets = new Array<number>(size(lead));
  for (let n = 0; n < offsets.length; n++) {
    let rest = n;
    let offset = 0;
    for (let i = lead.length - 1; i >= 0; i--) {
      offset += (rest % lead[i]) * strides[i];
      rest = Math.floor(rest / lead[i]);
    }
    offsets[n] = offset;
  }
  return { data, rowStride: strides[rank - 2], offsets };
}
