// Issue #10, NaN containment. The README promises: "NaN or Infinity in an input reaches only the
// outputs that read it". A key that a mask removes, a key a padding mask removes, a value whose
// weight is 0 (masked, a causal future key, a key outside the window) is not read: every output row
// that does not see the NaN key must be finite and equal to the same call with that key holding 0.
// Lq >= 8, so rows that see the key and rows that do not share the kernel's 4-row blocks and tiles.
import { beforeAll, describe, expect, test } from "vitest";
import * as lib from "../src/index.js";
import { rng } from "./reference.js";

beforeAll(() => lib.init({ simd: "baseline" }));

const r = rng(5);
const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const t = (shape: number[], scale = 1) => lib.tensor(r.floats(size(shape), scale), shape);
const loaded = <M extends lib.Module>(m: M): M => m.loadStateDict(Object.fromEntries(m.params().map((p) => [p.key, t([...p.shape], 0.5)])));

/** A copy of x with row `row` (rowLen elements) set to `value`. */
function withRow(x: lib.Tensor, row: number, rowLen: number, value: number): lib.Tensor {
  const data = x.data.slice();
  data.fill(value, row * rowLen, (row + 1) * rowLen);
  return lib.tensor(data, [...x.shape]);
}

/**
 * Every row n of `got` (rows of rowLen) for which clean(n) holds is finite and equal (===) to the
 * same row of `want`; the message names the first row that is not.
 */
function expectClean(
  what: string,
  got: Float32Array,
  want: Float32Array,
  rowLen: number,
  clean: (row: number) => boolean,
  label: (row: number) => string = String,
): void {
  expect(got.length).toBe(want.length);
  let checked = 0;
  for (let n = 0; n * rowLen < got.length; n++) {
    if (!clean(n)) continue;
    checked++;
    for (let e = 0; e < rowLen; e++) {
      const [g, w] = [got[n * rowLen + e], want[n * rowLen + e]];
      if (!Number.isFinite(g) || g !== w) {
        throw new Error(`${what}: row ${label(n)} does not read the NaN key but its element ${e} is ${g} (with the key at 0: ${w})`);
      }
    }
  }
  expect(checked, `${what}: rows checked`).toBeGreaterThan(0);
}

// scaledDotProductAttention on [B, H, L, E] tensors, NaN in one key (and/or value) row of batch
// `b`, key/value head `g`, position `j`; `sees(b, h, i)` says which output rows read that key
interface SdpaCase {
  name: string;
  B?: number;
  Hq?: number;
  Hk?: number;
  Lq?: number;
  Lk?: number;
  at: { b: number; g: number; j: number };
  options: (Lq: number, Lk: number) => Omit<lib.AttentionOptions, "returnWeights">;
  sees: (b: number, h: number, i: number) => boolean;
}

// a [Lq, Lk] mask that removes key j from rows for which `removed(i)`: boolean (true = takes part) or float (-Infinity)
const boolMask = (Lq: number, Lk: number, j: number, removed: (i: number) => boolean) =>
  lib.tensor(
    Uint8Array.from({ length: Lq * Lk }, (_, n) => (n % Lk === j && removed(Math.floor(n / Lk)) ? 0 : 1)),
    [Lq, Lk],
  );
const floatMask = (Lq: number, Lk: number, j: number, removed: (i: number) => boolean) =>
  lib.tensor(
    Float32Array.from({ length: Lq * Lk }, (_, n) => (n % Lk === j && removed(Math.floor(n / Lk)) ? -Infinity : ((n * 7) % 5) / 10)),
    [Lq, Lk],
  );

