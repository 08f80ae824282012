// EncoderModel (Hugging Face BERT / RoBERTa) against float64 references of tiny checkpoints
// saved with Hugging Face's names (scripts/fixtures_encoders.py), plus padding, prefixes,
// config and input errors.
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, test } from "vitest";
import {
  ArgumentError,
  EncoderModel,
  type IntegerTensor,
  ShapeError,
  StateError,
  type Tensor,
  init,
  loadSafetensors,
  meanPool,
  memoryStats,
  tensor,
} from "../src/index.js";
import { expectClose } from "./reference.js";

interface Single {
  row: number;
  columns: number[];
  input_ids: number[][];
  attention_mask: number[][];
  token_type_ids: number[][] | null;
  shape: number[];
  last_hidden_state: number[];
  mean_pooled: number[];
}

interface Case extends Omit<Single, "row" | "columns"> {
  name: string;
  padding: "left" | "right" | "none";
  attention_mask_passed: boolean;
  singles: Single[];
}

interface Model {
  model_type: "bert" | "roberta";
  weights: string;
  config: string;
  dtype: string;
  prefix: string;
  cases: Case[];
}

const dir = new URL("./fixtures/encoders/", import.meta.url);
const read = (name: string) => readFileSync(new URL(name, dir));
const { models, torch } = JSON.parse(read("cases.json").toString("utf8")) as { models: Record<string, Model>; torch: string };
const config = (m: Model) => JSON.parse(read(m.config).toString("utf8")) as Record<string, unknown>;
const TOL = { atol: 1e-5, rtol: 1e-4 };

const ids2 = (rows: number[][]) => ({ data: Int32Array.from(rows.flat()), shape: [rows.length, rows[0].length] });

function run(model: EncoderModel, c: Omit<Single, "row" | "columns"> & { attention_mask_passed?: boolean }): Tensor {
  return model.forward(ids2(c.input_ids), {
    attentionMask: c.attention_mask_passed === false ? undefined : ids2(c.attention_mask),
    tokenTypeIds: c.token_type_ids ? ids2(c.token_type_ids) : undefined,
  });
}

// rows [b, columns] of h [B, L, E] -> [columns.length, E]
function pick(h: Tensor, b: number, columns: number[]): Float32Array {
  const [, L, E] = h.shape;
  return Float32Array.from(columns.flatMap((j) => Array.from(h.data.subarray((b * L + j) * E, (b * L + j + 1) * E))));
}

beforeAll(() => init());

describe(`matches the float64 reference (torch ${torch}) on Hugging Face checkpoints`, () => {
  for (const [name, m] of Object.entries(models)) {
    describe(`${name} (${m.model_type}, ${m.dtype}, prefix "${m.prefix}")`, () => {
      let model: EncoderModel;
      beforeAll(() => {
        model = EncoderModel.fromConfig(config(m)).loadStateDict(loadSafetensors(read(m.weights)));
      });

      for (const c of m.cases) {
        test(c.name, () => {
          const h = run(model, c);
          expect(h.shape).toEqual(c.shape);
          expectClose(h.data, c.last_hidden_state, c.shape, TOL, "last_hidden_state");
          const pooled = meanPool(h, ids2(c.attention_mask));
          expect(pooled.shape).toEqual([c.shape[0], c.shape[2]]);
          expectClose(pooled.data, c.mean_pooled, pooled.shape, TOL, "mean_pooled");
        });

        test(`${c.name}: each sequence alone gives what it gets in the batch`, () => {
          const h = run(model, c);
          for (const s of c.singles) {
            const alone = run(model, s);
            expectClose(alone.data, s.last_hidden_state, s.shape, TOL, `row ${s.row} alone`);
            // the batch's real tokens equal the sequence run alone (to rounding: other lengths, other tiles)
            expectClose(
              pick(h, s.row, s.columns),
              pick(
                alone,
                0,
                s.columns.map((_, i) => i),
              ),
              [s.columns.length, c.shape[2]],
              { atol: 1e-6, rtol: 1e-5 },
              `row ${s.row}`,
            );
            // unbatched: Int32Array or number[] of the real tokens -> [L, hidden]
            const real = s.columns.map((j) => c.input_ids[s.row][j]);
            const types = s.columns.map((j) => c.token_type_ids?.[s.row][j] ?? 0);
            const one = model.forward(Int32Array.from(real), { tokenTypeIds: types, attentionMask: new Uint8Array(real.length).fill(1) });
            expect(one.shape).toEqual([real.length, c.shape[2]]);
            expect(model.forward(real, { tokenTypeIds: Int32Array.from(types) }).data).toEqual(one.data);
            expect(meanPool(one).shape).toEqual([c.shape[2]]);
            expectClose(meanPool(one).data, s.mean_pooled, [c.shape[2]], TOL, "mean_pooled, unbatched");
          }
        });
      }
    });
  }

  test("RoBERTa: left and right padding give the same numbers on the real tokens", () => {
    const m = models["roberta-f16"];
    const model = EncoderModel.fromConfig(config(m)).loadStateDict(loadSafetensors(read(m.weights)));
    const right = m.cases.find((c) => c.padding === "right")!;
    const left = m.cases.find((c) => c.padding === "left")!;
    const [hr, hl] = [run(model, right), run(model, left)];
    for (let b = 0; b < right.singles.length; b++) {
      const [r, l] = [right.singles[b], left.singles[b]];
      expectClose(pick(hl, b, l.columns), pick(hr, b, r.columns), [r.columns.length, hr.shape[2]], { atol: 1e-6, rtol: 1e-5 }, `row ${b}`);
    }
    expectClose(
      meanPool(hl, ids2(left.attention_mask)).data,
      meanPool(hr, ids2(right.attention_mask)).data,
      [3, hr.shape[2]],
      { atol: 1e-6, rtol: 1e-5 },
      "pooled",
    );
    model.dispose();
  });
});

