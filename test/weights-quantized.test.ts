// The weight formats q8, f16 and q4 through the host: loadStateDict(dict, prefix, { weights }),
// quantize(module, format), weightBytes(), F16 / BF16 safetensors files. One body of each test
// over the table of formats (FORMATS in test/support/quantized.ts: each format's quantize helper,
// dequantize reference and tolerances): accuracy against f32 on a BERT-base-sized layer (the
// issue's targets: q8 within 1%, f16 within 0.1%, q4 within 6% relative RMS), Linear against the
// float64 oracle of the same math, EncoderModel and CausalLM fixtures, and two threads against
// one, bit for bit. Next to the table, what is one format's own: q8's pre-quantized int8 tensors
// (<key> I8 + <key>_scale F32) and their errors, quantize between f16 and q4, the F16 files f16
// and q4 pack 64 rows at a time.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { freshLibrary } from "./support/fresh.js";
import {
  ArgumentError,
  CausalLM,
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
import {
  largestAllocation,
  FORMATS,
  type Format,
  bertFixture,
  decoderFixture,
  halfBits,
  halfWeights,
  intSums,
  product,
  quantizeRows,
  relRms,
  safetensors,
  toHalf,
} from "./support/quantized.js";

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

describe("against f32 on a BERT-base-sized layer (hidden 768, ff 3072, 12 heads, L = 32, weights ~N(0, 0.02), input ~N(0, 1))", () => {
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
    for (const { name } of FORMATS) {
      before = memoryStats().liveBytes;
      layers[name] = new TransformerEncoderLayer(BERT).loadStateDict(dict, "", { weights: name });
      live[name] = memoryStats().liveBytes - before;
    }
    x = { data: normal(r, 32 * 768, 1), shape: [1, 32, 768] };
  });
  afterAll(() => [f32, ...Object.values(layers)].forEach((l) => l.dispose()));

  describe.each(FORMATS.map((f) => [f.name, f] as const))("%s", (format, { relRms: target, matrixBytes, bytesRatio }) => {
    test(`the layer's output is within the issue's target of f32 (relative RMS below ${target.bertLayer})`, () => {
      const want = f32.forward(x).data;
      const err = relRms(layers[format].forward(x).data, want);
      console.log(`${format} vs f32, BERT-base layer L=32: ${(100 * err).toFixed(4)}% relative RMS`);
      expect(err).toBeLessThan(target.bertLayer);
      expect(err).toBeGreaterThan(0); // it really ran the format
    });

    test(`one product alone (768 -> 3072, the first feed-forward matrix): relative RMS below ${target.linear768}`, () => {
      const [a, b] = [new Linear({ inFeatures: 768, outFeatures: 3072 }), new Linear({ inFeatures: 768, outFeatures: 3072 })];
      const sub = { weight: dict["linear1.weight"]!, bias: dict["linear1.bias"]! };
      a.loadStateDict(sub);
      b.loadStateDict(sub, "", { weights: format });
      const err = relRms(b.forward(x).data, a.forward(x).data);
      console.log(`${format} vs f32, Linear 768 -> 3072: ${(100 * err).toFixed(4)}% relative RMS`);
      expect(err).toBeLessThan(target.linear768);
      a.dispose();
      b.dispose();
    });

    test(`memory: the bytes of each matrix, biases and norms in float32; below ${bytesRatio.toFixed(3)} of the f32 layer's bytes (weightBytes and liveBytes)`, () => {
      const params = f32.params();
      const matrices = params.filter((p) => p.shape.length === 2);
      const others = params.filter((p) => p.shape.length !== 2).reduce((n, p) => n + size(p.shape), 0);
      // every float32 weight counted: 4 bytes each
      expect(f32.weightBytes()).toBe(4 * (matrices.reduce((n, p) => n + size(p.shape), 0) + others));
      // 768 and 3072 are multiples of 32 and 8: no padding
      const l = layers[format];
      expect(l.weightBytes()).toBe(matrices.reduce((n, p) => n + matrixBytes(p.shape[0]!, p.shape[1]!), 0) + 4 * others);
      const ratio = l.weightBytes() / f32.weightBytes();
      console.log(
        `BERT-base layer weights: f32 ${f32.weightBytes()} bytes, ${format} ${l.weightBytes()} bytes (${(100 * ratio).toFixed(2)}%, 1/${(1 / ratio).toFixed(2)}); liveBytes ${live.f32} -> ${live[format]}`,
      );
      expect(ratio).toBeLessThan(bytesRatio);
      expect(live[format] / live.f32).toBeLessThan(bytesRatio);
      // weightBytes is what the heap holds for the weights (each block rounded up to 16 bytes there)
      expect(Math.abs(live.f32 - f32.weightBytes())).toBeLessThan(16 * 16);
      expect(Math.abs(live[format] - l.weightBytes())).toBeLessThan(16 * 16);
    });

    test(`quantize(layer, "${format}") gives the same bits as loading with { weights: "${format}" }`, () => {
      const l = new TransformerEncoderLayer(BERT).loadStateDict(dict);
      const before = l.weightBytes();
      expect(quantize(l, format)).toBe(l);
      expect(l.weightBytes()).toBe(layers[format].weightBytes());
      expect(l.weightBytes()).toBeLessThan(bytesRatio * before);
      expect(Array.from(l.forward(x).data)).toEqual(Array.from(layers[format].forward(x).data));
      l.dispose();
    });
  });

  test("q8: pre-quantized int8 tensors (from the same rule) load as q8 without the option, the same bits", () => {
    const keys = ["self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight", "linear2.weight"];
    const l = new TransformerEncoderLayer(BERT).loadStateDict(preQuantized(dict, keys));
    expect(l.weightBytes()).toBe(layers.q8.weightBytes());
    expect(Array.from(l.forward(x).data)).toEqual(Array.from(layers.q8.forward(x).data));
    l.dispose();
  });
});

