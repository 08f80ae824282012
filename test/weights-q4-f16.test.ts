// The "f16" and "q4" weight formats through the host: loadStateDict(dict, prefix, { weights }),
// quantize(module, format), weightBytes(), F16 / BF16 safetensors files; accuracy against f32 on
// a BERT-base-sized layer (the targets: f16 within 0.1%, q4 within 6% relative RMS),
// Linear against the float64 oracle of the same math, EncoderModel and CausalLM
// fixtures, and two threads against one, bit for bit.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import {
  ArgumentError,
  CausalLM,
  EncoderModel,
  Linear,
  type StateDict,
  type Tensor,
  TransformerEncoderLayer,
  init,
  loadSafetensors,
  memoryStats,
  quantize,
} from "../src/index.js";
import { runtime } from "../src/init.js";
import { expectClose, freshSeed, rng } from "./reference.js";
import { halfWeights, product, toHalf } from "./support/q4f16.js";

beforeAll(() => init());

type Rng = ReturnType<typeof rng>;
type Format = "f16" | "q4";
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

const BERT = { dModel: 768, nhead: 12, dimFeedforward: 3072, activation: "gelu" } as const;
const TARGET = { f16: 0.001, q4: 0.06 };

describe("f16 and q4 against f32 on a BERT-base-sized layer (hidden 768, ff 3072, 12 heads, L = 32, weights ~N(0, 0.02), input ~N(0, 1))", () => {
  let f32: TransformerEncoderLayer;
  const layers = {} as Record<Format, TransformerEncoderLayer>;
  const live = {} as Record<"f32" | Format, number>;
  let dict: Record<string, Tensor>;
  let x: Tensor;
  beforeAll(() => {
    const r = rng(20261130);
    f32 = new TransformerEncoderLayer(BERT);
    dict = randomDict(f32.params(), r);
    let before = memoryStats().liveBytes;
    f32.loadStateDict(dict);
    live.f32 = memoryStats().liveBytes - before;
    for (const format of ["f16", "q4"] as const) {
      before = memoryStats().liveBytes;
      layers[format] = new TransformerEncoderLayer(BERT).loadStateDict(dict, "", { weights: format });
      live[format] = memoryStats().liveBytes - before;
    }
    x = { data: normal(r, 32 * 768, 1), shape: [1, 32, 768] };
  });
  afterAll(() => [f32, ...Object.values(layers)].forEach((l) => l.dispose()));

  test.each(["f16", "q4"] as const)(
    "%s: the layer's output is within the issue's target of f32 (relative RMS: f16 below 0.001, q4 below 0.06)",
    (format) => {
      const want = f32.forward(x).data;
      const err = relRms(layers[format].forward(x).data, want);
      console.log(`${format} vs f32, BERT-base layer L=32: ${(100 * err).toFixed(4)}% relative RMS`);
      expect(err).toBeLessThan(TARGET[format]);
      expect(err).toBeGreaterThan(0); // it really ran the format
    },
  );

  test.each(["f16", "q4"] as const)("%s: one product alone (768 -> 3072, the first feed-forward matrix)", (format) => {
    const [a, b] = [new Linear({ inFeatures: 768, outFeatures: 3072 }), new Linear({ inFeatures: 768, outFeatures: 3072 })];
    const sub = { weight: dict["linear1.weight"]!, bias: dict["linear1.bias"]! };
    a.loadStateDict(sub);
    b.loadStateDict(sub, "", { weights: format });
    const err = relRms(b.forward(x).data, a.forward(x).data);
    console.log(`${format} vs f32, Linear 768 -> 3072: ${(100 * err).toFixed(4)}% relative RMS`);
    expect(err).toBeLessThan(format === "f16" ? 0.001 : 0.1);
    a.dispose();
    b.dispose();
  });

  test("memory: f16 half of the f32 bytes; q4 4.5 bits a weight, about 1/7 (weightBytes and liveBytes)", () => {
    const matrices = f32
      .params()
      .filter((p) => p.shape.length === 2)
      .reduce((n, p) => n + size(p.shape), 0);
    const others = f32
      .params()
      .filter((p) => p.shape.length !== 2)
      .reduce((n, p) => n + size(p.shape), 0);
    expect(f32.weightBytes()).toBe(4 * (matrices + others));
    // halves, and 18 bytes per 32 weights (768 and 3072 are multiples of 32 and 8: no padding); biases and norms stay float32
    expect(layers.f16.weightBytes()).toBe(2 * matrices + 4 * others);
    expect(layers.q4.weightBytes()).toBe((matrices / 32) * 18 + 4 * others);
    for (const format of ["f16", "q4"] as const) {
      const ratio = layers[format].weightBytes() / f32.weightBytes();
      console.log(
        `BERT-base layer weights: f32 ${f32.weightBytes()} bytes, ${format} ${layers[format].weightBytes()} bytes (${(100 * ratio).toFixed(2)}%, 1/${(1 / ratio).toFixed(2)}); liveBytes ${live.f32} -> ${live[format]}`,
      );
      expect(Math.abs(live[format] - layers[format].weightBytes())).toBeLessThan(16 * 16);
    }
    expect(layers.f16.weightBytes() / f32.weightBytes()).toBeLessThan(0.501);
    expect(layers.q4.weightBytes() / f32.weightBytes()).toBeLessThan(1 / 7);
  });

  test.each(["f16", "q4"] as const)('quantize(layer, "%s") gives the same bits as loading with { weights }', (format) => {
    const l = new TransformerEncoderLayer(BERT).loadStateDict(dict);
    expect(quantize(l, format)).toBe(l);
    expect(l.weightBytes()).toBe(layers[format].weightBytes());
    expect(Array.from(l.forward(x).data)).toEqual(Array.from(layers[format].forward(x).data));
    l.dispose();
  });
});