describe("loading checkpoints", () => {
  const bert = models["bert-f32"];
  const prefixed = models["bert-prefixed-bf16"];

  test('the "bert." prefix is found, or taken as given; cls.* outside it is not looked at', () => {
    const dict = loadSafetensors(read(prefixed.weights));
    expect(Object.keys(dict).some((k) => k.startsWith("cls."))).toBe(true);
    const c = prefixed.cases[0];
    const found = EncoderModel.fromConfig(config(prefixed)).loadStateDict(dict);
    const given = EncoderModel.fromConfig(config(prefixed)).loadStateDict(dict, "bert.");
    expect(run(found, c).data).toEqual(run(given, c).data);
    expect(() => EncoderModel.fromConfig(config(prefixed)).loadStateDict(dict, "")).toThrow(
      /missing "embeddings.word_embeddings.weight" \[61, 35\]; .*unexpected "bert.embeddings.LayerNorm.bias"/,
    );
    found.dispose();
    given.dispose();
  });

  test("buffers and other tasks' heads are ignored: embeddings.position_ids (I64), pooler.*, cls.*, lm_head.*", () => {
    const dict = loadSafetensors(read(bert.weights));
    expect((dict["embeddings.position_ids"] as IntegerTensor).dtype).toBe("I64");
    expect(Object.keys(dict).filter((k) => k.startsWith("pooler.")).length).toBe(2);
    const extra = {
      ...dict,
      "embeddings.token_type_ids": { data: new BigInt64Array(40), shape: [1, 40], dtype: "I64" } as IntegerTensor,
      "cls.predictions.bias": tensor(new Float32Array(61), [61]),
      "lm_head.dense.weight": tensor(new Float32Array(4), [2, 2]),
    };
    const model = EncoderModel.fromConfig(config(bert)).loadStateDict(extra);
    expectClose(run(model, bert.cases[0]).data, bert.cases[0].last_hidden_state, bert.cases[0].shape, TOL);
    model.dispose();
  });

  test("strict: any other key is an error naming it; strict: false ignores it", () => {
    const dict = {
      ...loadSafetensors(read(bert.weights)),
      "classifier.weight": tensor(new Float32Array(72), [2, 36]),
      "encoder.layer.0.attention.self.rotary.weight": tensor([1], [1]),
    };
    const model = EncoderModel.fromConfig(config(bert));
    expect(() => model.loadStateDict(dict)).toThrow(ArgumentError);
    expect(() => model.loadStateDict(dict)).toThrow(
      /EncoderModel.loadStateDict: unexpected "classifier.weight", "encoder.layer.0.attention.self.rotary.weight"/,
    );
    expect(() => model.forward([1, 2])).toThrow(StateError); // nothing loaded
    expect(model.loadStateDict(dict, undefined, { strict: false })).toBe(model);
    expect(model.forward([1, 2]).shape).toEqual([2, 36]);
    model.dispose();
  });

  test("missing and misshapen keys are all named with Hugging Face's names", () => {
    const dict = { ...loadSafetensors(read(bert.weights)) };
    delete dict["encoder.layer.1.attention.self.key.bias"];
    dict["encoder.layer.0.intermediate.dense.weight"] = tensor(new Float32Array(36 * 36), [36, 36]);
    expect(() => EncoderModel.fromConfig(config(bert)).loadStateDict(dict)).toThrow(
      /"encoder.layer.0.intermediate.dense.weight" has shape \[36, 36\], expected \[37, 36\]; missing "encoder.layer.1.attention.self.key.bias" \[36\]/,
    );
  });

  test("the same weights from F32, F16 and BF16 views load the same model (loadSafetensors { view: true })", () => {
    const plain = EncoderModel.fromConfig(config(bert)).loadStateDict(loadSafetensors(read(bert.weights)));
    const viewed = EncoderModel.fromConfig(config(bert)).loadStateDict(loadSafetensors(read(bert.weights), { view: true }));
    const c = bert.cases[1];
    expect(run(viewed, c).data).toEqual(run(plain, c).data);
    plain.dispose();
    viewed.dispose();
  });

  test("dispose frees every weight; forward afterwards is a StateError", () => {
    const before = memoryStats().liveBytes;
    const model = EncoderModel.fromConfig(config(bert)).loadStateDict(loadSafetensors(read(bert.weights)));
    run(model, bert.cases[0]);
    model.dispose();
    expect(memoryStats().liveBytes).toBe(before);
    expect(() => model.forward([1])).toThrow(/was disposed/);
  });
});

