// RMSNorm, GatedMLP and DecoderLayer alone, against float64 references written here, at odd
// sizes (tails of the four-lane loops, heads of 6, groups of query heads), and their errors.
import { beforeAll, describe, expect, test } from "vitest";
import {
  ArgumentError,
  DecoderLayer,
  type DecoderLayerOptions,
  GatedMLP,
  type Module,
  RMSNorm,
  ShapeError,
  StateError,
  type Tensor,
  init,
  ropeParameters,
  tensor,
} from "../src/index.js";
import { expectClose, rng } from "./reference.js";

beforeAll(() => init());

// random weights for every parameter of a module, with its own names: norms around 1 (Gemma's around 0)
function randomDict(m: Module, seed: number, around = 1): Record<string, Tensor> {
  const r = rng(seed);
  return Object.fromEntries(
    m.params().map((p) => {
      const n = p.shape.reduce((a, b) => a * b, 1);
      const norm = p.key.endsWith("norm.weight") || p.key.endsWith("layernorm.weight");
      const data = norm ? r.floats(n, 0.2).map((x) => around + x) : r.floats(n, 1 / Math.sqrt(p.shape[p.shape.length - 1]));
      return [p.key, tensor(data, p.shape)];
    }),
  );
}

// x (M, N) -> x / sqrt(mean(x^2) + eps) * (offset + w), float64
function rmsRef(x: ArrayLike<number>, w: ArrayLike<number>, N: number, eps: number, offset: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / N; r++) {
    let s = 0;
    for (let j = 0; j < N; j++) s += x[r * N + j] ** 2;
    const k = 1 / Math.sqrt(s / N + eps);
    for (let j = 0; j < N; j++) out[r * N + j] = x[r * N + j] * k * (offset + w[j]);
  }
  return out;
}

// x (M, K) -> x W^T + b, W (N, K), float64
function linearRef(x: ArrayLike<number>, W: ArrayLike<number>, b: ArrayLike<number> | undefined, K: number, N: number): Float64Array {
  const M = x.length / K;
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = b ? b[n] : 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * W[n * K + k];
      out[m * N + n] = s;
    }
  return out;
}

