// Bad input to every module, constructor and helper: one of the library's error classes, a message
// that names the argument with what was expected and given, nothing allocated, and the library
// working afterwards.
import { beforeAll, describe, expect, test } from "vitest";
import * as lib from "../src/index.js";
import { expectRejected } from "./support/rejects.js";

const {
  ArgumentError,
  KVCache,
  LayerNorm,
  Linear,
  MultiHeadAttention,
  ShapeError,
  StateError,
  TransformerDecoder,
  TransformerDecoderLayer,
  TransformerEncoder,
  TransformerEncoderLayer,
  WasmAttentionError,
  loadSafetensors,
  residentTensor,
  tensor,
} = lib;

const t = (...shape: number[]) => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.25), shape);
const b = (...shape: number[]) => tensor(new Uint8Array(shape.reduce((a, b) => a * b, 1)), shape);
const loaded = <M extends lib.Module>(m: M): M => m.loadStateDict(Object.fromEntries(m.params().map((p) => [p.key, t(...p.shape)])));

let mha: InstanceType<typeof MultiHeadAttention>;
let enc: InstanceType<typeof TransformerEncoder>;
let dec: InstanceType<typeof TransformerDecoder>;
let lin: InstanceType<typeof Linear>;
let ln: InstanceType<typeof LayerNorm>;
const layer = { dModel: 8, nhead: 2, dimFeedforward: 16 };

beforeAll(async () => {
  await lib.init();
  mha = loaded(new MultiHeadAttention({ embedDim: 8, numHeads: 2 }));
  enc = loaded(new TransformerEncoder({ layer, numLayers: 2 }));
  dec = loaded(new TransformerDecoder({ layer, numLayers: 1 }));
  lin = loaded(new Linear({ inFeatures: 8, outFeatures: 3 }));
  ln = loaded(new LayerNorm({ normalizedShape: 8 }));
});