const J = 5;
const at = { b: 0, g: 1, j: J };
const sdpaCases: SdpaCase[] = [
  {
    name: "boolean attnMask false on the key, for every row",
    at,
    options: (Lq, Lk) => ({ attnMask: boolMask(Lq, Lk, J, () => true) }),
    sees: () => false,
  },
  {
    name: "float attnMask -Infinity on the key, for every row",
    at,
    options: (Lq, Lk) => ({ attnMask: floatMask(Lq, Lk, J, () => true) }),
    sees: () => false,
  },
  {
    name: "boolean attnMask removing the key from rows 0..5 only (rows 4, 5 share a block with rows that see it)",
    at,
    options: (Lq, Lk) => ({ attnMask: boolMask(Lq, Lk, J, (i) => i < 6) }),
    sees: (b, h, i) => b === 0 && h === 1 && i >= 6,
  },
  {
    name: "float attnMask removing the key from rows 0..5 only",
    at,
    options: (Lq, Lk) => ({ attnMask: floatMask(Lq, Lk, J, (i) => i < 6) }),
    sees: (b, h, i) => b === 0 && h === 1 && i >= 6,
  },
  {
    name: "a [B, 1, 1, Lk] boolean padding-style mask removing the key of batch 0",
    at,
    options: (_, Lk) => ({
      attnMask: lib.tensor(
        Uint8Array.from({ length: 2 * Lk }, (_, n) => (n === J ? 0 : 1)),
        [2, 1, 1, Lk],
      ),
    }),
    sees: () => false,
  },
  {
    name: "GQA (4 query heads, 2 key/value heads), boolean attnMask on the key",
    Hq: 4,
    Hk: 2,
    at,
    options: (Lq, Lk) => ({ enableGqa: true, attnMask: boolMask(Lq, Lk, J, () => true) }),
    sees: () => false,
  },
  {
    name: "GQA, float attnMask on the key for rows 0..6",
    Hq: 4,
    Hk: 2,
    at,
    options: (Lq, Lk) => ({ enableGqa: true, attnMask: floatMask(Lq, Lk, J, (i) => i < 7) }),
    sees: (b, h, i) => b === 0 && (h === 2 || h === 3) && i >= 7,
  },
  {
    name: "isCausal: a future key (key 6) for rows 0..5",
    at: { b: 0, g: 1, j: 6 },
    options: () => ({ isCausal: true }),
    sees: (b, h, i) => b === 0 && h === 1 && i >= 6,
  },
  {
    name: "isCausal, GQA: a future key (key 9)",
    Hq: 4,
    Hk: 2,
    at: { b: 1, g: 0, j: 9 },
    options: () => ({ isCausal: true, enableGqa: true }),
    sees: (b, h, i) => b === 1 && h < 2 && i >= 9,
  },
  {
    name: "isCausal bottom-right (Lq 9, Lk 12): a future key (key 10)",
    Lq: 9,
    Lk: 12,
    at: { b: 0, g: 1, j: 10 },
    options: () => ({ isCausal: true, causalAlignment: "bottom-right" }),
    sees: (b, h, i) => b === 0 && h === 1 && i + 3 >= 10,
  },
  {
    name: "a window [2, 2]: a key (8) outside the window of rows 0..5 and 11..15",
    Lq: 16,
    Lk: 16,
    at: { b: 0, g: 1, j: 8 },
    options: () => ({ window: [2, 2] }),
    sees: (b, h, i) => b === 0 && h === 1 && Math.abs(i - 8) <= 2,
  },
  {
    name: "a causal window [3, 0]: key 9 outside the window of rows 0..8 and 13..15",
    Lq: 16,
    Lk: 16,
    at: { b: 0, g: 1, j: 9 },
    options: () => ({ window: [3, 0] }),
    sees: (b, h, i) => b === 0 && h === 1 && i >= 9 && i <= 12,
  },
  {
    name: "a window [1, 1] with a boolean mask too: key 8",
    Lq: 16,
    Lk: 16,
    at: { b: 0, g: 1, j: 8 },
    options: (Lq, Lk) => ({ window: [1, 1], attnMask: boolMask(Lq, Lk, 0, () => false) }),
    sees: (b, h, i) => b === 0 && h === 1 && Math.abs(i - 8) <= 1,
  },
  {
    name: "block-sparse: a key block (keys 8..15) that query block 0 does not see",
    Lq: 16,
    Lk: 16,
    at: { b: 0, g: 1, j: 12 },
    options: () => ({ blockSparse: { layout: lib.tensor(Uint8Array.from([1, 0, 1, 1]), [2, 2]), blockSize: 8 } }),
    sees: (b, h, i) => b === 0 && h === 1 && i >= 8,
  },
];

