// Attention sinks, per-sequence key lengths and the scores at each stage (issue 15), against a
// float64 reference written here: softmax over [scores..., sink] without the sink's value; keys at
// or past a sequence's length skipped; scores "scaled" -> "softcapped" -> "masked" (+ mask, -Inf
// where causality, a window or a length exclude a key).
import { beforeAll, describe, expect, test } from "vitest";
import { ArgumentError, init, scaledDotProductAttention, tensor } from "../src/index.js";
import { expectClose, freshSeed, rng } from "./reference.js";

beforeAll(() => init({ simd: "baseline" }));

interface Case {
  B: number;
  Hq: number;
  Hk: number;
  Lq: number;
  Lk: number;
  E: number;
  Ev: number;
  scale?: number;
  causal?: "top-left" | "bottom-right";
  /** where the diagonal of a window starts, without causality */
  alignment?: "top-left" | "bottom-right";
  window?: [number, number];
  softcap?: number;
  mask?: Float32Array; // [Lq, Lk], added
  sinks?: number[];
  lengths?: number[];
}

// out [B, Hq, Lq, Ev], weights and the three score stages [B, Hq, Lq, Lk], in float64
function reference(q: Float32Array, k: Float32Array, v: Float32Array, c: Case) {
  const { B, Hq, Hk, Lq, Lk, E, Ev } = c;
  const scale = c.scale ?? 1 / Math.sqrt(E);
  const out = new Float64Array(B * Hq * Lq * Ev);
  const weights = new Float64Array(B * Hq * Lq * Lk);
  const stages = {
    scaled: new Float64Array(B * Hq * Lq * Lk),
    softcapped: new Float64Array(B * Hq * Lq * Lk),
    masked: new Float64Array(B * Hq * Lq * Lk),
  };
  for (let b = 0; b < B; b++) {
    const len = c.lengths?.[b] ?? Lk;
    const diag = (c.causal ?? c.alignment) === "bottom-right" ? len - Lq : 0;
    for (let h = 0; h < Hq; h++) {
      const g = Math.floor(h / (Hq / Hk));
      for (let i = 0; i < Lq; i++) {
        const row = ((b * Hq + h) * Lq + i) * Lk;
        const s = new Float64Array(Lk);
        for (let j = 0; j < Lk; j++) {
          let dot = 0;
          for (let e = 0; e < E; e++) dot += q[((b * Hq + h) * Lq + i) * E + e]! * k[((b * Hk + g) * Lk + j) * E + e]!;
          let x = dot * scale;
          stages.scaled[row + j] = x;
          if (c.softcap) x = c.softcap * Math.tanh(x / c.softcap);
          stages.softcapped[row + j] = x;
          if (c.mask) x += c.mask[i * Lk + j]!;
          const excluded =
            j >= len ||
            (c.causal !== undefined && j > i + diag) ||
            (c.window !== undefined && (j < i + diag - c.window[0] || j > i + diag + c.window[1]));
          if (excluded) x = -Infinity;
          stages.masked[row + j] = x;
          s[j] = x;
        }
        const sink = c.sinks?.[h] ?? -Infinity;
        const max = Math.max(sink, ...s);
        if (max === -Infinity) continue;
        let sum = Math.exp(sink - max);
        for (let j = 0; j < Lk; j++) sum += Math.exp(s[j]! - max);
        for (let j = 0; j < Lk; j++) {
          const p = Math.exp(s[j]! - max) / sum;
          weights[row + j] = p;
          for (let e = 0; e < Ev; e++) out[((b * Hq + h) * Lq + i) * Ev + e] += p * v[((b * Hk + g) * Lk + j) * Ev + e]!;
        }
      }
    }
  }
  return { out, weights, stages };
}

function problem(c: Case, seed: number) {
  const r = rng(seed);
  const q = tensor(r.floats(c.B * c.Hq * c.Lq * c.E, 1), [c.B, c.Hq, c.Lq, c.E]);
  const k = tensor(r.floats(c.B * c.Hk * c.Lk * c.E, 1), [c.B, c.Hk, c.Lk, c.E]);
  const v = tensor(r.floats(c.B * c.Hk * c.Lk * c.Ev, 1), [c.B, c.Hk, c.Lk, c.Ev]);
  return { q, k, v };
}