const x = t(2, 5, 8);
type Row = [string, () => unknown, typeof WasmAttentionError, RegExp];
const rows: () => Row[] = () => [
  // constructors
  [
    "Linear: inFeatures not a positive integer",
    () => new Linear({ inFeatures: 2.5, outFeatures: 3 }),
    ArgumentError,
    /Linear inFeatures: expected a positive integer, got number 2.5/,
  ],
  [
    "Linear: unknown option",
    () => new Linear({ inFeatures: 2, outFeatures: 3, bais: true } as never),
    ArgumentError,
    /Linear options: expected only "inFeatures", "outFeatures", "bias".*, got unknown option "bais"/,
  ],
  [
    "LayerNorm: negative eps",
    () => new LayerNorm({ normalizedShape: 4, eps: -1 }),
    ArgumentError,
    /LayerNorm eps: expected a finite number >= 0, got number -1/,
  ],
  [
    "MultiHeadAttention: numHeads does not divide embedDim",
    () => new MultiHeadAttention({ embedDim: 10, numHeads: 4 }),
    ArgumentError,
    /MultiHeadAttention embedDim: expected a multiple of numHeads \(4\), got number 10/,
  ],
  [
    "MultiHeadAttention: bias not a boolean",
    () => new MultiHeadAttention({ embedDim: 8, numHeads: 2, bias: 1 as never }),
    ArgumentError,
    /MultiHeadAttention bias: expected a boolean, got number 1/,
  ],
  [
    "TransformerEncoderLayer: NaN dModel",
    () => new TransformerEncoderLayer({ dModel: NaN, nhead: 2 }),
    ArgumentError,
    /TransformerEncoderLayer dModel: expected a positive integer, got number NaN/,
  ],
  [
    "TransformerDecoderLayer: unknown activation",
    () => new TransformerDecoderLayer({ ...layer, activation: "tanh" as never }),
    ArgumentError,
    /TransformerDecoderLayer activation: expected "relu", "gelu" or "gelu-tanh", got string tanh/,
  ],
  [
    "TransformerEncoder: numLayers 0",
    () => new TransformerEncoder({ layer, numLayers: 0 }),
    ArgumentError,
    /TransformerEncoder numLayers: expected a positive integer, got number 0/,
  ],
  [
    "TransformerDecoder: unknown option",
    () => new TransformerDecoder({ layer, numLayers: 1, normFirst: true } as never),
    ArgumentError,
    /TransformerDecoder options: expected only "layer", "numLayers", "norm".*, got unknown option "normFirst"/,
  ],
  [
    "KVCache: capacity not a positive integer",
    () => new KVCache({ capacity: -3 }),
    ArgumentError,
    /KVCache capacity: expected a positive integer, got number -3/,
  ],
  [
    "KVCache: unknown option",
    () => new KVCache({ size: 3 } as never),
    ArgumentError,
    /KVCache options: expected only "capacity".*, got unknown option "size"/,
  ],
  // forward calls
  ["Linear.forward: wrong last dimension", () => lin.forward(t(2, 7)), ShapeError, /Linear.forward x: expected \[\.\.\., 8\], got \[2, 7\]/],
  [
    "Linear.forward: Float64Array",
    () => lin.forward({ data: new Float64Array(8), shape: [1, 8] } as never),
    ArgumentError,
    /x: expected data of type Float32Array, got Float64Array/,
  ],
  [
    "LayerNorm.forward: plain array",
    () => ln.forward({ data: [1, 2], shape: [2] } as never),
    ArgumentError,
    /x: expected data of type Float32Array, got an Array/,
  ],
  [
    "MultiHeadAttention.forward: rank 4 query",
    () => mha.forward(t(1, 2, 5, 8), x, x),
    ShapeError,
    /query: expected \[B, Lq, 8\] or \[Lq, 8\], got \[1, 2, 5, 8\]/,
  ],
  [
    "MultiHeadAttention.forward: batch mismatch",
    () => mha.forward(x, t(3, 5, 8), t(3, 5, 8)),
    ShapeError,
    /key: expected \[2, 5, 8\] to go with query \[2, 5, 8\], got \[3, 5, 8\]/,
  ],
  [
    "MultiHeadAttention.forward: keyPaddingMask shape",
    () => mha.forward(x, x, x, { keyPaddingMask: b(2, 4) }),
    ShapeError,
    /keyPaddingMask: expected \[2, 5\] \(batch, Lk\), got \[2, 4\]/,
  ],
  [
    "MultiHeadAttention.forward: attnMask dtype",
    () => mha.forward(x, x, x, { attnMask: { data: new Int8Array(25), shape: [5, 5] } as never }),
    ArgumentError,
    /attnMask: expected data of type Float32Array or Uint8Array, got Int8Array/,
  ],
  [
    "MultiHeadAttention.forward: needWeights not boolean",
    () => mha.forward(x, x, x, { needWeights: "no" as never }),
    ArgumentError,
    /MultiHeadAttention.forward needWeights: expected a boolean, got string no/,
  ],
  [
    "MultiHeadAttention.forward: unknown option",
    () => mha.forward(x, x, x, { is_causal: true } as never),
    ArgumentError,
    /MultiHeadAttention.forward options: expected only "keyPaddingMask", "attnMask".*, got unknown option "is_causal"/,
  ],
  [
    "MultiHeadAttention.forward: cache without isCausal",
    () => mha.forward(x, x, x, { cache: new KVCache() }),
    ArgumentError,
    /isCausal: expected true with a cache \(decoding is causal\), got false/,
  ],
  [
    "MultiHeadAttention.forward: cache not a KVCache",
    () => mha.forward(x, x, x, { isCausal: true, cache: {} as never }),
    ArgumentError,
    /cache: expected a KVCache, got Object/,
  ],
  ["TransformerEncoder.forward: wrong dModel", () => enc.forward(t(2, 5, 6)), ShapeError, /src: expected \[B, L, 8\] or \[L, 8\], got \[2, 5, 6\]/],
  ["TransformerEncoder.forward: mask shape", () => enc.forward(x, { mask: b(5, 4) }), ShapeError, /mask: expected \[5, 5\] or \[4, 5, 5\]/],
  [
    "TransformerEncoder.forward: srcMask is the layer's name",
    () => enc.forward(x, { srcMask: b(5, 5) } as never),
    ArgumentError,
    /TransformerEncoder.forward options: expected only "mask".*, got unknown option "srcMask"/,
  ],
  [
    "TransformerDecoder.forward: memory batch mismatch",
    () => dec.forward(x, t(3, 4, 8)),
    ShapeError,
    /memory: expected a batch of 2 like tgt \[2, 5, 8\], got \[3, 4, 8\]/,
  ],
  [
    "TransformerDecoder.forward: tgtIsCausal not boolean",
    () => dec.forward(x, x, { tgtIsCausal: "yes" as never }),
    ArgumentError,
    /TransformerDecoder.forward tgtIsCausal: expected a boolean, got string yes/,
  ],
  [
    "TransformerDecoder.forward: memoryKeyPaddingMask shape",
    () => dec.forward(x, t(2, 4, 8), { memoryKeyPaddingMask: b(2, 5) }),
    ShapeError,
    /memoryKeyPaddingMask: expected \[2, 4\] \(batch, Lk\), got \[2, 5\]/,
  ],
  // state dicts and lifecycle
  [
    "loadStateDict: missing and misshapen keys, all named",
    () => new LayerNorm({ normalizedShape: 4 }).loadStateDict({ weight: t(5) }),
    ShapeError,
    /"weight" has shape \[5\], expected \[4\]; missing "bias" \[4\]/,
  ],
  [
    "loadStateDict: wrongly typed tensor",
    () => new Linear({ inFeatures: 2, outFeatures: 1 }).loadStateDict({ weight: { data: new Float64Array(2), shape: [1, 2] } as never, bias: t(1) }),
    ArgumentError,
    /state dict "weight": expected data of type Float32Array, got Float64Array/,
  ],
  [
    "forward before loadStateDict",
    () => new Linear({ inFeatures: 2, outFeatures: 1 }).forward(t(1, 2)),
    StateError,
    /Linear has no weights: call loadStateDict\(\) first/,
  ],
  [
    "forward after dispose",
    () => {
      const m = loaded(new LayerNorm({ normalizedShape: 2 }));
      m.dispose();
      return m.forward(t(1, 2));
    },
    StateError,
    /LayerNorm was disposed/,
  ],
  [
    "loadStateDict after dispose",
    () => {
      const m = new LayerNorm({ normalizedShape: 2 });
      m.dispose();
      return m.loadStateDict({});
    },
    StateError,
    /LayerNorm was disposed/,
  ],
  // helpers
  [
    "tensor: negative dimension",
    () => tensor(new Float32Array(0), [-1]),
    ShapeError,
    /tensor shape\[0\]: expected a non-negative integer, got number -1/,
  ],
  ["residentTensor: data length", () => residentTensor([3], [1, 2]), ShapeError, /residentTensor data: expected 3 elements \(shape \[3\]\), got 2/],
  [
    "loadSafetensors: a string",
    () => loadSafetensors("model" as never),
    ArgumentError,
    /loadSafetensors bytes: expected a Uint8Array or ArrayBuffer, got string model/,
  ],
];

