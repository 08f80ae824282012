// Weight formats: loadStateDict(dict, prefix, { weights: "q8" }), quantize(module, "q8"),
// pre-quantized int8 tensors (<key> I8 + <key>_scale F32), module.weightBytes(), and q8 against
// f32 on a BERT-base-sized layer (the 1% target).
import { beforeAll, describe, expect, test } from "vitest";
import {
  ArgumentError,
  EncoderModel,
  type IntegerTensor,
  Linear,
  MultiHeadAttention,
  ShapeError,
  StateError,
  type StateDict,
  type Tensor,
  TransformerEncoder,
  TransformerEncoderLayer,
  init,
  loadSafetensors,
  memoryStats,
  quantize,
} from "../src/index.js";
import { expectClose, freshSeed, rng } from "./reference.js";
import { intSums, quantizeRows } from "./support/q8.js";
import { readFileSync } from "node:fs";

beforeAll(() => init());

type Rng = ReturnType<typeof rng>;
const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

// n samples of N(0, std^2) (Box-Muller)
function normal(r: Rng, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = 1 - r.next();
    const v = r.next();
    const m = std * Math.sqrt(-2 * Math.log(u));
    out[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  return out;
}

// BERT-like random weights: matrices and biases ~N(0, 0.02), LayerNorm weight 1 and bias 0
function randomDict(params: { key: string; shape: readonly number[] }[], r: Rng): Record<string, Tensor> {
  return Object.fromEntries(
    params.map((p) => {
      const norm = /norm/i.test(p.key);
      const data = norm ? new Float32Array(size(p.shape)).fill(p.key.endsWith("weight") ? 1 : 0) : normal(r, size(p.shape), 0.02);
      return [p.key, { data, shape: [...p.shape] }];
    }),
  );
}

const relRms = (got: ArrayLike<number>, want: ArrayLike<number>) => {
  let d = 0;
  let w = 0;
  for (let i = 0; i < want.length; i++) {
    d += (got[i]! - want[i]!) ** 2;
    w += want[i]! ** 2;
  }
  return Math.sqrt(d / w);
};

// the dict with each listed 2-D weight as a pre-quantized pair: <key> I8 and <key>_scale F32
function preQuantized(dict: Record<string, Tensor>, keys: string[]): StateDict {
  const out: StateDict = { ...dict };
  for (const key of keys) {
    const [N, K] = dict[key]!.shape as [number, number];
    const { q, scales } = quantizeRows(dict[key]!.data, N, K);
    out[key] = { data: q, shape: [N, K], dtype: "I8" } as IntegerTensor;
    out[`${key}_scale`] = { data: scales, shape: [N] };
  }
  return out;
}

const BERT = { dModel: 768, nhead: 12, dimFeedforward: 3072, activation: "gelu" } as const;

describe("q8 against f32 on a BERT-base-sized layer (hidden 768, ff 3072, 12 heads, L = 32, weights ~N(0, 0.02), input ~N(0, 1))", () => {
  let f32: TransformerEncoderLayer;
  let q8: TransformerEncoderLayer;
  let dict: Record<string, Tensor>;
  let x: Tensor;
  let live: { f32: number; q8: number };
  beforeAll(() => {
    const r = rng(20261130);
    f32 = new TransformerEncoderLayer(BERT);
    dict = randomDict(f32.params(), r);
    let before = memoryStats().liveBytes;
    f32.loadStateDict(dict);
    const f32Bytes = memoryStats().liveBytes - before;
    q8 = new TransformerEncoderLayer(BERT);
    before = memoryStats().liveBytes;
    q8.loadStateDict(dict, "", { weights: "q8" });
    live = { f32: f32Bytes, q8: memoryStats().liveBytes - before };
    x = { data: normal(r, 32 * 768, 1), shape: [1, 32, 768] };
  });

  test("the layer's output is within 1% relative RMS of f32 (the issue's target)", () => {
    const want = f32.forward(x).data;
    const got = q8.forward(x).data;
    const err = relRms(got, want);
    console.log(`q8 vs f32, BERT-base layer L=32: ${(100 * err).toFixed(3)}% relative RMS`);
    expect(err).toBeLessThan(0.01);
    expect(err).toBeGreaterThan(0); // it really ran int8
  });

  test("one product alone (768 -> 3072, the first feed-forward matrix): within 1.5% relative RMS", () => {
    const [a, b] = [new Linear({ inFeatures: 768, outFeatures: 3072 }), new Linear({ inFeatures: 768, outFeatures: 3072 })];
    const sub = { weight: dict["linear1.weight"]!, bias: dict["linear1.bias"]! };
    a.loadStateDict(sub);
    b.loadStateDict(sub, "", { weights: "q8" });
    const err = relRms(b.forward(x).data, a.forward(x).data);
    console.log(`q8 vs f32, Linear 768 -> 3072: ${(100 * err).toFixed(3)}% relative RMS`);
    expect(err).toBeLessThan(0.015);
    a.dispose();
    b.dispose();
  });

  test("memory: the q8 layer takes at most 30% of the f32 layer's bytes (weightBytes and liveBytes)", () => {
    const ratio = q8.weightBytes() / f32.weightBytes();
    console.log(
      `BERT-base layer weights: f32 ${f32.weightBytes()} bytes, q8 ${q8.weightBytes()} bytes (${(100 * ratio).toFixed(1)}%); liveBytes ${live.f32} -> ${live.q8}`,
    );
    expect(ratio).toBeLessThanOrEqual(0.3);
    expect(live.q8 / live.f32).toBeLessThanOrEqual(0.3);
    // weightBytes is what the heap holds for the weights (each block rounded up to 16 bytes there)
    expect(Math.abs(live.f32 - f32.weightBytes())).toBeLessThan(16 * 16);
    expect(Math.abs(live.q8 - q8.weightBytes())).toBeLessThan(16 * 16);
    // every float32 weight counted: 4 bytes each
    expect(f32.weightBytes()).toBe(4 * f32.params().reduce((n, p) => n + size(p.shape), 0));
  });

  test('quantize(layer, "q8") gives the same bits as loading with { weights: "q8" }', () => {
    const l = new TransformerEncoderLayer(BERT).loadStateDict(dict);
    const before = l.weightBytes();
    expect(quantize(l, "q8")).toBe(l);
    expect(l.weightBytes()).toBe(q8.weightBytes());
    expect(l.weightBytes()).toBeLessThan(0.3 * before);
    expect(Array.from(l.forward(x).data)).toEqual(Array.from(q8.forward(x).data));
    l.dispose();
  });

  test("pre-quantized int8 tensors (from the same rule) load as q8 without the option, the same bits", () => {
    const keys = ["self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight", "linear2.weight"];
    const l = new TransformerEncoderLayer(BERT).loadStateDict(preQuantized(dict, keys));
    expect(l.weightBytes()).toBe(q8.weightBytes());
    expect(Array.from(l.forward(x).data)).toEqual(Array.from(q8.forward(x).data));
    l.dispose();
  });
});

describe("Linear in q8: the host path against the float64 oracle of the dequantized product", () => {
  test.each([
    [1, 1, 1],
    [3, 5, 7],
    [67, 17, 33],
    [130, 67, 64],
  ])("M=%i N=%i K=%i, bias and activation", (M, N, K) => {
    const seed = freshSeed();
    const r = rng(seed);
    const w = r.floats(N * K, 0.1);
    const bias = r.floats(N);
    const a = r.floats(M * K, 2);
    const lin = new Linear({ inFeatures: K, outFeatures: N }).loadStateDict(
      { weight: { data: w, shape: [N, K] }, bias: { data: bias, shape: [N] } },
      "",
      { weights: "q8" },
    );
    expect(lin.weights).toBe("q8");
    const wq = quantizeRows(w, N, K);
    const aq = quantizeRows(a, M, K);
    const sums = intSums(aq.q, wq.q, M, N, K);
    const want = Float64Array.from(sums, (s, n) => s * aq.scales[Math.floor(n / N)]! * wq.scales[n % N]! + bias[n % N]!);
    const got = lin.forward({ data: a, shape: [M, K] });
    expect(got.shape).toEqual([M, N]);
    expectClose(got.data, want, [M, N], { atol: 1e-6 * (2 + Math.max(...Array.from(want, Math.abs))), rtol: 1e-6 }, `seed ${seed}`);
    lin.dispose();
  });

  test("pre-quantized rows are used as they are: rows below +-127, and -128", () => {
    const [M, N, K] = [5, 9, 13];
    const r = rng(freshSeed());
    const q = Int8Array.from({ length: N * K }, (_, i) => (i % 7 === 0 ? -128 : Math.round((r.next() * 2 - 1) * 50)));
    const scales = r.floats(N, 0.01).map(Math.abs);
    const lin = new Linear({ inFeatures: K, outFeatures: N, bias: false }).loadStateDict({
      weight: { data: q, shape: [N, K], dtype: "I8" } as IntegerTensor,
      weight_scale: { data: scales, shape: [N] },
    });
    expect(lin.weights).toBe("q8");
    const a = r.floats(M * K);
    const aq = quantizeRows(a, M, K);
    const want = Float64Array.from(intSums(aq.q, q, M, N, K), (s, n) => s * aq.scales[Math.floor(n / N)]! * scales[n % N]!);
    expectClose(lin.forward({ data: a, shape: [M, K] }).data, want, [M, N], { atol: 1e-7, rtol: 1e-6 }, "pre-quantized");
    // with weights: "f32" they are dequantized (w = q * scale) and held in float32
    const f = new Linear({ inFeatures: K, outFeatures: N, bias: false }).loadStateDict(
      { weight: { data: q, shape: [N, K], dtype: "I8" } as IntegerTensor, weight_scale: { data: scales, shape: [N] } },
      "",
      { weights: "f32" },
    );
    expect(f.weights).toBe("f32");
    const deq = Float32Array.from(q, (v, i) => v * scales[Math.floor(i / K)]!);
    const g = new Linear({ inFeatures: K, outFeatures: N, bias: false }).loadStateDict({ weight: { data: deq, shape: [N, K] } });
    expect(Array.from(f.forward({ data: a, shape: [M, K] }).data)).toEqual(Array.from(g.forward({ data: a, shape: [M, K] }).data));
    for (const l of [lin, f, g]) l.dispose();
  });

  test("from a safetensors file: an I8 weight and its F32 scales", () => {
    const [N, K] = [3, 4];
    const q = Int8Array.from([1, -2, 3, -4, 127, 0, -128, 5, 6, 7, 8, 9]);
    const scales = Float32Array.from([0.5, 0.25, 0.125]);
    const tensors = {
      weight: { dtype: "I8", shape: [N, K], bytes: new Uint8Array(q.buffer) },
      weight_scale: { dtype: "F32", shape: [N], bytes: new Uint8Array(scales.buffer) },
    };
    const lin = new Linear({ inFeatures: K, outFeatures: N, bias: false }).loadStateDict(loadSafetensors(safetensors(tensors)));
    expect(lin.weights).toBe("q8");
    // one-hot inputs: row k of the output is column k of W
    const eye = Float32Array.from({ length: K * K }, (_, i) => (i % (K + 1) === 0 ? 1 : 0));
    const got = lin.forward({ data: eye, shape: [K, K] }).data;
    for (let k = 0; k < K; k++) {
      for (let n = 0; n < N; n++) {
        const want = q[n * K + k]! * scales[n]!; // 127 * fl(1 / 127) * q * scale: within float rounding
        expect(Math.abs(got[k * N + n]! - want), `[${k}, ${n}]`).toBeLessThanOrEqual(1e-6 * Math.abs(want));
      }
    }
    lin.dispose();
  });

  test("from a BF16 file (widened in WebAssembly memory, quantized there): the same bits as from float32 arrays", () => {
    const r = rng(freshSeed());
    const mha = new MultiHeadAttention({ embedDim: 24, numHeads: 3 });
    // values a BF16 holds exactly: the top 16 bits of a float32
    const dict = Object.fromEntries(
      mha.params().map((p) => {
        const data = r.floats(size(p.shape), 0.3);
        new Uint32Array(data.buffer).forEach((b, i, a) => (a[i] = b & 0xffff0000));
        return [p.key, { data, shape: [...p.shape] }];
      }),
    );
    const file = safetensors(
      Object.fromEntries(
        Object.entries(dict).map(([k, t]) => {
          const half = Uint16Array.from(new Uint32Array(t.data.buffer), (b) => b >>> 16);
          return [k, { dtype: "BF16", shape: t.shape, bytes: new Uint8Array(half.buffer) }];
        }),
      ),
    );
    const a = new MultiHeadAttention({ embedDim: 24, numHeads: 3 }).loadStateDict(loadSafetensors(file), "", { weights: "q8" });
    const b = mha.loadStateDict(dict, "", { weights: "q8" });
    const x = { data: r.floats(2 * 5 * 24), shape: [2, 5, 24] };
    expect(Array.from(a.forward(x, x, x).output.data)).toEqual(Array.from(b.forward(x, x, x).output.data));
    expect(a.weightBytes()).toBe(b.weightBytes());
    a.dispose();
    b.dispose();
  });

  test("errors: scales missing or misshapen, an I8 weight of the wrong shape, an unused _scale key, a bad format", () => {
    const lin = new Linear({ inFeatures: 4, outFeatures: 2, bias: false });
    const q = { data: new Int8Array(8), shape: [2, 4], dtype: "I8" } as IntegerTensor;
    expect(() => lin.loadStateDict({ weight: q })).toThrow(ShapeError);
    expect(() => lin.loadStateDict({ weight: q })).toThrow(/"weight" is an I8 tensor \(pre-quantized\) without its scales "weight_scale" \[2\]/);
    expect(() => lin.loadStateDict({ weight: q, weight_scale: { data: new Float32Array(4), shape: [4] } })).toThrow(
      /"weight_scale" has shape \[4\], expected \[2\]/,
    );
    expect(() =>
      lin.loadStateDict({
        weight: { data: new Int8Array(8), shape: [4, 2], dtype: "I8" } as IntegerTensor,
        weight_scale: { data: new Float32Array(2), shape: [2] },
      }),
    ).toThrow(/"weight" has shape \[4, 2\] \(I8, 8 values\), expected \[2, 4\]/);
    expect(() => lin.loadStateDict({ weight: q, weight_scale: { data: new Int32Array(2), shape: [2], dtype: "I32" } as IntegerTensor })).toThrow(
      /state dict "weight_scale": expected a float tensor \(scales are float\), got a tensor of dtype I32/,
    );
    expect(() =>
      lin.loadStateDict({ weight: { data: new Float32Array(8), shape: [2, 4] }, weight_scale: { data: new Float32Array(2), shape: [2] } }),
    ).toThrow(/unexpected "weight_scale"/);
    expect(() => lin.loadStateDict({ weight: { data: new Float32Array(8), shape: [2, 4] } }, "", { weights: "q5" as never })).toThrow(ArgumentError);
    expect(() => lin.loadStateDict({ weight: { data: new Float32Array(8), shape: [2, 4] } }, "", { weights: "q5" as never })).toThrow(
      /Linear\.loadStateDict weights: expected "f32" or "f16" or "q8" or "q4", got string q5/,
    );
    // nothing was loaded by the failed calls
    expect(() => lin.forward({ data: new Float32Array(4), shape: [1, 4] })).toThrow(StateError);
    lin.dispose();
  });
});

describe("quantize()", () => {
  const small = { layer: { dModel: 32, nhead: 4, dimFeedforward: 48, activation: "gelu" as const }, numLayers: 2, norm: true };

  test("a stack, a module not loaded yet, a module already in q8; back to f32 is an error", () => {
    const r = rng(freshSeed());
    const a = new TransformerEncoder(small);
    const dict = randomDict(a.params(), r);
    a.loadStateDict(dict);
    const x = { data: r.floats(3 * 7 * 32), shape: [3, 7, 32] };
    const want = new TransformerEncoder(small).loadStateDict(dict, "", { weights: "q8" });
    quantize(a, "q8");
    expect(Array.from(a.forward(x).data)).toEqual(Array.from(want.forward(x).data));
    quantize(a, "q8"); // already q8: unchanged
    expect(Array.from(a.forward(x).data)).toEqual(Array.from(want.forward(x).data));
    expect(a.weightBytes()).toBe(want.weightBytes());
    expect(() => quantize(a, "f32")).toThrow(
      /quantize format: expected one the weights held can go to, got string f32: 12 Linear layers hold q8 weights; their float32 values are gone/,
    );
    expect(quantize(new TransformerEncoder(small).loadStateDict(dict), "f32").weightBytes()).toBeGreaterThan(3.5 * a.weightBytes() * 0.5);
    // before loading: the layers load as q8 unless the load asks otherwise
    const b = quantize(new TransformerEncoder(small), "q8").loadStateDict(dict);
    expect(Array.from(b.forward(x).data)).toEqual(Array.from(want.forward(x).data));
    const c = quantize(new TransformerEncoder(small), "q8").loadStateDict(dict, "", { weights: "f32" });
    const f = new TransformerEncoder(small).loadStateDict(dict);
    expect(Array.from(c.forward(x).data)).toEqual(Array.from(f.forward(x).data));
    // a load without the option keeps a layer's format; with it, changes it both ways
    want.loadStateDict(dict);
    expect(want.weightBytes()).toBe(a.weightBytes());
    want.loadStateDict(dict, "", { weights: "f32" });
    expect(Array.from(want.forward(x).data)).toEqual(Array.from(f.forward(x).data));
    for (const m of [a, b, c, f, want]) m.dispose();
  });

  test("errors: not a module, an unknown format, a disposed module", () => {
    expect(() => quantize({} as never, "q8")).toThrow(ArgumentError);
    const m = new MultiHeadAttention({ embedDim: 8, numHeads: 2 });
    expect(() => quantize(m, "int8" as never)).toThrow(/quantize format: expected "f32" or "f16" or "q8" or "q4", got string int8/);
    expect(() => quantize(m, undefined as never)).toThrow(/quantize format: expected "f32" or "f16" or "q8" or "q4", got undefined/);
    m.dispose();
    expect(() => quantize(m, "q8")).toThrow(StateError);
  });

  test("weightBytes: 0 before loading and after dispose(); the memory comes back", () => {
    const live = memoryStats().liveBytes;
    const m = new TransformerEncoder(small);
    expect(m.weightBytes()).toBe(0);
    m.loadStateDict(randomDict(m.params(), rng(1)), "", { weights: "q8" });
    expect(m.weightBytes()).toBeGreaterThan(0);
    m.dispose();
    expect(m.weightBytes()).toBe(0);
    expect(memoryStats().liveBytes).toBe(live);
  });
});

describe("EncoderModel (Hugging Face BERT) in q8", () => {
  const dir = new URL("./fixtures/encoders/", import.meta.url);
  const config = JSON.parse(readFileSync(new URL("bert-f32.config.json", dir), "utf8")) as Record<string, unknown>;
  const ids = { data: Int32Array.from({ length: 2 * 9 }, (_, i) => (i * 7) % 61), shape: [2, 9] };
  let dict: StateDict;
  let f32: EncoderModel;
  let q8: EncoderModel;
  beforeAll(() => {
    dict = loadSafetensors(readFileSync(new URL("bert-f32.safetensors", dir)));
    f32 = EncoderModel.fromConfig(config).loadStateDict(dict);
    q8 = EncoderModel.fromConfig(config).loadStateDict(dict, undefined, { weights: "q8" });
  });

  test('{ weights: "q8" }: every Linear and embedding table int8, close to f32, fewer bytes', () => {
    const want = f32.forward(ids).data;
    const err = relRms(q8.forward(ids).data, want);
    console.log(`q8 vs f32, the tiny BERT fixture: ${(100 * err).toFixed(3)}% relative RMS`);
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(0.03);
    // the embeddings (61 + 40 + 2 rows of 36) and the 2 x 6 matrices of the layers shrink
    expect(q8.wordEmbeddings.weights).toBe("q8");
    expect(q8.weightBytes()).toBeLessThan(f32.weightBytes());
  });

  test("pre-quantized Hugging Face keys (query, key, value and dense weights, the embedding tables as I8 + _scale)", () => {
    const plain: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(dict)) plain[k] = t as Tensor;
    const keys = Object.keys(plain).filter((k) => /^(encoder\..*(query|key|value|dense)|embeddings\..*_embeddings)\.weight$/.test(k));
    expect(keys.length).toBe(2 * 6 + 3);
    const m = EncoderModel.fromConfig(config).loadStateDict(preQuantized(plain, keys));
    expect(m.weightBytes()).toBe(q8.weightBytes());
    // query, key and value pass through EncoderModel's join as floats and are quantized again:
    // the same int8 rows (each reaches +-127), scales within a rounding
    expectClose(m.forward(ids).data, q8.forward(ids).data, [2, 9, 36], { atol: 1e-5, rtol: 1e-5 }, "pre-quantized");
    m.dispose();
  });
});