function options(c: Case) {
  return {
    enableGqa: c.Hq !== c.Hk,
    scale: c.scale,
    isCausal: c.causal !== undefined,
    causalAlignment: c.causal ?? c.alignment ?? "top-left",
    window: c.window,
    softcap: c.softcap,
    attnMask: c.mask && tensor(c.mask, [c.Lq, c.Lk]),
    sinks: c.sinks,
    keyLengths: c.lengths && Int32Array.from(c.lengths),
  } as const;
}

const base = { B: 3, Hq: 4, Hk: 2, Lq: 9, Lk: 13, E: 7, Ev: 5 };
const cases: [string, Case][] = [
  ["sinks", { ...base, sinks: [0.5, -1, 2, 0] }],
  ["sinks, bottom-right causal", { ...base, sinks: [0.5, -1, 2, 0], causal: "bottom-right" }],
  ["sinks, a float mask with a fully masked row", { ...base, sinks: [1, 1, 1, 1], mask: maskWithDeadRow(9, 13, 4) }],
  ["sinks, a window", { ...base, sinks: [0, 3, -2, 1], window: [2, 1] }],
  ["key lengths 13, 5, 0", { ...base, lengths: [13, 5, 0] }],
  ["key lengths, bottom-right causal per sequence", { ...base, lengths: [13, 9, 4], causal: "bottom-right" }],
  ["key lengths, top-left causal", { ...base, lengths: [3, 13, 8], causal: "top-left" }],
  ["key lengths, a mask and a window", { ...base, lengths: [11, 2, 13], mask: maskWithDeadRow(9, 13, 2), window: [3, 3] }],
  ["key lengths and sinks, E = 1, Lq = 1", { ...base, E: 1, Lq: 1, lengths: [1, 0, 13], sinks: [0.1, 0.2, 0.3, 0.4], causal: "bottom-right" }],
  [
    "key lengths, head dim 33, Lq 70 (tiles and a tail)",
    { B: 2, Hq: 2, Hk: 2, Lq: 70, Lk: 70, E: 33, Ev: 33, lengths: [70, 41], causal: "bottom-right", softcap: 5 },
  ],
];

function maskWithDeadRow(Lq: number, Lk: number, dead: number): Float32Array {
  const r = rng(7);
  return Float32Array.from({ length: Lq * Lk }, (_, n) => (Math.floor(n / Lk) === dead ? -Infinity : r.floats(1, 1)[0]!));
}

describe("sinks and key lengths equal the float64 reference", () => {
  for (const [name, c] of cases) {
    test(name, () => {
      const seed = freshSeed();
      const { q, k, v } = problem(c, seed);
      const want = reference(q.data, k.data, v.data, c);
      const got = scaledDotProductAttention(q, k, v, { ...options(c), returnWeights: true });
      expectClose(got.output.data, want.out, got.output.shape, { atol: 2e-6, rtol: 1e-5 }, `output (seed ${seed})`);
      expectClose(got.weights.data, want.weights, got.weights.shape, { atol: 2e-6, rtol: 1e-5 }, `weights (seed ${seed})`);
      // the output without weights is the same computation
      expect(Array.from(scaledDotProductAttention(q, k, v, options(c)).data)).toEqual(Array.from(got.output.data));
    });
  }

  test("with sinks a row's weights sum to less than 1, by exactly the sink's share", () => {
    const c: Case = { ...base, B: 1, sinks: [2, 2, 2, 2] };
    const { q, k, v } = problem(c, 1);
    const { weights } = scaledDotProductAttention(q, k, v, { ...options(c), returnWeights: true });
    for (let row = 0; row < c.Hq * c.Lq; row++) {
      const sum = weights.data.subarray(row * c.Lk, (row + 1) * c.Lk).reduce((a, b) => a + b, 0);
      expect(sum).toBeLessThan(1);
      expect(sum).toBeGreaterThan(0);
    }
  });

  test("keys past a sequence's length are never read: NaN there changes nothing", () => {
    const c: Case = { ...base, lengths: [13, 5, 0], causal: "bottom-right" };
    const { q, k, v } = problem(c, 3);
    const want = scaledDotProductAttention(q, k, v, options(c));
    const poisoned = (t: typeof k, D: number) => {
      const data = t.data.slice();
      for (let b = 0; b < c.B; b++)
        for (let g = 0; g < c.Hk; g++)
          for (let j = c.lengths![b]!; j < c.Lk; j++) data.fill(NaN, ((b * c.Hk + g) * c.Lk + j) * D, ((b * c.Hk + g) * c.Lk + j + 1) * D);
      return tensor(data, [...t.shape]);
    };
    const got = scaledDotProductAttention(q, poisoned(k, c.E), poisoned(v, c.Ev), options(c));
    expect(Array.from(got.data)).toEqual(Array.from(want.data));
  });
});