describe("every public function and constructor rejects bad input clearly", () => {
  test("the table covers every constructor and forward", () => {
    const named = rows()
      .map(([what]) => what)
      .join("\n");
    for (const name of [
      "Linear",
      "LayerNorm",
      "MultiHeadAttention",
      "TransformerEncoderLayer",
      "TransformerDecoderLayer",
      "TransformerEncoder",
      "TransformerDecoder",
      "KVCache",
      "residentTensor",
      "loadSafetensors",
      "tensor",
    ]) {
      expect(named).toContain(name);
    }
  });

  for (const [what, call, cls, message] of rows()) {
    test(what, () => expectRejected(call, cls, message, () => expect(mha.forward(x, x, x).output.shape).toEqual([2, 5, 8])));
  }
});

// Issue #11: one message style for every bad argument, `<name>: expected <what>, got <value>`,
// <name> the argument (after its class or function unless a plain argument of the call), made of
// words, dots, brackets, quotes and spaces; no sentence before the colon.
const STYLE = /^[\w.[\]", ]+: expected .+, got .+/s;

describe("one message style across the modules", () => {
  const q = t(2, 4, 8);
  // [module, call]: one throw site of each, a sample that keeps the style one
  const sites: [string, () => unknown][] = [
    ["check.ts (positiveInt)", () => new Linear({ inFeatures: 2.5, outFeatures: 3 })],
    ["check.ts (optionBool)", () => new MultiHeadAttention({ embedDim: 8, numHeads: 2, bias: 1 as never })],
    ["check.ts (int)", () => new KVCache({ capacity: -3 })],
    ["tensor.ts (data length)", () => tensor(new Float32Array(5), [2, 3])],
    ["tensor.ts (unknown option)", () => new LayerNorm({ normalizedShape: 4, epsilon: 1 } as never)],
    ["resident.ts", () => residentTensor([2, -1])],
    ["multihead.ts", () => new MultiHeadAttention({ embedDim: 10, numHeads: 4 })],
    ["transformer.ts", () => new TransformerEncoderLayer({ ...layer, activation: "tanh" as never })],
    ["rmsnorm.ts", () => new lib.RMSNorm({ normalizedShape: 4, eps: -1 })],
    ["gated-mlp.ts", () => new lib.GatedMLP({ hiddenSize: 4, intermediateSize: 8, activation: "relu" as never })],
    ["decoder-layer.ts", () => new lib.DecoderLayer({ hiddenSize: 16, numHeads: 4, numKvHeads: 3, intermediateSize: 8 })],
    ["embedding.ts", () => new lib.Embedding({ numEmbeddings: 4, embeddingDim: 2, paddingIdx: 4 })],
    ["attention.ts", () => lib.scaledDotProductAttention(q, t(3, 4, 8), t(3, 4, 8))],
    ["features.ts", () => lib.scaledDotProductAttention(q, q, q, { dilation: 2 })],
    ["mask.ts", () => lib.scaledDotProductAttention(q, q, q, { attnMask: b(4, 5) })],
    ["sparse.ts", () => lib.blockSparseLayout(40, 40, 8, { pattern: "dense" } as never)],
    ["positions.ts", () => lib.sinusoidalPositions(-1, 4)],
    [
      "rotary.ts",
      () =>
        lib.ropeParameters({
          dim: 8,
          scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 64 },
        }),
    ],
    ["linear-attention.ts", () => new lib.LinearAttentionState([2], 0, 2)],
    ["safetensors.ts", () => loadSafetensors(new Uint8Array(5))],
    ["state-dict.ts", () => lin.loadStateDict({}, 3 as never)],
    ["quantize.ts", () => lib.quantize(lin, "int8" as never)],
    ["encoder-model.ts", () => lib.EncoderModel.fromConfig({ model_type: "bert", hidden_act: "swish" })],
    ["causal-lm-config.ts", () => lib.CausalLM.fromConfig({ model_type: "gpt2" })],
  ];
  const messageOf = (call: () => unknown): string => {
    try {
      call();
    } catch (e) {
      expect(e).toBeInstanceOf(WasmAttentionError);
      return (e as Error).message;
    }
    throw new Error("no error thrown");
  };

  test.each(sites)("%s", (_, call) => {
    const message = messageOf(call);
    expect(message).toMatch(STYLE);
    expect(message).not.toMatch(/must be/);
  });

  test("init's options too (a rejected promise)", async () => {
    await expect(lib.init({ simd: "fast" as never })).rejects.toThrow(STYLE);
    await expect(lib.init({ threads: 0 })).rejects.toThrow(STYLE);
  });

  test("the sample spans at least 8 modules, and the older styles do not match", () => {
    expect(new Set(sites.map(([where]) => where.split(" ")[0])).size).toBeGreaterThanOrEqual(8);
    for (const old of [
      "KVCache: capacity must be a positive integer, got 0",
      "MultiHeadAttention: numHeads (12) must be a multiple of numKvHeads (5)",
      "generate: maxNewTokens: expected a non-negative integer, got number -1",
      "tensor: shape [2, 3] holds 6 elements but data has 5",
    ])
      expect(old).not.toMatch(STYLE);
  });
});
