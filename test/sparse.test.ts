// Block-sparse attention: each pattern equals dense attention with the equivalent explicit mask.
import { beforeAll, describe, expect, test } from "vitest";
import { type BlockSparsePattern, type BoolTensor, blockSparseLayout, init, scaledDotProductAttention, tensor } from "../src/index.js";
import { expectClose, freshSeed, rng } from "./reference.js";

beforeAll(() => init());

// the element mask [Lq, Lk] (true = takes part) that a block layout stands for
function expand(layout: BoolTensor, Lq: number, Lk: number, bs: number): BoolTensor {
  const [, nK] = layout.shape;
  return tensor(
    Uint8Array.from({ length: Lq * Lk }, (_, n) => layout.data[Math.floor(Math.floor(n / Lk) / bs) * nK + Math.floor((n % Lk) / bs)]),
    [Lq, Lk],
  );
}

describe("block-sparse attention equals dense attention with the same mask", () => {
  const cases: [string, number, number, number, number, BlockSparsePattern][] = [
    ["strided, odd length", 2, 70, 16, 8, { pattern: "strided", stride: 2 }],
    ["fixed, summary blocks", 3, 100, 8, 16, { pattern: "fixed", stride: 4, summary: 1 }],
    ["BigBird: window, global and random blocks", 2, 130, 16, 7, { pattern: "bigbird", window: 1, global: 1, random: 2, seed: 42 }],
    ["long rows split across threads' tasks", 1, 203, 24, 33, { pattern: "bigbird", window: 2, global: 0, random: 1, seed: 7 }],
  ];
  for (const [name, H, L, bs, E, pattern] of cases) {
    test(name, () => {
      const r = rng(freshSeed());
      const q = tensor(r.floats(H * L * E, 2), [1, H, L, E]);
      const k = tensor(r.floats(H * L * E, 2), [1, H, L, E]);
      const v = tensor(r.floats(H * L * E), [1, H, L, E]);
      const layout = blockSparseLayout(L, L, bs, pattern);
      const sparse = scaledDotProductAttention(q, k, v, { blockSparse: { layout, blockSize: bs }, returnWeights: true });
      const dense = scaledDotProductAttention(q, k, v, { attnMask: expand(layout, L, L, bs), returnWeights: true });
      expectClose(sparse.output.data, dense.output.data, sparse.output.shape, { atol: 1e-6, rtol: 1e-6 });
      expectClose(sparse.weights.data, dense.weights.data, sparse.weights.shape, { atol: 1e-6, rtol: 1e-6 });
    });
  }

  test("BigBird's random blocks are reproducible from the seed", () => {
    const a = blockSparseLayout(256, 256, 16, { pattern: "bigbird", window: 1, global: 1, random: 3, seed: 5 });
    expect(blockSparseLayout(256, 256, 16, { pattern: "bigbird", window: 1, global: 1, random: 3, seed: 5 }).data).toEqual(a.data);
    expect(blockSparseLayout(256, 256, 16, { pattern: "bigbird", window: 1, global: 1, random: 3, seed: 6 }).data).not.toEqual(a.data);
  });

  test("errors", () => {
    const q = tensor(new Float32Array(40 * 8), [40, 8]);
    const layout = blockSparseLayout(40, 40, 8, { pattern: "strided", stride: 2 });
    expect(() => scaledDotProductAttention(q, q, q, { blockSparse: { layout, blockSize: 12 } })).toThrow(
      /blockSize: expected a positive multiple of 8, got number 12/,
    );
    expect(() => scaledDotProductAttention(q, q, q, { blockSparse: { layout, blockSize: 16 } })).toThrow(
      /blockSparse.layout: expected \[3, 3\] \(ceil\(Lq \/ 16\), ceil\(Lk \/ 16\)\), got \[5, 5\]/,
    );
    expect(() => blockSparseLayout(40, 40, 8, { pattern: "dense" } as never)).toThrow(
      /blockSparseLayout pattern: expected "strided", "fixed" or "bigbird", got string dense/,
    );
  });
});