describe("returnScores: the softmax's input at each stage", () => {
  // a causal band as a window [20, 0] (a mask and isCausal do not go together)
  const c: Case = {
    ...base,
    softcap: 1.5,
    window: [20, 0],
    alignment: "bottom-right",
    lengths: [13, 6, 0],
    mask: maskWithDeadRow(9, 13, 3),
    sinks: [0, 1, 0, 1],
  };
  for (const stage of ["scaled", "softcapped", "masked"] as const) {
    test(stage, () => {
      const { q, k, v } = problem(c, 5);
      const want = reference(q.data, k.data, v.data, c);
      const got = scaledDotProductAttention(q, k, v, { ...options(c), returnScores: stage });
      expect(got.scores.shape).toEqual([c.B, c.Hq, c.Lq, c.Lk]);
      expectClose(got.scores.data, want.stages[stage], got.scores.shape, { atol: 2e-6, rtol: 1e-5 }, stage);
      expectClose(got.output.data, want.out, got.output.shape, { atol: 2e-6, rtol: 1e-5 }, "output");
      expect(got.weights).toBeUndefined();
      if (stage === "masked") {
        // batch 2 has no valid key: all -Infinity; batch 1's keys past 6 too
        expect(got.scores.data.subarray(2 * c.Hq * c.Lq * c.Lk).every((x) => x === -Infinity)).toBe(true);
        expect(got.scores.data[(1 * c.Hq * c.Lq + 0) * c.Lk + 7]).toBe(-Infinity);
      } else {
        // real values at keys past the lengths: the scores are the whole matrix by definition
        expect(got.scores.data.every(Number.isFinite)).toBe(true);
      }
    });
  }

  test("scores and weights together", () => {
    const { q, k, v } = problem(c, 9);
    const want = reference(q.data, k.data, v.data, c);
    const got = scaledDotProductAttention(q, k, v, { ...options(c), returnScores: "masked", returnWeights: true });
    expectClose(got.scores.data, want.stages.masked, got.scores.shape, { atol: 2e-6, rtol: 1e-5 }, "masked");
    expectClose(got.weights!.data, want.weights, got.scores.shape, { atol: 2e-6, rtol: 1e-5 }, "weights");
  });

  test("without a soft-cap, softcapped equals scaled", () => {
    const plain: Case = { ...base };
    const { q, k, v } = problem(plain, 11);
    const a = scaledDotProductAttention(q, k, v, { ...options(plain), returnScores: "scaled" });
    const b = scaledDotProductAttention(q, k, v, { ...options(plain), returnScores: "softcapped" });
    expect(Array.from(b.scores.data)).toEqual(Array.from(a.scores.data));
  });
});

describe("bad sinks, key lengths and stages are ArgumentErrors before anything runs", () => {
  const { q, k, v } = problem({ ...base }, 2);
  const o = { enableGqa: true } as const;
  const bad: [string, () => unknown, RegExp][] = [
    [
      "sinks of the wrong count",
      () => scaledDotProductAttention(q, k, v, { ...o, sinks: [1, 2] }),
      /sinks: expected 4 values \(one per query head\), got 2/,
    ],
    [
      "a sink beyond float32",
      () => scaledDotProductAttention(q, k, v, { ...o, sinks: [0, 0, 1e39, 0] }),
      /sinks\[2\]: expected a finite number within float32's range/,
    ],
    ["sinks as a string", () => scaledDotProductAttention(q, k, v, { ...o, sinks: "1" as never }), /sinks: expected 4 numbers/],
    [
      "key lengths as an Array",
      () => scaledDotProductAttention(q, k, v, { ...o, keyLengths: [1, 2, 3] as never }),
      /keyLengths: expected an Int32Array of 3 lengths/,
    ],
    [
      "key lengths of the wrong count",
      () => scaledDotProductAttention(q, k, v, { ...o, keyLengths: new Int32Array(2) }),
      /keyLengths: expected 3 lengths \(one per batch element\), got 2/,
    ],
    [
      "a key length past Lk",
      () => scaledDotProductAttention(q, k, v, { ...o, keyLengths: Int32Array.of(1, 14, 2) }),
      /keyLengths: expected lengths from 0 to Lk = 13, got 14 at 1/,
    ],
    ["a negative key length", () => scaledDotProductAttention(q, k, v, { ...o, keyLengths: Int32Array.of(-1, 1, 2) }), /got -1 at 0/],
    [
      "an unknown stage",
      () => scaledDotProductAttention(q, k, v, { ...o, returnScores: "probs" as never }),
      /returnScores: expected "scaled" or "softcapped" or "masked"/,
    ],
    ["an unknown option", () => scaledDotProductAttention(q, k, v, { ...o, sink: [1] } as never), /unknown option "sink"/],
  ];
  for (const [name, call, message] of bad) {
    test(name, () => {
      expect(call).toThrow(ArgumentError);
      expect(call).toThrow(message);
    });
  }

  test("not together with global tokens", () => {
    const x = tensor(rng(1).floats(16 * 4, 1), [16, 4]);
    expect(() => scaledDotProductAttention(x, x, x, { window: [2, 2], globalTokens: [0], sinks: [1] })).toThrow(
      /sinks: not together with globalTokens/,
    );
    expect(() => scaledDotProductAttention(x, x, x, { window: [2, 2], globalTokens: [0], keyLengths: Int32Array.of(16) })).toThrow(
      /keyLengths: not together with globalTokens/,
    );
    expect(() => scaledDotProductAttention(x, x, x, { window: [2, 2], globalTokens: [0], returnScores: "scaled" })).toThrow(
      /returnScores: not together with globalTokens/,
    );
  });
});

