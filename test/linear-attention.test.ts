import { beforeAll, describe, expect, test } from "vitest";
import { LinearAttentionState, ShapeError, StateError, init, linearAttention, memoryStats, tensor } from "../src/index.js";
import { expectClose, freshSeed, rng } from "./reference.js";

beforeAll(() => init());

const phis = { "elu+1": (x: number) => (x > 0 ? x + 1 : Math.exp(x)), relu: (x: number) => Math.max(x, 0) };

// the explicit quadratic form with the same feature map: out_i = sum_j (phi(q_i).phi(k_j)) v_j / (sum_j phi(q_i).phi(k_j) + eps)
function quadratic(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  N: number,
  Lq: number,
  Lk: number,
  E: number,
  Ev: number,
  causal: boolean,
  map: keyof typeof phis,
  eps = 1e-6,
) {
  const phi = phis[map];
  const out = new Float64Array(N * Lq * Ev);
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < Lq; i++) {
      let den = eps;
      for (let j = 0; j < (causal ? i + 1 : Lk); j++) {
        let a = 0;
        for (let e = 0; e < E; e++) a += phi(q[(n * Lq + i) * E + e]) * phi(k[(n * Lk + j) * E + e]);
        den += a;
        for (let c = 0; c < Ev; c++) out[(n * Lq + i) * Ev + c] += a * v[(n * Lk + j) * Ev + c];
      }
      for (let c = 0; c < Ev; c++) out[(n * Lq + i) * Ev + c] /= den;
    }
  }
  return out;
}

describe("linearAttention vs the explicit quadratic formula", () => {
  const cases: [string, number[], number, number, number, number, boolean, keyof typeof phis][] = [
    ["non-causal, Lq != Lk", [2, 3], 5, 17, 7, 5, false, "elu+1"],
    ["causal", [2, 2], 33, 33, 16, 8, true, "elu+1"],
    ["causal, relu, E=1", [1], 9, 9, 1, 3, true, "relu"],
    ["one token, odd sizes", [3], 1, 1, 33, 17, false, "elu+1"],
  ];
  for (const [name, lead, Lq, Lk, E, Ev, causal, featureMap] of cases) {
    test(name, () => {
      const r = rng(freshSeed());
      const N = lead.reduce((a, b) => a * b, 1);
      const q = tensor(r.floats(N * Lq * E), [...lead, Lq, E]);
      const k = tensor(r.floats(N * Lk * E), [...lead, Lk, E]);
      const v = tensor(r.floats(N * Lk * Ev), [...lead, Lk, Ev]);
      const out = linearAttention(q, k, v, { causal, featureMap });
      expect(out.shape).toEqual([...lead, Lq, Ev]);
      expectClose(out.data, quadratic(q.data, k.data, v.data, N, Lq, Lk, E, Ev, causal, featureMap), out.shape, { atol: 1e-5, rtol: 1e-4 });
    });
  }

  test("the recurrent state, token by token and in chunks, equals the causal batch form", () => {
    const r = rng(freshSeed());
    const [H, L, E, Ev] = [3, 20, 8, 6];
    const q = tensor(r.floats(H * L * E), [H, L, E]);
    const k = tensor(r.floats(H * L * E), [H, L, E]);
    const v = tensor(r.floats(H * L * Ev), [H, L, Ev]);
    const batch = linearAttention(q, k, v, { causal: true });
    const state = new LinearAttentionState([H], E, Ev);
    const got = new Float32Array(H * L * Ev);
    const slice = (t: Float32Array, D: number, a: number, b: number) => {
      const out = new Float32Array(H * (b - a) * D);
      for (let h = 0; h < H; h++) out.set(t.subarray((h * L + a) * D, (h * L + b) * D), h * (b - a) * D);
      return out;
    };
    for (const [a, b] of [
      [0, 1],
      [1, 2],
      [2, 9],
      [9, 10],
      [10, 20],
    ]) {
      const o = state.step(
        tensor(slice(q.data, E, a, b), [H, b - a, E]),
        tensor(slice(k.data, E, a, b), [H, b - a, E]),
        tensor(slice(v.data, Ev, a, b), [H, b - a, Ev]),
      );
      for (let h = 0; h < H; h++) got.set(o.data.subarray(h * (b - a) * Ev, (h + 1) * (b - a) * Ev), (h * L + a) * Ev);
    }
    expectClose(got, batch.data, [H, L, Ev], { atol: 1e-6, rtol: 1e-5 });
    state.reset();
    expect(
      state.step(tensor(slice(q.data, E, 0, 1), [H, 1, E]), tensor(slice(k.data, E, 0, 1), [H, 1, E]), tensor(slice(v.data, Ev, 0, 1), [H, 1, Ev]))
        .data,
    ).toEqual(
      linearAttention(
        tensor(slice(q.data, E, 0, 1), [H, 1, E]),
        tensor(slice(k.data, E, 0, 1), [H, 1, E]),
        tensor(slice(v.data, Ev, 0, 1), [H, 1, Ev]),
        { causal: true },
      ).data,
    );
    const live = memoryStats().liveBytes;
    state.dispose();
    expect(memoryStats().liveBytes).toBeLessThan(live);
    expect(() => state.reset()).toThrow(StateError);
  });

  test("errors", () => {
    const x = tensor(new Float32Array(12), [3, 4]);
    expect(() => linearAttention(x, tensor(new Float32Array(8), [2, 4]), tensor(new Float32Array(8), [2, 4]), { causal: true })).toThrow(
      /key: expected Lk = Lq = 3 \(causal; query \[3, 4\]\), got \[2, 4\]/,
    );
    expect(() => linearAttention(x, x, x, { featureMap: "softmax" as never })).toThrow(/featureMap: expected "elu\+1" or "relu"/);
    expect(() => linearAttention(x, tensor(new Float32Array(9), [3, 3]), x)).toThrow(ShapeError);
    expect(() => new LinearAttentionState([2], 4, 4).step(x, x, x)).toThrow(/LinearAttentionState.step: expected query and key \[2, 3, 4\]/);
  });
});