describe("Linear: the host path against the float64 oracle of the same math", () => {
  // q8: int8 activations per row, exact integer sums, times both scales; q4: an exact integer sum
  // per block (product's oracle)
  test.each(
    FORMATS.flatMap(({ name }) =>
      [
        [1, 1, 1],
        [3, 5, 7],
        [3, 7, 5],
        [67, 17, 33],
        [130, 67, 64],
        [5, 130, 67],
      ].map(([M, N, K]) => [name, M!, N!, K!] as const),
    ),
  )("%s M=%i N=%i K=%i, bias, through forward()", (format, M, N, K) => {
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
    const got = lin.forward({ data: a, shape: [M, K] });
    expect(got.shape).toEqual([M, N]);
    const { x: prod } = product(format, a, w, M, N, K);
    const want = prod.map((v, i) => v + bias[i % N]!);
    const tol = FORMATS.find((f) => f.name === format)!.oracle(Math.max(...Array.from(want, Math.abs)), 1); // bias in [-1, 1)
    expectClose(got.data, want, [M, N], tol, `${format} (seed ${seed})`);
    lin.dispose();
  });

  test("q8: pre-quantized rows are used as they are: rows below +-127, and -128", () => {
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

  test("q8: from a safetensors file: an I8 weight and its F32 scales", () => {
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

  test("q8: errors: scales missing or misshapen, an I8 weight of the wrong shape, an unused _scale key, a bad format", () => {
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

  test("f16 and q4: quantize between formats: f32 -> f16 -> q4 quantizes the halves; q4 -> f16, q8 and f32 are errors; not loaded: later loads take the format", () => {
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

describe("from safetensors files", () => {
  test.each(FORMATS.flatMap(({ name }) => (["F16", "BF16"] as const).map((dtype) => [dtype, name] as const)))(
    'a %s file into "%s" Linear layers: the same bits as from float32 arrays of its values',
    (dtype, format) => {
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
    },
  );

  test.each(FORMATS.map((f) => f.name))(
    "%s: a BF16 file (widened in WebAssembly memory, held there) into MultiHeadAttention: the same bits as from float32 arrays",
    (format) => {
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
      const a = new MultiHeadAttention({ embedDim: 24, numHeads: 3 }).loadStateDict(loadSafetensors(file), "", { weights: format });
      const b = mha.loadStateDict(dict, "", { weights: format });
      const x = { data: r.floats(2 * 5 * 24), shape: [2, 5, 24] };
      expect(Array.from(a.forward(x, x, x).output.data)).toEqual(Array.from(b.forward(x, x, x).output.data));
      expect(a.weightBytes()).toBe(b.weightBytes());
      a.dispose();
      b.dispose();
    },
  );

  // q8 is not here: Linear widens a file's F16 weight whole before quantizing it to q8 (only f16
  // and q4 load a block of rows at a time, src/linear.ts #loadHalf)
  test.each(["f16", "q4"] as const)(
    "%s: an F16 file's weight is packed 64 rows at a time: no allocation of a float32 copy of the whole weight",
    (format) => {
      const [N, K] = [200, 96];
      const values = halfWeights(rng(freshSeed()).floats(N * K, 0.5));
      const file = loadSafetensors(safetensors({ weight: { dtype: "F16", shape: [N, K], bytes: new Uint8Array(halfBits(values).buffer) } }));
      const [lin, largest] = largestAllocation(() =>
        new Linear({ inFeatures: K, outFeatures: N, bias: false }).loadStateDict(file, "", { weights: format }),
      );
      // the packed weight (f16: 2 N K bytes) and blocks of 64 rows (q4: widened, 4 x 64 K), never 4 N K
      expect(largest).toBeLessThanOrEqual(Math.max(2 * N * K, 4 * 64 * K));
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

describe("quantize()", () => {
  const small = { layer: { dModel: 32, nhead: 4, dimFeedforward: 48, activation: "gelu" as const }, numLayers: 2, norm: true };

  test.each(FORMATS.map((f) => f.name))("%s: a stack, a module not loaded yet, a module already in the format; back to f32 is an error", (format) => {
    const r = rng(freshSeed());
    const a = new TransformerEncoder(small);
    const dict = randomDict(a.params(), r);
    a.loadStateDict(dict);
    const x = { data: r.floats(3 * 7 * 32), shape: [3, 7, 32] };
    const want = new TransformerEncoder(small).loadStateDict(dict, "", { weights: format });
    quantize(a, format);
    expect(Array.from(a.forward(x).data)).toEqual(Array.from(want.forward(x).data));
    quantize(a, format); // already in the format: unchanged
    expect(Array.from(a.forward(x).data)).toEqual(Array.from(want.forward(x).data));
    expect(a.weightBytes()).toBe(want.weightBytes());
    expect(() => quantize(a, "f32")).toThrow(
      new RegExp(
        `quantize format: expected one the weights held can go to, got string f32: 12 Linear layers hold ${format} weights; their float32 values are gone`,
      ),
    );
    expect(quantize(new TransformerEncoder(small).loadStateDict(dict), "f32").weightBytes()).toBeGreaterThan(3.5 * a.weightBytes() * 0.5);
    // before loading: the layers load in the format unless the load asks otherwise
    const b = quantize(new TransformerEncoder(small), format).loadStateDict(dict);
    expect(Array.from(b.forward(x).data)).toEqual(Array.from(want.forward(x).data));
    const c = quantize(new TransformerEncoder(small), format).loadStateDict(dict, "", { weights: "f32" });
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
    for (const { name } of FORMATS) expect(() => quantize({} as never, name)).toThrow(ArgumentError);
    const m = new MultiHeadAttention({ embedDim: 8, numHeads: 2 });
    expect(() => quantize(m, "int8" as never)).toThrow(/quantize format: expected "f32" or "f16" or "q8" or "q4", got string int8/);
    expect(() => quantize(m, undefined as never)).toThrow(/quantize format: expected "f32" or "f16" or "q8" or "q4", got undefined/);
    m.dispose();
    for (const { name } of FORMATS) expect(() => quantize(m, name)).toThrow(StateError);
  });

  test.each(FORMATS.map((f) => f.name))("%s: weightBytes 0 before loading and after dispose(); the memory comes back", (format) => {
    const live = memoryStats().liveBytes;
    const m = new TransformerEncoder(small);
    expect(m.weightBytes()).toBe(0);
    m.loadStateDict(randomDict(m.params(), rng(1)), "", { weights: format });
    expect(m.weightBytes()).toBeGreaterThan(0);
    m.dispose();
    expect(m.weightBytes()).toBe(0);
    expect(memoryStats().liveBytes).toBe(live);
  });
});

describe("models: EncoderModel (Hugging Face BERT) and CausalLM (a tiny Llama)", () => {
  describe.each(FORMATS.map((f) => [f.name, f] as const))("%s", (format, { relRms: target }) => {
    test(`EncoderModel with { weights: "${format}" }: every Linear and embedding table in the format, close to f32 (below ${target.bertFixture}), fewer bytes; quantize() gives the same bits`, () => {
      const { config, dict, ids } = bertFixture();
      const f32 = EncoderModel.fromConfig(config).loadStateDict(dict);
      const m = EncoderModel.fromConfig(config).loadStateDict(dict, undefined, { weights: format });
      for (const e of [m.wordEmbeddings, m.positionEmbeddings, m.tokenTypeEmbeddings]) expect(e.weights).toBe(format);
      const err = relRms(m.forward(ids).data, f32.forward(ids).data);
      console.log(`${format} vs f32, the tiny BERT fixture: ${(100 * err).toFixed(4)}% relative RMS`);
      expect(err).toBeGreaterThan(0);
      expect(err).toBeLessThan(target.bertFixture);
      // the embeddings (61 + 40 + 2 rows of 36) and the 2 x 6 matrices of the layers shrink
      expect(m.weightBytes()).toBeLessThan(f32.weightBytes());
      const q = quantize(EncoderModel.fromConfig(config).loadStateDict(dict), format);
      expect(Array.from(q.forward(ids).data)).toEqual(Array.from(m.forward(ids).data));
      expect(q.weightBytes()).toBe(m.weightBytes());
      expect(() => quantize(q, "f32")).toThrow(new RegExp(`\\d+ Linear layers and 3 embedding tables hold ${format} weights`));
      for (const x of [f32, m, q]) x.dispose();
    });

    test(`CausalLM (llama-untied) with { weights: "${format}" }: every Linear of its layers, the embedding and the untied lm_head in the format; logits close to f32 (below ${target.llamaFixture}), fewer bytes`, () => {
      const { config, dict } = decoderFixture("llama-untied");
      const f32 = CausalLM.fromConfig(config).loadStateDict(dict);
      const m = CausalLM.fromConfig(config).loadStateDict(dict, "", { weights: format });
      const ids = Int32Array.from({ length: 11 }, (_, i) => (i * 5 + 1) % Number(config.vocab_size));
      const err = relRms(m.forward(ids).data, f32.forward(ids).data);
      console.log(`${format} vs f32, the tiny Llama fixture's logits: ${(100 * err).toFixed(4)}% relative RMS`);
      expect(err).toBeGreaterThan(0);
      expect(err).toBeLessThan(target.llamaFixture);
      expect(m.weightBytes()).toBeLessThan(f32.weightBytes());
      f32.dispose();
      m.dispose();
    });
  });

  test("q8: pre-quantized Hugging Face keys (query, key, value and dense weights, the embedding tables as I8 + _scale)", () => {
    const { config, dict, ids } = bertFixture();
    const q8 = EncoderModel.fromConfig(config).loadStateDict(dict, undefined, { weights: "q8" });
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
    q8.dispose();
  });
});

describe("two threads give the same bits as one", () => {
  type Lib = typeof import("../src/index.js");
  let two: Lib;
  beforeAll(async () => {
    two = await freshLibrary();
    await two.init({ threads: 2, simd: "baseline" });
  });
  afterAll(() => two.shutdown());

  // M = 1: columns split in whole panels; M = 67: rows (both above the 2^20 multiply-adds that split)
  test.each(FORMATS.flatMap(({ name }) => [1, 67].map((M) => [name, M] as const)))("%s, M = %i, 768 -> 3072 with bias and gelu", (format, M) => {
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