describe("config.json", () => {
  const base = () => config(models["bert-f32"]);
  const bad: [string, Record<string, unknown>, RegExp][] = [
    [
      "a model type other than bert and roberta",
      { model_type: "gpt2" },
      /EncoderModel.fromConfig model_type: expected "bert" or "roberta", got "gpt2"/,
    ],
    ["no model_type", { model_type: undefined }, /EncoderModel.fromConfig model_type: expected "bert" or "roberta", got nothing/],
    [
      "relative position embeddings",
      { position_embedding_type: "relative_key" },
      /position_embedding_type: expected "absolute" \(the only one supported\), got "relative_key"/,
    ],
    ["a decoder", { is_decoder: true }, /is_decoder: expected false \(the only one supported\), got true/],
    ["cross-attention", { add_cross_attention: true }, /add_cross_attention: expected false \(the only one supported\), got true/],
    ["pruned heads", { pruned_heads: { 0: [1] } }, /pruned_heads: expected \{\} \(the only one supported\), got \{"0":\[1\]\}/],
    [
      "two at once, both named",
      { is_decoder: true, position_embedding_type: "relative_key_query" },
      /position_embedding_type: expected "absolute" .*got "relative_key_query"; is_decoder: expected false .*got true/,
    ],
    [
      "an activation we do not compute",
      { hidden_act: "swish" },
      /hidden_act: expected one of "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", got "swish"/,
    ],
    ["heads that do not divide hidden_size", { num_attention_heads: 5 }, /hidden_size: expected a multiple of num_attention_heads \(5\), got 36/],
    ["a size that is not a positive integer", { intermediate_size: 0 }, /EncoderModel.fromConfig intermediate_size: expected an integer >= 1, got 0/],
    ["a size of the wrong type", { vocab_size: "61" }, /vocab_size: expected an integer >= 1, got "61"/],
    ["layer_norm_eps", { layer_norm_eps: -1 }, /layer_norm_eps: expected a finite number >= 0, got -1/],
    ["RoBERTa without a pad token", { model_type: "roberta", pad_token_id: null }, /pad_token_id: expected an integer >= 0 for RoBERTa/],
  ];
  for (const [what, change, message] of bad) {
    test(`${what}: an ArgumentError naming the field`, () => {
      const cfg = { ...base(), ...change };
      for (const k of Object.keys(change)) if (change[k] === undefined) delete cfg[k];
      expect(() => EncoderModel.fromConfig(cfg)).toThrow(ArgumentError);
      expect(() => EncoderModel.fromConfig(cfg)).toThrow(message);
    });
  }

  test("fields that do not change inference are ignored; neutral values of unsupported ones are accepted", () => {
    const m = EncoderModel.fromConfig({
      ...base(),
      chunk_size_feed_forward: 64,
      gradient_checkpointing: true,
      output_attentions: true,
      use_cache: false,
      torch_dtype: "bfloat16",
      classifier_dropout: 0.3,
      id2label: { 0: "A" },
      _name_or_path: "x",
      transformers_version: "4.44.0",
      is_decoder: false,
      add_cross_attention: false,
      pruned_heads: {},
      position_embedding_type: "absolute",
    });
    expect(m.config).toMatchObject({
      modelType: "bert",
      vocabSize: 61,
      hiddenSize: 36,
      numLayers: 2,
      numHeads: 3,
      intermediateSize: 37,
      activation: "gelu",
      maxPositions: 40,
      typeVocabSize: 2,
      layerNormEps: 1e-12,
      padTokenId: 0,
    });
  });

  test("activations: gelu is erf's, gelu_new and gelu_pytorch_tanh the tanh approximation", () => {
    const act = (hidden_act: string) => EncoderModel.fromConfig({ ...base(), hidden_act }).config.activation;
    expect([act("gelu"), act("gelu_new"), act("gelu_pytorch_tanh"), act("relu")]).toEqual(["gelu", "gelu-tanh", "gelu-tanh", "relu"]);
  });

  test("missing fields take Hugging Face's defaults", () => {
    expect(EncoderModel.fromConfig({ model_type: "bert" }).config).toMatchObject({
      vocabSize: 30522,
      hiddenSize: 768,
      numLayers: 12,
      numHeads: 12,
      intermediateSize: 3072,
      activation: "gelu",
      maxPositions: 512,
      typeVocabSize: 2,
      layerNormEps: 1e-12,
      padTokenId: 0,
    });
    expect(EncoderModel.fromConfig({ model_type: "roberta" }).config).toMatchObject({ vocabSize: 50265, padTokenId: 1 });
  });
});

