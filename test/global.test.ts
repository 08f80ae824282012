// Longformer's global tokens on a sliding window: equal to dense attention with the equivalent mask.
import { beforeAll, describe, expect, test } from "vitest";
import { init, scaledDotProductAttention, tensor } from "../src/index.js";
import { expectClose, freshSeed, rng } from "./reference.js";

beforeAll(() => init());

// true = takes part: the band of the window, every global key, and every key for a global query
function equivalent(L: number, window: [number, number], global: number[], dilation = 1) {
  const g = new Set(global);
  return tensor(
    Uint8Array.from({ length: L * L }, (_, n) => {
      const [i, j] = [Math.floor(n / L), n % L];
      const d = i - j;
      const inBand = d <= window[0] && -d <= window[1] && d % dilation === 0;
      return inBand || g.has(i) || g.has(j) ? 1 : 0;
    }),
    [L, L],
  );
}

describe("global tokens", () => {
  const cases: [string, number, number, number, [number, number], number[], number][] = [
    ["one global token at the start", 2, 70, 8, [4, 4], [0], 1],
    ["several, in and out of each other's windows", 3, 130, 17, [10, 3], [0, 5, 64, 129], 1],
    ["with a dilated window and GQA-free batch of 2", 2, 50, 7, [12, 12], [3, 40], 3],
  ];
  for (const [name, H, L, E, window, global, dilation] of cases) {
    test(name, () => {
      const r = rng(freshSeed());
      const x = (D: number) => tensor(r.floats(2 * H * L * D, 2), [2, H, L, D]);
      const [q, k, v] = [x(E), x(E), x(5)];
      const got = scaledDotProductAttention(q, k, v, { window, dilation, globalTokens: global });
      const want = scaledDotProductAttention(q, k, v, { attnMask: equivalent(L, window, global, dilation) });
      expectClose(got.data, want.data, got.shape, { atol: 2e-6, rtol: 1e-5 });
    });
  }

  test("errors", () => {
    const q = tensor(new Float32Array(20 * 4), [20, 4]);
    expect(() => scaledDotProductAttention(q, q, q, { globalTokens: [20] })).toThrow(
      /globalTokens: expected distinct positions from 0 to 19, got \[20\]/,
    );
    expect(() => scaledDotProductAttention(q, q, q, { globalTokens: [1, 1] })).toThrow(/distinct positions/);
    expect(() => scaledDotProductAttention(q, q, q, { globalTokens: [1], isCausal: true })).toThrow(/globalTokens: not together with isCausal/);
    expect(() =>
      scaledDotProductAttention(q, tensor(new Float32Array(40), [10, 4]), tensor(new Float32Array(40), [10, 4]), { globalTokens: [1] }),
    ).toThrow(/Lq = Lk/);
  });
});