// a safetensors file of raw tensors
function safetensors(tensors: Record<string, { dtype: string; shape: number[]; bytes: Uint8Array }>): Uint8Array {
  let offset = 0;
  const header: Record<string, unknown> = {};
  for (const [k, t] of Object.entries(tensors)) {
    header[k] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header).padEnd(Math.ceil(JSON.stringify(header).length / 8) * 8));
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const t of Object.values(tensors)) {
    out.set(t.bytes, at);
    at += t.bytes.length;
  }
  return out;
}

describe("CausalLM (a tiny Llama) in q8: every Linear of its layers, the embedding and the untied lm_head int8", () => {
  test("logits close to f32; fewer bytes", async () => {
    const { CausalLM } = await import("../src/index.js");
    const dir = new URL("./fixtures/decoders/", import.meta.url);
    const config = JSON.parse(readFileSync(new URL("llama-untied.config.json", dir), "utf8")) as Record<string, unknown>;
    const dict = loadSafetensors(readFileSync(new URL("llama-untied.safetensors", dir)));
    const f32 = CausalLM.fromConfig(config).loadStateDict(dict);
    const q8 = CausalLM.fromConfig(config).loadStateDict(dict, "", { weights: "q8" });
    const ids = Int32Array.from({ length: 11 }, (_, i) => (i * 5 + 1) % Number(config.vocab_size));
    const err = relRms(q8.forward(ids).data, f32.forward(ids).data);
    console.log(`q8 vs f32, the tiny Llama fixture's logits: ${(100 * err).toFixed(3)}% relative RMS`);
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(0.05);
    expect(q8.weightBytes()).toBeLessThan(f32.weightBytes());
    f32.dispose();
    q8.dispose();
  });
});