describe("scaledDotProductAttention: NaN in a key or value that a row does not see reaches no such row", () => {
  for (const c of sdpaCases) {
    for (const where of ["key", "value", "key and value"] as const) {
      for (const returnWeights of [false, true]) {
        test(`${c.name}; NaN in the ${where}${returnWeights ? "; returnWeights" : ""}`, () => {
          const { B = 2, Hq = 2, Hk = Hq, Lq = 12, Lk = 12 } = c;
          const E = 8;
          const q = t([B, Hq, Lq, E]);
          const k = t([B, Hk, Lk, E]);
          const v = t([B, Hk, Lk, E]);
          const row = (c.at.b * Hk + c.at.g) * Lk + c.at.j;
          const poison = (x: lib.Tensor, yes: boolean, value: number) => (yes ? withRow(x, row, E, value) : x);
          const nanK = poison(k, where !== "value", NaN);
          const nanV = poison(v, where !== "key", NaN);
          const zeroK = poison(k, where !== "value", 0);
          const zeroV = poison(v, where !== "key", 0);
          const options = c.options(Lq, Lk);
          const clean = (n: number) => {
            const i = n % Lq;
            const h = Math.floor(n / Lq) % Hq;
            const b = Math.floor(n / (Lq * Hq));
            const g = Math.floor(h / (Hq / Hk));
            return !(b === c.at.b && g === c.at.g && c.sees(b, h, i));
          };
          const label = (n: number) => `(batch ${Math.floor(n / (Lq * Hq))}, head ${Math.floor(n / Lq) % Hq}, query ${n % Lq})`;
          if (!returnWeights) {
            const got = lib.scaledDotProductAttention(q, nanK, nanV, options);
            const want = lib.scaledDotProductAttention(q, zeroK, zeroV, options);
            expectClean("output", got.data, want.data, E, clean, label);
          } else {
            const got = lib.scaledDotProductAttention(q, nanK, nanV, { ...options, returnWeights: true });
            const want = lib.scaledDotProductAttention(q, zeroK, zeroV, { ...options, returnWeights: true });
            expectClean("output", got.output.data, want.output.data, E, clean, label);
            expectClean("weights", got.weights.data, want.weights.data, Lk, clean, label);
          }
        });
      }
    }
  }
});

