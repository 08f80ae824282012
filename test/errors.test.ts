import { beforeAll, describe, expect, test } from "vitest";
import { ArgumentError, ShapeError, type WasmAttentionError, init, scaledDotProductAttention, tensor } from "../src/index.js";
import { expectRejected } from "./support/rejects.js";

beforeAll(() => init());

const t = (...shape: number[]) => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5), shape);
const b = (...shape: number[]) => tensor(new Uint8Array(shape.reduce((a, b) => a * b, 1)).fill(1), shape);
const q = t(2, 3, 4, 8);
const k = t(2, 3, 6, 8);

// [what, () => call, error class, message pattern]
const rows: [string, () => unknown, typeof WasmAttentionError, RegExp][] = [
  [
    "query not a tensor",
    () => scaledDotProductAttention([1, 2] as never, k, k),
    ArgumentError,
    /query: expected a tensor \{ data: Float32Array, shape \}, got an Array/,
  ],
  [
    "Float64Array data",
    () => scaledDotProductAttention({ data: new Float64Array(192), shape: [2, 3, 4, 8] } as never, k, k),
    ArgumentError,
    /query: expected data of type Float32Array, got Float64Array/,
  ],
  [
    "plain array data",
    () => scaledDotProductAttention(q, { data: [1], shape: [1] } as never, k),
    ArgumentError,
    /key: expected data of type Float32Array, got an Array/,
  ],
  [
    "data length != shape",
    () => scaledDotProductAttention({ data: new Float32Array(10), shape: [2, 3, 4, 8] }, k, k),
    ShapeError,
    /query.data: expected 192 elements \(shape \[2, 3, 4, 8\]\), got 10/,
  ],
  [
    "NaN dimension",
    () => scaledDotProductAttention({ data: new Float32Array(0), shape: [NaN, 8] }, k, k),
    ShapeError,
    /query.shape\[0\]: expected a non-negative integer, got number NaN/,
  ],
  [
    "negative dimension",
    () => scaledDotProductAttention({ data: new Float32Array(0), shape: [-1, 8] }, k, k),
    ShapeError,
    /query.shape\[0\]: expected a non-negative integer, got number -1/,
  ],
  [
    "rank 1 query",
    () => scaledDotProductAttention(t(8), t(8), t(8)),
    ShapeError,
    /query: expected \[\.\.\., Lq, E\] \(at least 2 dimensions\), got \[8\]/,
  ],
  [
    "rank mismatch",
    () => scaledDotProductAttention(q, t(3, 6, 8), t(3, 6, 8)),
    ShapeError,
    /key: expected 4 dimensions like query \[2, 3, 4, 8\], got \[3, 6, 8\]/,
  ],
  [
    "batch mismatch",
    () => scaledDotProductAttention(q, t(1, 3, 6, 8), t(1, 3, 6, 8)),
    ShapeError,
    /key: expected the leading dimensions of query \[2, 3, 4, 8\], got \[1, 3, 6, 8\]/,
  ],
  ["E mismatch", () => scaledDotProductAttention(q, t(2, 3, 6, 7), k), ShapeError, /key: expected \[\.\.\., Lk, 8\]/],
  [
    "E = 0",
    () => scaledDotProductAttention(t(2, 0), t(2, 0), t(2, 3)),
    ShapeError,
    /query: expected an embedding dimension E of at least 1, got \[2, 0\]/,
  ],
  ["value Lk mismatch", () => scaledDotProductAttention(q, k, t(2, 3, 5, 8)), ShapeError, /value: expected \[\.\.\., 6, Ev\]/],
  ["value heads mismatch", () => scaledDotProductAttention(q, k, t(2, 1, 6, 8)), ShapeError, /value: expected 3 heads like key/],
  [
    "head mismatch without enableGqa",
    () => scaledDotProductAttention(q, t(2, 1, 6, 8), t(2, 1, 6, 8)),
    ShapeError,
    /key: expected 3 heads .* \(pass enableGqa: true/,
  ],
  [
    "GQA heads not a multiple",
    () => scaledDotProductAttention(q, t(2, 2, 6, 8), t(2, 2, 6, 8), { enableGqa: true }),
    ShapeError,
    /query: expected a number of heads that is a multiple of key's 2 \(\[2, 2, 6, 8\]\) with enableGqa, got 3 in \[2, 3, 4, 8\]/,
  ],
  [
    "mask does not broadcast",
    () => scaledDotProductAttention(q, k, k, { attnMask: b(4, 5) }),
    ShapeError,
    /attnMask: expected a shape that broadcasts to the scores' shape \[2, 3, 4, 6\] \(dimension -1: 6 or 1\), got \[4, 5\]/,
  ],
  [
    "mask of too many dims",
    () => scaledDotProductAttention(q, k, k, { attnMask: b(1, 2, 3, 4, 6) }),
    ShapeError,
    /attnMask: expected at most the 4 dimensions of the scores \[2, 3, 4, 6\], got \[1, 2, 3, 4, 6\]/,
  ],
  [
    "mask of wrong dtype",
    () => scaledDotProductAttention(q, k, k, { attnMask: { data: new Int32Array(24), shape: [4, 6] } as never }),
    ArgumentError,
    /attnMask: expected data of type Float32Array or Uint8Array, got Int32Array/,
  ],
  [
    "isCausal with attnMask",
    () => scaledDotProductAttention(q, k, k, { isCausal: true, attnMask: b(4, 6) }),
    ArgumentError,
    /isCausal: not together with attnMask/,
  ],
  [
    "isCausal not boolean",
    () => scaledDotProductAttention(q, k, k, { isCausal: 1 as never }),
    ArgumentError,
    /isCausal: expected a boolean, got number 1/,
  ],
  [
    "bad causalAlignment",
    () => scaledDotProductAttention(q, k, k, { isCausal: true, causalAlignment: "bottom" as never }),
    ArgumentError,
    /causalAlignment: expected "top-left" or "bottom-right", got string bottom/,
  ],
  ["scale NaN", () => scaledDotProductAttention(q, k, k, { scale: NaN }), ArgumentError, /scale: expected a finite number > 0, got number NaN/],
  ["scale 0", () => scaledDotProductAttention(q, k, k, { scale: 0 }), ArgumentError, /scale: expected a finite number > 0, got number 0/],
  ["scale Infinity", () => scaledDotProductAttention(q, k, k, { scale: Infinity }), ArgumentError, /scale: expected a finite number > 0/],
  [
    "unknown option",
    () => scaledDotProductAttention(q, k, k, { dropoutP: 0.1 } as never),
    ArgumentError,
    /expected only "attnMask", "isCausal".*, got unknown option "dropoutP"/,
  ],
  ["options not an object", () => scaledDotProductAttention(q, k, k, 5 as never), ArgumentError, /options: expected an object, got number 5/],
  ["tensor(): length mismatch", () => tensor(new Float32Array(5), [2, 3]), ShapeError, /tensor data: expected 6 elements \(shape \[2, 3\]\), got 5/],
];

describe("bad input gets a clear error before any kernel runs", () => {
  for (const [what, call, cls, message] of rows) {
    test(what, () => expectRejected(call, cls, message, () => expect(scaledDotProductAttention(q, k, k).shape).toEqual([2, 3, 4, 8])));
  }
});