describe("inputs", () => {
  let bert: EncoderModel;
  let roberta: EncoderModel;
  beforeAll(() => {
    bert = EncoderModel.fromConfig(config(models["bert-f32"])).loadStateDict(loadSafetensors(read(models["bert-f32"].weights)));
    roberta = EncoderModel.fromConfig(config(models["roberta-f16"])).loadStateDict(loadSafetensors(read(models["roberta-f16"].weights)));
  });

  test("attention masks of every accepted type agree", () => {
    const ids = { data: Int32Array.of(2, 9, 41, 3, 0, 0), shape: [2, 3] };
    const mask = [1, 1, 1, 1, 0, 0];
    const want = bert.forward(ids, { attentionMask: { data: Uint8Array.from(mask), shape: [2, 3] } }).data;
    for (const data of [Int32Array.from(mask), BigInt64Array.from(mask.map(BigInt))]) {
      expect(bert.forward(ids, { attentionMask: { data, shape: [2, 3] } }).data).toEqual(want);
    }
    const one = bert.forward([2, 9, 41, 3], { attentionMask: [1, 1, 0, 0] }).data;
    expect(bert.forward([2, 9, 41, 3], { attentionMask: BigInt64Array.of(1n, 1n, 0n, 0n) }).data).toEqual(one);
    expect(bert.forward([2, 9, 41, 3], { attentionMask: { data: Int32Array.of(1, 1, 0, 0), shape: [4] } }).data).toEqual(one);
  });

  test("an all-ones mask is the same as no mask", () => {
    const ids = { data: Int32Array.of(2, 9, 41, 3, 5, 6), shape: [2, 3] };
    expect(bert.forward(ids, { attentionMask: { data: new Uint8Array(6).fill(1), shape: [2, 3] } }).data).toEqual(bert.forward(ids).data);
  });

  test("a sequence with no real token: finite outputs, zeros when mean-pooled", () => {
    const ids = { data: Int32Array.of(2, 9, 0, 0), shape: [2, 2] };
    const mask = { data: Uint8Array.of(1, 1, 0, 0), shape: [2, 2] };
    const h = bert.forward(ids, { attentionMask: mask });
    expect(h.data.every(Number.isFinite)).toBe(true);
    expect(Array.from(meanPool(h, mask).data.subarray(36))).toEqual(new Array(36).fill(0));
  });

  const bad: [string, (b: EncoderModel, r: EncoderModel) => unknown, typeof ArgumentError, RegExp][] = [
    [
      "an id past the vocabulary",
      (b) => b.forward({ data: Int32Array.of(1, 2, 3, 61), shape: [2, 2] }),
      ArgumentError,
      /inputIds\[1, 1\]: expected an integer in \[0, 61\), got number 61/,
    ],
    ["a fractional id", (b) => b.forward([1, 2.5]), ArgumentError, /inputIds\[1\]: expected an integer in \[0, 61\), got number 2.5/],
    [
      "ids of rank 3",
      (b) => b.forward({ data: new Int32Array(8), shape: [2, 2, 2] }),
      ShapeError,
      /inputIds: expected 2 dimensions \(\[B, L\]\), got \[2, 2, 2\]/,
    ],
    [
      "a mask of another shape",
      (b) => b.forward({ data: new Int32Array(6), shape: [2, 3] }, { attentionMask: { data: new Uint8Array(6), shape: [3, 2] } }),
      ShapeError,
      /attentionMask: expected shape \[2, 3\], got \[3, 2\]/,
    ],
    [
      "a flat mask for a batch",
      (b) => b.forward({ data: new Int32Array(6), shape: [2, 3] }, { attentionMask: new Uint8Array(6) }),
      ShapeError,
      /attentionMask: expected shape \[2, 3\], got \[6\]/,
    ],
    [
      "a mask value other than 0 and 1",
      (b) => b.forward([1, 2, 3], { attentionMask: [1, 2, 1] }),
      ArgumentError,
      /attentionMask: expected values 1 \(real token\) or 0 \(padding\), got number 2 at position 1/,
    ],
    [
      "a float mask",
      (b) => b.forward([1, 2], { attentionMask: new Float32Array(2) as never }),
      ArgumentError,
      /attentionMask: expected a Uint8Array, Int32Array, BigInt64Array/,
    ],
    [
      "a token type past type_vocab_size",
      (b) => b.forward([1, 2], { tokenTypeIds: [0, 2] }),
      ArgumentError,
      /tokenTypeIds\[1\]: expected an integer in \[0, 2\), got number 2/,
    ],
    [
      "token types of another length",
      (b) => b.forward([1, 2], { tokenTypeIds: [0, 1, 1] }),
      ShapeError,
      /tokenTypeIds: expected the shape of inputIds \[2\]/,
    ],
    [
      "BERT: more tokens than positions",
      (b) => b.forward(new Int32Array(41).fill(5)),
      ShapeError,
      /inputIds: expected positions below max_position_embeddings 40, got position 40 for token 40 of 41/,
    ],
    [
      "RoBERTa: positions start after the pad token",
      (_, r) => r.forward(new Int32Array(41).fill(5)),
      ShapeError,
      /inputIds: expected positions below max_position_embeddings 42, got position 42 for token 40 of 41/,
    ],
    ["an unknown option", (b) => b.forward([1], { attention_mask: [1] } as never), ArgumentError, /unknown option "attention_mask"/],
  ];
  for (const [what, call, cls, message] of bad) {
    test(what, () => {
      expect(() => call(bert, roberta)).toThrow(cls);
      expect(() => call(bert, roberta)).toThrow(message);
    });
  }

  test("RoBERTa: 40 real tokens fit (positions 2..41)", () => {
    expect(roberta.forward(new Int32Array(40).fill(5)).shape).toEqual([40, 33]);
  });

  test("meanPool errors", () => {
    const h = tensor(new Float32Array(12), [2, 2, 3]);
    expect(() => meanPool(h, { data: new Uint8Array(4), shape: [4] })).toThrow(/attentionMask: expected shape \[2, 2\], got \[4\]/);
    expect(() => meanPool(tensor(new Float32Array(3), [3]))).toThrow(/hidden: expected \[L, H\] or \[B, L, H\], got \[3\]/);
    expect(meanPool(h).shape).toEqual([2, 3]);
  });
});