describe("MultiHeadAttention: NaN in a key/value position that a row does not see reaches no such row", () => {
  let mha: lib.MultiHeadAttention;
  beforeAll(() => {
    mha = loaded(new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 }));
  });
  const [B, Lq, Lk, E, J] = [2, 9, 12, 8, 5];

  // cross-attention: the query is clean, key = value has NaN at (batch 0, position J)
  const crossCases: [string, () => lib.MultiHeadAttentionForwardOptions, (b: number, i: number) => boolean][] = [
    [
      "keyPaddingMask (boolean, true = padding) on the position",
      () => ({
        keyPaddingMask: lib.tensor(
          Uint8Array.from({ length: B * Lk }, (_, n) => (n === J ? 1 : 0)),
          [B, Lk],
        ),
      }),
      () => false,
    ],
    [
      "keyPaddingMask (float, -Infinity) on the position",
      () => ({
        keyPaddingMask: lib.tensor(
          Float32Array.from({ length: B * Lk }, (_, n) => (n === J ? -Infinity : 0)),
          [B, Lk],
        ),
      }),
      () => false,
    ],
    [
      "attnMask (boolean, true = not allowed) on the position for every row",
      () => ({
        attnMask: lib.tensor(
          Uint8Array.from({ length: Lq * Lk }, (_, n) => (n % Lk === J ? 1 : 0)),
          [Lq, Lk],
        ),
      }),
      () => false,
    ],
    [
      "attnMask (float, -Infinity) on the position for rows 0..5",
      () => ({ attnMask: floatMask(Lq, Lk, J, (i) => i < 6) }),
      (b, i) => b === 0 && i >= 6,
    ],
    [
      "attnMask [B * H, Lq, Lk] (boolean) on the position for head 0 and rows 0..6 of head 1",
      () => ({
        attnMask: lib.tensor(
          Uint8Array.from({ length: B * 2 * Lq * Lk }, (_, n) =>
            n % Lk === J && (Math.floor(n / (Lq * Lk)) % 2 === 0 || Math.floor(n / Lk) % Lq < 7) ? 1 : 0,
          ),
          [B * 2, Lq, Lk],
        ),
      }),
      (b, i) => b === 0 && i >= 7,
    ],
    [
      "keyPaddingMask and attnMask together",
      () => ({
        keyPaddingMask: lib.tensor(
          Uint8Array.from({ length: B * Lk }, (_, n) => (n === J ? 1 : 0)),
          [B, Lk],
        ),
        attnMask: floatMask(Lq, Lk, 0, () => false),
      }),
      () => false,
    ],
  ];
  for (const [name, options, sees] of crossCases) {
    for (const average of [true, false]) {
      test(`cross-attention, ${name}; weights ${average ? "averaged" : "per head"}`, () => {
        const q = t([B, Lq, E]);
        const kv = t([B, Lk, E]);
        const row = 0 * Lk + J;
        const o = { ...options(), averageAttnWeights: average };
        const got = mha.forward(q, withRow(kv, row, E, NaN), withRow(kv, row, E, NaN), o);
        const want = mha.forward(q, withRow(kv, row, E, 0), withRow(kv, row, E, 0), o);
        const clean = (n: number) => !sees(Math.floor(n / Lq), n % Lq);
        const label = (n: number) => `(batch ${Math.floor(n / Lq)}, query ${n % Lq})`;
        expectClean("output", got.output.data, want.output.data, E, clean, label);
        if (average) expectClean("weights", got.weights!.data, want.weights!.data, Lk, clean, label);
        else
          expectClean(
            "weights",
            got.weights!.data,
            want.weights!.data,
            Lk,
            (n) => clean(Math.floor(n / (2 * Lq)) * Lq + (n % Lq)),
            (n) => `(batch ${Math.floor(n / (2 * Lq))}, head ${Math.floor(n / Lq) % 2}, query ${n % Lq})`,
          );
      });
    }
  }

  test("self-attention, isCausal: NaN at position 6 of batch 0 reaches only rows 6.. of batch 0 (output and weights)", () => {
    const x = t([B, 12, E]);
    const got = mha.forward(withRow(x, 6, E, NaN), withRow(x, 6, E, NaN), withRow(x, 6, E, NaN), { isCausal: true });
    const want = mha.forward(withRow(x, 6, E, 0), withRow(x, 6, E, 0), withRow(x, 6, E, 0), { isCausal: true });
    const clean = (n: number) => !(Math.floor(n / 12) === 0 && n % 12 >= 6);
    const label = (n: number) => `(batch ${Math.floor(n / 12)}, query ${n % 12})`;
    expectClean("output", got.output.data, want.output.data, E, clean, label);
    expectClean("weights", got.weights!.data, want.weights!.data, 12, clean, label);
  });

  test("TransformerEncoderLayer, srcKeyPaddingMask: NaN at a padded position of batch 0 reaches only that position's own row", () => {
    const layer = loaded(new lib.TransformerEncoderLayer({ dModel: 8, nhead: 2, dimFeedforward: 16 }));
    const x = t([B, 10, E]);
    const pad = lib.tensor(
      Uint8Array.from({ length: B * 10 }, (_, n) => (n === 4 ? 1 : 0)),
      [B, 10],
    );
    const got = layer.forward(withRow(x, 4, E, NaN), { srcKeyPaddingMask: pad });
    const want = layer.forward(withRow(x, 4, E, 0), { srcKeyPaddingMask: pad });
    expectClean(
      "output",
      got.data,
      want.data,
      E,
      (n) => n !== 4,
      (n) => `(batch ${Math.floor(n / 10)}, position ${n % 10})`,
    );
    layer.dispose();
  });
});