describe("MultiHeadAttention with learned sinks (state dict key `sinks`)", () => {
  test("equals its projections around scaledDotProductAttention with the same sinks, causal and not", async () => {
    const { MultiHeadAttention, Linear } = await import("../src/index.js");
    const [E, H, L, B] = [12, 3, 7, 2];
    const r = rng(21);
    const w = (n: number) => tensor(r.floats(n, 0.5), [n]);
    const dict = {
      in_proj_weight: tensor(r.floats(3 * E * E, 0.5), [3 * E, E]),
      in_proj_bias: w(3 * E),
      "out_proj.weight": tensor(r.floats(E * E, 0.5), [E, E]),
      "out_proj.bias": w(E),
      sinks: tensor(Float32Array.of(0.7, -0.3, 1.9), [H]),
    };
    const mha = new MultiHeadAttention({ embedDim: E, numHeads: H, sinks: true }).loadStateDict(dict);
    const x = tensor(r.floats(B * L * E, 1), [B, L, E]);
    const project = (rows: number, at: number, bias: number) =>
      new Linear({ inFeatures: E, outFeatures: E })
        .loadStateDict({
          weight: tensor(dict.in_proj_weight.data.slice(at * E * E, (at + 1) * E * E), [E, E]),
          bias: tensor(dict.in_proj_bias.data.slice(bias * E, (bias + 1) * E), [E]),
        })
        .forward(tensor(x.data, [rows, E]));
    // [B * L, E] -> [B, H, L, E / H]
    const heads = (t: { data: Float32Array }) => {
      const d = E / H;
      const out = new Float32Array(B * L * E);
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++)
          for (let i = 0; i < L; i++) for (let e = 0; e < d; e++) out[((b * H + h) * L + i) * d + e] = t.data[(b * L + i) * E + h * d + e]!;
      return tensor(out, [B, H, L, d]);
    };
    const [q, k, v] = [0, 1, 2].map((n) => heads(project(B * L, n, n)));
    const outProj = new Linear({ inFeatures: E, outFeatures: E }).loadStateDict({ weight: dict["out_proj.weight"], bias: dict["out_proj.bias"] });
    for (const isCausal of [false, true]) {
      const a = scaledDotProductAttention(q!, k!, v!, { isCausal, sinks: Array.from(dict.sinks.data) });
      const merged = new Float32Array(B * L * E);
      const d = E / H;
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++)
          for (let i = 0; i < L; i++) for (let e = 0; e < d; e++) merged[(b * L + i) * E + h * d + e] = a.data[((b * H + h) * L + i) * d + e]!;
      const want = outProj.forward(tensor(merged, [B * L, E]));
      const got = mha.forward(x, x, x, { isCausal, needWeights: false });
      expectClose(got.output.data, want.data, [B, L, E], { atol: 1e-5, rtol: 1e-5 }, `isCausal ${isCausal}`);
    }
    expect(() =>
      new MultiHeadAttention({ embedDim: E, numHeads: H, sinks: true }).loadStateDict({ ...dict, sinks: tensor(new Float32Array(2), [2]) }),
    ).toThrow(/"sinks" has shape \[2\], expected \[3\]/);
  });
});