describe("Linear in f16 and q4: the host path against the float64 oracle of the same math", () => {
  test.each([
    ["f16", 1, 1, 1],
    ["f16", 3, 7, 5],
    ["f16", 67, 17, 33],
    ["f16", 5, 130, 67],
    ["q4", 1, 1, 1],
    ["q4", 3, 7, 5],
    ["q4", 67, 17, 33],
    ["q4", 5, 130, 67],
  ] as const)("%s M=%i N=%i K=%i, bias, through forward()", (format, M, N, K) => {
    const seed = freshSeed();
    const r = rng(seed);
    const w = r.floats(N * K, 0.1);
    const bias = r.floats(N);
    const a = r.floats(M * K, 2);
    const lin = new Linear({ inFeatures: K, outFeatures: N }).loadStateDict(
      { weight: { data: w, shape: [N, K] }, bias: { data: bias, shape: [N] } },
      "",
      { weights: format },
    );
    expect(lin.weights).toBe(format);
    const got = lin.forward({ data: a, shape: [M, K] }).data;
    // q4: int8 activations per row, an exact integer sum per block (product's oracle)
    const { x: prod } = product(format, a, w, M, N, K);
    const want = prod.map((v, i) => v + bias[i % N]!);
    expectClose(got, want, [M, N], { atol: 1e-5, rtol: 1e-5 }, `${format} (seed ${seed})`);
    lin.dispose();
  });

  test("quantize between formats: f32 -> f16 -> q4 quantizes the halves; q4 -> f16, q8 and f32 are errors; not loaded: later loads take the format", () => {
    const [N, K] = [9, 40];
    const w = rng(freshSeed()).floats(N * K, 0.1);
    const dict = { weight: { data: w, shape: [N, K] }, bias: { data: new Float32Array(N), shape: [N] } };
    const lin = new Linear({ inFeatures: K, outFeatures: N }).loadStateDict(dict);
    quantize(lin, "f16");
    expect(lin.weights).toBe("f16");
    expect(Array.from(lin.weightF32()!)).toEqual(Array.from(halfWeights(w))); // widened back exactly
    quantize(lin, "q4");
    expect(lin.weights).toBe("q4");
    const direct = new Linear({ inFeatures: K, outFeatures: N }).loadStateDict({ ...dict, weight: { data: halfWeights(w), shape: [N, K] } }, "", {
      weights: "q4",
    });
    const x = { data: rng(1).floats(3 * K), shape: [3, K] };
    expect(Array.from(lin.forward(x).data)).toEqual(Array.from(direct.forward(x).data));
    expect(() => quantize(lin, "f16")).toThrow(ArgumentError);
    expect(() => quantize(lin, "q8")).toThrow(
      /quantize format: expected one the weights held can go to, got string q8: 1 Linear layer holds q4 weights; their float32 \(or half\) values are gone/,
    );
    expect(() => quantize(lin, "f32")).toThrow(/holds q4 weights; their float32 values are gone/);
    const later = quantize(new Linear({ inFeatures: K, outFeatures: N }), "q4").loadStateDict(dict);
    expect(later.weights).toBe("q4");
    expect(Array.from(later.forward(x).data)).toEqual(
      Array.from(new Linear({ inFeatures: K, outFeatures: N }).loadStateDict(dict, "", { weights: "q4" }).forward(x).data),
    );
    for (const l of [lin, direct, later]) l.dispose();
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

// half bit patterns of float32 values that are halves already (exact)
function halfBits(x: Float32Array): Uint16Array {
  return Uint16Array.from(x, (v) => {
    if (v === 0) return Object.is(v, -0) ? 0x8000 : 0;
    const sign = v < 0 ? 0x8000 : 0;
    const a = Math.abs(v);
    const e = Math.floor(Math.log2(a));
    if (e < -14) return sign | Math.round(a * 2 ** 24);
    return sign | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
  });
}

describe("from safetensors files", () => {
  test.each(["F16", "BF16"] as const)('a %s file into "f16" and "q4" Linear layers: the same bits as from float32 arrays of its values', (dtype) => {
    const [N, K] = [12, 40];
    const r = rng(freshSeed());
    const values =
      dtype === "F16"
        ? halfWeights(r.floats(N * K, 0.5))
        : Float32Array.from(
            r.floats(N * K, 0.5),
            (v) => new Float32Array(Uint32Array.of((new Uint32Array(Float32Array.of(v).buffer)[0]! >>> 16) << 16).buffer)[0]!,
          );
    const bits = dtype === "F16" ? halfBits(values) : Uint16Array.from(new Uint32Array(values.buffer), (b) => b >>> 16);
    const file = loadSafetensors(safetensors({ weight: { dtype, shape: [N, K], bytes: new Uint8Array(bits.buffer) } }));
    const x = { data: r.floats(5 * K), shape: [5, K] };
    for (const format of ["f16", "q4"] as const) {
      const fromFile = new Linear({ inFeatures: K, outFeatures: N, bias: false }).loadStateDict(file, "", { weights: format });
      const fromArray = new Linear({ inFeatures: K, outFeatures: N, bias: false }).loadStateDict({ weight: { data: values, shape: [N, K] } }, "", {
        weights: format,
      });
      expect(fromFile.weights).toBe(format);
      expect(Array.from(fromFile.forward(x).data)).toEqual(Array.from(fromArray.forward(x).data));
      if (format === "f16" && dtype === "F16") expect(Array.from(fromFile.weightF32()!)).toEqual(Array.from(values)); // the file's halves, exactly
      if (format === "f16" && dtype === "BF16") expect(Array.from(fromFile.weightF32()!)).toEqual(Array.from(values, toHalf));
      fromFile.dispose();
      fromArray.dispose();
    }
  });

  test.each(["f16", "q4"] as const)(
    "an F16 file's weight into %s is packed 64 rows at a time: no allocation of a float32 copy of the whole weight",
    (format) => {
      const [N, K] = [200, 96];
      const values = halfWeights(rng(freshSeed()).floats(N * K, 0.5));
      const file = loadSafetensors(safetensors({ weight: { dtype: "F16", shape: [N, K], bytes: new Uint8Array(halfBits(values).buffer) } }));
      const { heap } = runtime();
      const sizes: number[] = [];
      const original = heap.alloc.bind(heap);
      const alloc = vi.spyOn(heap, "alloc").mockImplementation((bytes: number) => {
        sizes.push(bytes);
        return original(bytes);
      });
      let lin: Linear;
      try {
        lin = new Linear({ inFeatures: K, outFeatures: N, bias: false }).loadStateDict(file, "", { weights: format });
      } finally {
        alloc.mockRestore();
      }
      // the packed weight (f16: 2 N K bytes) and blocks of 64 rows (q4: widened, 4 x 64 K), never 4 N K
      expect(Math.max(...sizes)).toBeLessThanOrEqual(Math.max(2 * N * K, 4 * 64 * K));
      expect(Math.max(2 * N * K, 4 * 64 * K)).toBeLessThan(4 * N * K);
      const want = new Linear({ inFeatures: K, outFeatures: N, bias: false }).loadStateDict({ weight: { data: values, shape: [N, K] } }, "", {
        weights: format,
      });
      const x = { data: rng(3).floats(2 * K), shape: [2, K] };
      expect(Array.from(lin.forward(x).data)).toEqual(Array.from(want.forward(x).data));
      lin.dispose();
      want.dispose();
    },
  );
});

describe("models: EncoderModel (Hugging Face BERT) and CausalLM (a tiny Llama) in f16 and q4", () => {
  test.each(["f16", "q4"] as const)('EncoderModel with { weights: "%s" }: close to f32, fewer bytes; quantize() gives the same bits', (format) => {
    const dir = new URL("./fixtures/encoders/", import.meta.url);
    const config = JSON.parse(readFileSync(new URL("bert-f32.config.json", dir), "utf8")) as Record<string, unknown>;
    const dict: StateDict = loadSafetensors(readFileSync(new URL("bert-f32.safetensors", dir)));
    const ids = { data: Int32Array.from({ length: 2 * 9 }, (_, i) => (i * 7) % 61), shape: [2, 9] };
    const f32 = EncoderModel.fromConfig(config).loadStateDict(dict);
    const m = EncoderModel.fromConfig(config).loadStateDict(dict, undefined, { weights: format });
    const err = relRms(m.forward(ids).data, f32.forward(ids).data);
    console.log(`${format} vs f32, the tiny BERT fixture: ${(100 * err).toFixed(4)}% relative RMS`);
    expect(err).toBeGreaterThan(0);
    // q4 on a model this small (hidden 36, random weights) is far coarser than on BERT-base: a
    // block of 32 holds most of a row, so its step is set by the row's largest weight. The three
    // embedding tables are q4 too: 24.5% (17.6% with them in float32)
    expect(err).toBeLessThan(format === "f16" ? 0.001 : 0.3);
    expect(m.weightBytes()).toBeLessThan(f32.weightBytes());
    const q = quantize(EncoderModel.fromConfig(config).loadStateDict(dict), format);
    expect(Array.from(q.forward(ids).data)).toEqual(Array.from(m.forward(ids).data));
    for (const x of [f32, m, q]) x.dispose();
  });

  test.each(["f16", "q4"] as const)('CausalLM with { weights: "%s" }: logits close to f32, fewer bytes', (format) => {
    const dir = new URL("./fixtures/decoders/", import.meta.url);
    const config = JSON.parse(readFileSync(new URL("llama-untied.config.json", dir), "utf8")) as Record<string, unknown>;
    const dict = loadSafetensors(readFileSync(new URL("llama-untied.safetensors", dir)));
    const f32 = CausalLM.fromConfig(config).loadStateDict(dict);
    const m = CausalLM.fromConfig(config).loadStateDict(dict, "", { weights: format });
    const ids = Int32Array.from({ length: 11 }, (_, i) => (i * 5 + 1) % Number(config.vocab_size));
    const err = relRms(m.forward(ids).data, f32.forward(ids).data);
    console.log(`${format} vs f32, the tiny Llama fixture's logits: ${(100 * err).toFixed(4)}% relative RMS`);
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(format === "f16" ? 0.001 : 0.5); // q4: see EncoderModel above
    expect(m.weightBytes()).toBeLessThan(f32.weightBytes());
    f32.dispose();
    m.dispose();
  });
});

describe("two threads give the same bits as one", () => {
  type Lib = typeof import("../src/index.js");
  let two: Lib;
  beforeAll(async () => {
    vi.resetModules();
    two = await import("../src/index.js");
    await two.init({ threads: 2, simd: "baseline" });
  });
  afterAll(() => two.shutdown());

  // M = 1: columns split in whole panels; M = 67: rows (both above the 2^20 multiply-adds that split)
  test.each([
    ["f16", 1],
    ["f16", 67],
    ["q4", 1],
    ["q4", 67],
  ] as const)("%s, M = %i, 768 -> 3072 with bias and gelu", (format, M) => {
    const [N, K] = [3072, 768];
    const r = rng(freshSeed());
    const dict = { weight: { data: normal(r, N * K, 0.02), shape: [N, K] }, bias: { data: r.floats(N), shape: [N] } };
    const x = { data: r.floats(M * K), shape: [M, K] };
    const one = new Linear({ inFeatures: K, outFeatures: N }).loadStateDict(dict, "", { weights: format });
    const par = new two.Linear({ inFeatures: K, outFeatures: N }).loadStateDict(dict, "", { weights: format });
    expect(Array.from(par.forward(x).data)).toEqual(Array.from(one.forward(x).data));
    one.dispose();
    par.dispose();
  });
});