const ACT = {
  silu: (x: number) => x / (1 + Math.exp(-x)),
  "gelu-tanh": (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
};

function mlpRef(x: ArrayLike<number>, d: Record<string, Tensor>, p: string, H: number, I: number, act: keyof typeof ACT): Float64Array {
  const g = linearRef(x, d[`${p}gate_proj.weight`].data, d[`${p}gate_proj.bias`]?.data, H, I);
  const u = linearRef(x, d[`${p}up_proj.weight`].data, d[`${p}up_proj.bias`]?.data, H, I);
  return linearRef(
    g.map((v, i) => ACT[act](v) * u[i]),
    d[`${p}down_proj.weight`].data,
    d[`${p}down_proj.bias`]?.data,
    I,
    H,
  );
}

describe("RMSNorm", () => {
  for (const N of [1, 3, 4, 5, 17, 67]) {
    for (const unitOffset of [false, true]) {
      test(`[3, ${N}]${unitOffset ? ", Gemma's (1 + weight)" : ""}`, () => {
        const r = rng(N);
        const norm = new RMSNorm({ normalizedShape: N, eps: 1e-5, unitOffset });
        const w = r.floats(N);
        norm.loadStateDict({ weight: tensor(w, [N]) });
        const x = r.floats(3 * N, 4);
        const out = norm.forward(tensor(x, [3, N]));
        expect(out.shape).toEqual([3, N]);
        expectClose(out.data, rmsRef(x, w, N, 1e-5, unitOffset ? 1 : 0), [3, N], { atol: 1e-6, rtol: 1e-5 }, "RMSNorm");
        norm.dispose();
      });
    }
  }

  test("errors: options, shapes, weights", () => {
    expect(() => new RMSNorm({ normalizedShape: 0 })).toThrow(/RMSNorm normalizedShape: expected a positive integer, got number 0/);
    expect(() => new RMSNorm({ normalizedShape: 4, eps: -1 })).toThrow(/RMSNorm eps: expected a finite number >= 0, got number -1/);
    expect(() => new RMSNorm({ normalizedShape: 4, unitOffset: 1 as never })).toThrow(/RMSNorm unitOffset: expected a boolean, got number 1/);
    const norm = new RMSNorm({ normalizedShape: 4 });
    expect(() => norm.forward(tensor(new Float32Array(4), [4]))).toThrow(StateError);
    norm.loadStateDict({ weight: tensor([1, 1, 1, 1], [4]) });
    expect(() => norm.forward(tensor(new Float32Array(6), [2, 3]))).toThrow(ShapeError);
    expect(norm.forward(tensor(new Float32Array(0), [0, 4])).shape).toEqual([0, 4]);
    expect(() => norm.loadStateDict({ weight: tensor([1, 1], [2]) })).toThrow(/"weight" has shape \[2\], expected \[4\]/);
  });
});

describe("GatedMLP", () => {
  const cases: [number, number, keyof typeof ACT, boolean][] = [
    [5, 17, "silu", false],
    [67, 19, "gelu-tanh", false],
    [8, 3, "silu", true],
  ];
  for (const [H, I, activation, bias] of cases) {
    test(`hidden ${H}, intermediate ${I}, ${activation}${bias ? ", biases" : ""}: down(act(gate(x)) * up(x))`, () => {
      const mlp = new GatedMLP({ hiddenSize: H, intermediateSize: I, activation, bias });
      expect(mlp.params().map((p) => p.key)).toEqual(
        bias
          ? ["gate_proj.weight", "gate_proj.bias", "up_proj.weight", "up_proj.bias", "down_proj.weight", "down_proj.bias"]
          : ["gate_proj.weight", "up_proj.weight", "down_proj.weight"],
      );
      const d = randomDict(mlp, H * I);
      mlp.loadStateDict(d);
      const x = rng(7).floats(5 * H, 2);
      const out = mlp.forward(tensor(x, [5, H]));
      expectClose(out.data, mlpRef(x, d, "", H, I, activation), [5, H], { atol: 1e-5, rtol: 1e-4 }, "GatedMLP");
      mlp.dispose();
    });
  }

  test("errors", () => {
    expect(() => new GatedMLP({ hiddenSize: 4, intermediateSize: 8, activation: "relu" as never })).toThrow(
      /GatedMLP activation: expected "silu" or "gelu-tanh", got string relu/,
    );
    const mlp = new GatedMLP({ hiddenSize: 4, intermediateSize: 8 });
    expect(() => mlp.forward(tensor(new Float32Array(4), [1, 4]))).toThrow(StateError);
    mlp.loadStateDict(randomDict(mlp, 1));
    expect(() => mlp.forward(tensor(new Float32Array(5), [1, 5]))).toThrow(/GatedMLP.forward x: expected \[..., 4\], got \[1, 5\]/);
  });
});

// A decoder layer in float64, following Hugging Face's LlamaDecoderLayer / Gemma2DecoderLayer:
// x [L, H] of one sequence at positions 0..L-1
function layerRef(
  x: Float32Array,
  d: Record<string, Tensor>,
  o: Required<Omit<DecoderLayerOptions, "rope" | "softcap" | "slidingWindow">> & { slidingWindow: number | null; softcap: number | null },
  L: number,
): Float64Array {
  const { hiddenSize: H, numHeads: Hq, numKvHeads: Hk, headDim: hd, rmsNormEps: eps } = o;
  const off = o.unitOffset ? 1 : 0;
  const W = (k: string) => d[k]?.data;
  const h = rmsRef(x, W("input_layernorm.weight"), H, eps, off);
  const q = linearRef(h, W("self_attn.q_proj.weight"), W("self_attn.q_proj.bias"), H, Hq * hd);
  const k = linearRef(h, W("self_attn.k_proj.weight"), W("self_attn.k_proj.bias"), H, Hk * hd);
  const v = linearRef(h, W("self_attn.v_proj.weight"), W("self_attn.v_proj.bias"), H, Hk * hd);
  const qn = o.qkNorm ? rmsRef(q, W("self_attn.q_norm.weight"), hd, eps, off) : q;
  const kn = o.qkNorm ? rmsRef(k, W("self_attn.k_norm.weight"), hd, eps, off) : k;
  // RoPE, rotate_half pairs (i, i + hd / 2), angle = position * inv_freq[i]
  const inv = ropeParameters({ dim: hd }).invFreq;
  const rope = (t: Float64Array, heads: number) => {
    const out = t.slice();
    for (let p = 0; p < L; p++)
      for (let n = 0; n < heads; n++)
        for (let i = 0; i < hd / 2; i++) {
          const a = Math.fround(p * inv[i]); // float32 product, as Hugging Face
          const [c, s] = [Math.cos(a), Math.sin(a)];
          const at = (p * heads + n) * hd;
          out[at + i] = t[at + i] * c - t[at + i + hd / 2] * s;
          out[at + i + hd / 2] = t[at + i + hd / 2] * c + t[at + i] * s;
        }
    return out;
  };
  const [qr, kr] = [rope(qn, Hq), rope(kn, Hk)];
  const attn = new Float64Array(L * Hq * hd);
  const scale = o.queryPreAttnScalar ** -0.5;
  for (let n = 0; n < Hq; n++) {
    const g = Math.floor(n / (Hq / Hk));
    for (let i = 0; i < L; i++) {
      const js = Array.from({ length: i + 1 }, (_, j) => j).filter((j) => o.slidingWindow === null || j > i - o.slidingWindow);
      const s = js.map((j) => {
        let dot = 0;
        for (let e = 0; e < hd; e++) dot += qr[(i * Hq + n) * hd + e] * kr[(j * Hk + g) * hd + e];
        return o.softcap ? o.softcap * Math.tanh((dot * scale) / o.softcap) : dot * scale;
      });
      // gpt-oss's sinks: a logit per head in the denominator, without a value
      const sink = o.sinks ? W("self_attn.sinks")![n]! : -Infinity;
      const m = Math.max(sink, ...s);
      const p = s.map((z) => Math.exp(z - m));
      const sum = p.reduce((a, b) => a + b, 0) + Math.exp(sink - m);
      js.forEach((j, t) => {
        for (let e = 0; e < hd; e++) attn[(i * Hq + n) * hd + e] += (p[t] / sum) * v[(j * Hk + g) * hd + e];
      });
    }
  }
  const a = linearRef(attn, W("self_attn.o_proj.weight"), W("self_attn.o_proj.bias"), Hq * hd, H);
  const add = (u: ArrayLike<number>, w: ArrayLike<number>) => Float64Array.from(u, (z, i) => z + w[i]);
  if (!o.sandwichNorm) {
    const x1 = add(x, a);
    return add(x1, mlpRef(rmsRef(x1, W("post_attention_layernorm.weight"), H, eps, off), d, "mlp.", H, o.intermediateSize, o.activation));
  }
  const x1 = add(x, rmsRef(a, W("post_attention_layernorm.weight"), H, eps, off));
  const m = mlpRef(rmsRef(x1, W("pre_feedforward_layernorm.weight"), H, eps, off), d, "mlp.", H, o.intermediateSize, o.activation);
  return add(x1, rmsRef(m, W("post_feedforward_layernorm.weight"), H, eps, off));
}

describe("DecoderLayer", () => {
  type Options = Parameters<typeof layerRef>[2];
  const base: Options = {
    hiddenSize: 20,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 6,
    intermediateSize: 37,
    activation: "silu" as const,
    rmsNormEps: 1e-6,
    qkvBias: false,
    oBias: false,
    mlpBias: false,
    qkNorm: false,
    sandwichNorm: false,
    unitOffset: false,
    sinks: false,
    slidingWindow: null,
    softcap: null,
    queryPreAttnScalar: 6,
  };
  const variants: [string, Partial<Options>][] = [
    ["Llama (GQA 4/2, head 6)", {}],
    ["Qwen2 (q/k/v biases)", { qkvBias: true }],
    ["Qwen3 (q_norm, k_norm; head 8)", { qkNorm: true, headDim: 8, queryPreAttnScalar: 8 }],
    ["Mistral (sliding window 3)", { slidingWindow: 3 }],
    [
      "Gemma 2 (four norms, (1 + w), tanh-GELU, soft-capping, window 4, query_pre_attn_scalar)",
      { sandwichNorm: true, unitOffset: true, activation: "gelu-tanh", softcap: 2, slidingWindow: 4, queryPreAttnScalar: 10 },
    ],
    ["multi-query, biases everywhere", { numKvHeads: 1, qkvBias: true, oBias: true, mlpBias: true }],
    ["attention sinks (gpt-oss: self_attn.sinks), with a sliding window", { sinks: true, slidingWindow: 3 }],
  ];
  for (const [what, change] of variants) {
    for (const L of [1, 5, 17]) {
      test(`${what}, L = ${L}`, () => {
        const o = { ...base, ...change };
        const layer = new DecoderLayer(o);
        const d = randomDict(layer, L * 31 + what.length, o.unitOffset ? 0 : 1);
        layer.loadStateDict(d);
        const x = rng(L).floats(L * o.hiddenSize, 1);
        const out = layer.forward(tensor(x, [L, o.hiddenSize]));
        expectClose(out.data, layerRef(x, d, o, L), [L, o.hiddenSize], { atol: 2e-5, rtol: 1e-4 }, what);
        layer.dispose();
      });
    }
  }

  test("a left-padded batch gives each sequence what it gets alone", () => {
    const layer = new DecoderLayer({ ...base, slidingWindow: 3 });
    layer.loadStateDict(randomDict(layer, 5));
    const H = base.hiddenSize;
    const r = rng(9);
    const [a, b] = [r.floats(6 * H), r.floats(2 * H)];
    const padded = new Float32Array(12 * H);
    padded.set(a, 0);
    padded.set(b, 10 * H);
    const out = layer.forward(tensor(padded, [2, 6, H]), {
      attentionMask: { data: Uint8Array.of(1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1), shape: [2, 6] },
    });
    expectClose(out.data.subarray(0, 6 * H), layer.forward(tensor(a, [6, H])).data, [6, H], { atol: 1e-6, rtol: 1e-5 }, "row 0");
    expectClose(out.data.subarray(10 * H), layer.forward(tensor(b, [2, H])).data, [2, H], { atol: 1e-6, rtol: 1e-5 }, "row 1");
    layer.dispose();
  });

  test("parameters carry Hugging Face's names", () => {
    const keys = (o: Partial<DecoderLayerOptions>) => new DecoderLayer({ ...base, ...o }).params().map((p) => p.key);
    expect(keys({ qkvBias: true, qkNorm: true, sandwichNorm: true })).toEqual([
      "self_attn.q_proj.weight",
      "self_attn.q_proj.bias",
      "self_attn.k_proj.weight",
      "self_attn.k_proj.bias",
      "self_attn.v_proj.weight",
      "self_attn.v_proj.bias",
      "self_attn.o_proj.weight",
      "self_attn.q_norm.weight",
      "self_attn.k_norm.weight",
      "mlp.gate_proj.weight",
      "mlp.up_proj.weight",
      "mlp.down_proj.weight",
      "input_layernorm.weight",
      "post_attention_layernorm.weight",
      "pre_feedforward_layernorm.weight",
      "post_feedforward_layernorm.weight",
    ]);
  });

  test("errors", () => {
    expect(() => new DecoderLayer({ ...base, numKvHeads: 3 })).toThrow(
      /DecoderLayer numHeads: expected a multiple of numKvHeads \(3\), got number 4/,
    );
    expect(() => new DecoderLayer({ ...base, headDim: 5 })).toThrow(
      /DecoderLayer headDim: expected an even integer \(RoPE rotates pairs\), got number 5/,
    );
    expect(() => new DecoderLayer({ ...base, headDim: undefined, hiddenSize: 18 })).toThrow(
      /DecoderLayer hiddenSize: expected a multiple of numHeads \(4\) when headDim is not given, got number 18/,
    );
    expect(() => new DecoderLayer({ ...base, slidingWindow: 0 })).toThrow(/DecoderLayer slidingWindow: expected a positive integer, got number 0/);
    expect(() => new DecoderLayer({ ...base, rope: { scaling: { rope_type: "dynamic", factor: 2 } } })).toThrow(ArgumentError);
    expect(() => new DecoderLayer({ ...base, foo: 1 } as never)).toThrow(/unknown option "foo"/);
    const layer = new DecoderLayer(base);
    expect(() => layer.forward(tensor(new Float32Array(20), [1, 20]))).toThrow(StateError);
    layer.loadStateDict(randomDict(layer, 3));
    expect(() => layer.forward(tensor(new Float32Array(21), [1, 21]))).toThrow(ShapeError);
    expect(() => layer.forward(tensor(new Float32Array(40), [2, 20]), { attentionMask: [1, 0] })).toThrow(
      /attentionMask: expected left padding only/,
    );
  });
});
