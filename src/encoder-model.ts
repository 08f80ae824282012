// Hugging Face BERT and RoBERTa encoders (BertModel / RobertaModel without the pooler): embeddings,
// then post-LN encoder layers, loaded from checkpoints saved by save_pretrained.
import { type TokenIds, Embedding, checkIds } from "./embedding.js";
import { ArgumentError, ShapeError } from "./errors.js";
import { LayerNorm } from "./layernorm.js";
import type { Activation } from "./linear.js";
import { mhaMask } from "./mask.js";
import { Module, type Param, prefixed, withScope } from "./module.js";
import type { IntegerTensor } from "./safetensors.js";
import type { LoadStateDictOptions } from "./state-dict.js";
import { type Tensor, checkOptions, checkShape, checkTensor, describe, fmt, honest, size, typedKind } from "./tensor.js";
import { TransformerEncoderLayer } from "./transformer.js";

/** An attention mask, Hugging Face's convention: 1 = real token, 0 = padding. */
export type AttentionMask =
  | Uint8Array
  | Int32Array
  | BigInt64Array
  | readonly number[]
  | { data: Uint8Array | Int32Array | BigInt64Array; shape: readonly number[] };

export interface EncoderModelOptions {
  modelType: "bert" | "roberta";
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  activation: Activation;
  maxPositions: number;
  typeVocabSize: number;
  layerNormEps: number;
  /** RoBERTa: positions start at padTokenId + 1 and skip tokens equal to it. Unused by BERT. */
  padTokenId: number | null;
}

export interface EncoderModelForwardOptions {
  /** [L] or [B, L] like the ids: 1 = real token, 0 = padding (a key no query attends to). */
  attentionMask?: AttentionMask;
  /** Segment ids in [0, type_vocab_size), shaped like the ids; default all 0. */
  tokenTypeIds?: TokenIds;
}

// Hugging Face's defaults for fields a config.json leaves out (BertConfig, RobertaConfig)
const DEFAULTS = {
  bert: { vocab_size: 30522, pad_token_id: 0 },
  roberta: { vocab_size: 50265, pad_token_id: 1 },
} as const;
const ACTIVATIONS: Record<string, Activation> = { gelu: "gelu", gelu_new: "gelu-tanh", gelu_pytorch_tanh: "gelu-tanh", relu: "relu" };

// what checkpoints carry besides the encoder's weights (keys relative to the model's prefix):
// buffers, and the heads of other tasks
const IGNORED = /^(?:pooler\.|cls\.|lm_head\.|embeddings\.(?:position_ids|token_type_ids)$)/;

/**
 * A Hugging Face BERT or RoBERTa encoder: `fromConfig(config.json)`, `loadStateDict(dict)` with
 * the checkpoint's names (with or without the "bert." / "roberta." prefix), `forward(ids)` ->
 * last_hidden_state. Each layer is a post-LN TransformerEncoderLayer: LN(x + attn(x)), LN(h + FFN(h)).
 */
export class EncoderModel extends Module {
  readonly config: Readonly<EncoderModelOptions>;
  readonly wordEmbeddings: Embedding;
  readonly positionEmbeddings: Embedding;
  readonly tokenTypeEmbeddings: Embedding;
  readonly embeddingsNorm: LayerNorm;
  readonly layers: readonly TransformerEncoderLayer[];

  /** A model of a Hugging Face config.json object (model_type "bert" or "roberta"). */
  static fromConfig(config: Record<string, unknown>): EncoderModel {
    return new EncoderModel(fromHuggingFace(config));
  }

  constructor(options: EncoderModelOptions) {
    super();
    const keys: (keyof EncoderModelOptions)[] = [
      "modelType",
      "vocabSize",
      "hiddenSize",
      "numLayers",
      "numHeads",
      "intermediateSize",
      "activation",
      "maxPositions",
      "typeVocabSize",
      "layerNormEps",
      "padTokenId",
    ];
    const o = checkOptions("EncoderModel options", options, keys);
    if (o.modelType !== "bert" && o.modelType !== "roberta")
      throw new ArgumentError(`EncoderModel modelType: expected "bert" or "roberta", got ${describe(o.modelType)}`);
    if (o.modelType === "roberta" && (typeof o.padTokenId !== "number" || !Number.isInteger(o.padTokenId) || o.padTokenId < 0)) {
      throw new ArgumentError(
        `EncoderModel padTokenId: expected an integer >= 0 for RoBERTa (its positions start after it), got ${describe(o.padTokenId)}`,
      );
    }
    this.config = Object.freeze(o);
    const E = o.hiddenSize;
    this.wordEmbeddings = new Embedding({ numEmbeddings: o.vocabSize, embeddingDim: E });
    this.positionEmbeddings = new Embedding({ numEmbeddings: o.maxPositions, embeddingDim: E });
    this.tokenTypeEmbeddings = new Embedding({ numEmbeddings: o.typeVocabSize, embeddingDim: E });
    this.embeddingsNorm = new LayerNorm({ normalizedShape: E, eps: o.layerNormEps });
    const layer = { dModel: E, nhead: o.numHeads, dimFeedforward: o.intermediateSize, activation: o.activation, layerNormEps: o.layerNormEps };
    this.layers = Array.from({ length: o.numLayers }, () => new TransformerEncoderLayer(layer));
  }

  protected override children(): Module[] {
    return [this.wordEmbeddings, this.positionEmbeddings, this.tokenTypeEmbeddings, this.embeddingsNorm, ...this.layers];
  }

  /** Hugging Face's names: embeddings.*, encoder.layer.{i}.* (without a prefix). */
  params(): Param[] {
    const scratch: Scratch = { data: null }; // one buffer packs every layer's query, key and value
    return [
      ...prefixed("embeddings.word_embeddings.", this.wordEmbeddings.params()),
      ...prefixed("embeddings.position_embeddings.", this.positionEmbeddings.params()),
      ...prefixed("embeddings.token_type_embeddings.", this.tokenTypeEmbeddings.params()),
      ...prefixed("embeddings.LayerNorm.", this.embeddingsNorm.params()),
      ...this.layers.flatMap((l, i) => prefixed(`encoder.layer.${i}.`, hfLayerParams(l, scratch))),
    ];
  }

  /**
   * Loads a checkpoint with Hugging Face's names. Without `prefix`, finds it: "" or "bert." /
   * "roberta." (what BertForMaskedLM and friends save). Buffers (embeddings.position_ids,
   * embeddings.token_type_ids) and other tasks' heads (pooler.*, cls.*, lm_head.*) are ignored;
   * with `strict` (default) any other key under the prefix that the model does not use is an error.
   */
  override loadStateDict(dict: Readonly<Record<string, Tensor | IntegerTensor>>, prefix?: string, options: LoadStateDictOptions = {}): this {
    if (dict === null || typeof dict !== "object") return super.loadStateDict(dict, prefix, options);
    const at = prefix ?? ["", `${this.config.modelType}.`].find((p) => Object.hasOwn(dict, `${p}embeddings.word_embeddings.weight`)) ?? "";
    const kept: Record<string, Tensor | IntegerTensor> = Object.create(null);
    for (const key of Object.keys(dict)) {
      if (!(typeof at === "string" && key.startsWith(at) && IGNORED.test(key.slice(at.length)))) kept[key] = dict[key]!;
    }
    return super.loadStateDict(kept, at, options);
  }

  /**
   * inputIds [L] or { data, shape: [B, L] } -> last_hidden_state [L, hidden] or [B, L, hidden].
   * Padding (attentionMask 0) is masked as a key; the outputs at padded positions are computed
   * but mean nothing (as in Hugging Face). A sequence with no real token gets attention outputs of
   * zero (Hugging Face: the mean of every value).
   */
  forward(inputIds: TokenIds, options: EncoderModelForwardOptions = {}): Tensor {
    const { attentionMask, tokenTypeIds } = checkOptions("EncoderModel.forward options", options, ["attentionMask", "tokenTypeIds"]);
    const c = this.config;
    const ids = checkIds("inputIds", inputIds, c.vocabSize, 2);
    const [B, L] = (ids.batched ? ids.shape : [1, ...ids.shape]) as [number, number];
    const keep = attentionMask === undefined ? null : checkAttentionMask("attentionMask", attentionMask, ids.shape);
    const types = tokenTypeIds === undefined ? new Int32Array(B * L) : checkIds("tokenTypeIds", tokenTypeIds, c.typeVocabSize).data;
    if (tokenTypeIds !== undefined && types.length !== B * L)
      throw new ShapeError(`tokenTypeIds: expected the shape of inputIds ${fmt(ids.shape)}, got ${types.length} ids`);
    const positions = this.#positions(ids.data, B, L);
    this.assertReady();
    const padding = keep?.some((k) => k === 0) ? Uint8Array.from(keep, (k) => 1 - k) : null;
    const H = c.numHeads;
    const mask = padding && mhaMask({ attn: "attentionMask", padding: "attentionMask" }, undefined, { data: padding, shape: [B, L] }, B, H, L, L);
    const E = c.hiddenSize;
    const M = B * L;
    const data = withScope((ctx) => {
      // embeddings: (word + token type) + position, in Hugging Face's order, then LayerNorm
      const x = ctx.scope.alloc(4 * M * E);
      this.wordEmbeddings.run(ctx, x, ids.data);
      this.tokenTypeEmbeddings.add(ctx, x, types);
      this.positionEmbeddings.add(ctx, x, positions);
      this.embeddingsNorm.run(ctx, x, x, M);
      const placed = mask && { at: ctx.scope.put(mask.data), info: mask };
      for (const layer of this.layers) layer.run(ctx, x, B, L, placed, false, undefined, 0, null);
      return ctx.heap.f32(x, M * E).slice();
    });
    return { data, shape: ids.batched ? [B, L, E] : [L, E] };
  }

  // BERT: 0..L-1. RoBERTa (create_position_ids_from_input_ids): tokens other than the pad token
  // count up from pad + 1; pad tokens get pad
  #positions(ids: Int32Array, B: number, L: number): Int32Array {
    const { modelType, padTokenId, maxPositions } = this.config;
    const out = new Int32Array(B * L);
    for (let b = 0; b < B; b++) {
      let n = 0;
      for (let i = 0; i < L; i++) {
        const at = b * L + i;
        if (modelType === "bert") out[at] = i;
        else out[at] = ids[at] === padTokenId ? padTokenId! : padTokenId! + ++n;
        if (out[at] >= maxPositions) {
          throw new ShapeError(
            `inputIds: expected positions below max_position_embeddings ${maxPositions}, got position ${out[at]} for token ${i} of ${L}`,
          );
        }
      }
    }
    return out;
  }
}

// Hugging Face's names for a post-LN TransformerEncoderLayer's parameters; query, key and value
// are separate there and packed (in_proj) in torch's MultiheadAttention
function hfLayerParams(layer: TransformerEncoderLayer, scratch: Scratch): Param[] {
  const torch = new Map(layer.params().map((p) => [p.key, p]));
  const as = (hf: string, key: string): Param => ({ ...torch.get(key)!, key: hf });
  const qkv = (what: "weight" | "bias") =>
    packed(
      torch.get(`self_attn.in_proj_${what}`)!,
      ["query", "key", "value"].map((n) => `attention.self.${n}.${what}`),
      scratch,
    );
  return [
    ...qkv("weight"),
    ...qkv("bias"),
    as("attention.output.dense.weight", "self_attn.out_proj.weight"),
    as("attention.output.dense.bias", "self_attn.out_proj.bias"),
    as("attention.output.LayerNorm.weight", "norm1.weight"),
    as("attention.output.LayerNorm.bias", "norm1.bias"),
    as("intermediate.dense.weight", "linear1.weight"),
    as("intermediate.dense.bias", "linear1.bias"),
    as("output.dense.weight", "linear2.weight"),
    as("output.dense.bias", "linear2.bias"),
    as("output.LayerNorm.weight", "norm2.weight"),
    as("output.LayerNorm.bias", "norm2.bias"),
  ];
}

interface Scratch {
  data: Float32Array | null;
}

// one param per part of `target` (its rows split in equal parts, in order), gathered in `scratch`:
// loadStateDict checks all parts before loading any and loads them in order, so the last part
// loads the whole
function packed(target: Param, keys: string[], scratch: Scratch): Param[] {
  const n = keys.length;
  const part = size(target.shape) / n;
  const [rows, ...rest] = target.shape;
  if (rows === undefined) throw new Error(`wasm-attention internal: ${keys.join(", ")} pack into a scalar`);
  return keys.map((key, i) => ({
    key,
    shape: [rows / n, ...rest],
    load: (t: Tensor) => {
      if (!scratch.data || scratch.data.length < n * part) scratch.data = new Float32Array(n * part);
      const whole = scratch.data.subarray(0, n * part);
      whole.set(t.data, i * part);
      if (i === n - 1) target.load({ data: whole, shape: target.shape });
    },
  }));
}

/** The fields of a Hugging Face BERT / RoBERTa config.json that change the math, checked. */
function fromHuggingFace(config: Record<string, unknown>): EncoderModelOptions {
  const who = "EncoderModel.fromConfig";
  if (config === null || typeof config !== "object" || Array.isArray(config))
    throw new ArgumentError(`${who}: expected a config.json object, got ${describe(config)}`);
  const get = (k: string) => (Object.hasOwn(config, k) ? config[k] : undefined);
  const modelType = get("model_type");
  if (modelType !== "bert" && modelType !== "roberta") {
    throw new ArgumentError(`${who} model_type: expected "bert" or "roberta", got ${modelType === undefined ? "nothing" : show(modelType)}`);
  }
  const defaults = DEFAULTS[modelType];
  const int = (k: string, fallback: number, min = 1): number => {
    const v = get(k) ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min)
      throw new ArgumentError(`${who} ${k}: expected an integer >= ${min}, got ${show(v)}`);
    return v;
  };
  // fields that change the math in ways this model does not implement, with their neutral values
  const neutral: [string, (v: unknown) => boolean, string][] = [
    ["position_embedding_type", (v) => v === "absolute", '"absolute"'],
    ["is_decoder", (v) => v === false, "false"],
    ["add_cross_attention", (v) => v === false, "false"],
    ["pruned_heads", (v) => v !== null && typeof v === "object" && Object.keys(v).length === 0, "{}"],
  ];
  const unsupported = neutral
    .filter(([k, ok]) => get(k) !== undefined && !ok(get(k)))
    .map(([k, , want]) => `${k}: expected ${want} (the only one supported), got ${JSON.stringify(get(k))}`);
  if (unsupported.length) throw new ArgumentError(`${who} ${unsupported.join("; ")}`);
  const act = get("hidden_act") ?? "gelu";
  const activation = typeof act === "string" && Object.hasOwn(ACTIVATIONS, act) ? ACTIVATIONS[act] : undefined;
  if (activation === undefined) {
    throw new ArgumentError(
      `${who} hidden_act: expected one of ${Object.keys(ACTIVATIONS)
        .map((a) => `"${a}"`)
        .join(", ")}, got ${show(act)}`,
    );
  }
  const eps = get("layer_norm_eps") ?? 1e-12;
  if (typeof eps !== "number" || !(eps >= 0) || !Number.isFinite(eps))
    throw new ArgumentError(`${who} layer_norm_eps: expected a finite number >= 0, got ${show(eps)}`);
  // BERT does not use its pad token (configs may say null); RoBERTa's positions need it
  const pad = get("pad_token_id");
  if (pad === null && modelType === "roberta")
    throw new ArgumentError(`${who} pad_token_id: expected an integer >= 0 for RoBERTa (its positions start after it), got null`);
  const o: EncoderModelOptions = {
    modelType,
    vocabSize: int("vocab_size", defaults.vocab_size),
    hiddenSize: int("hidden_size", 768),
    numLayers: int("num_hidden_layers", 12),
    numHeads: int("num_attention_heads", 12),
    intermediateSize: int("intermediate_size", 3072),
    activation,
    maxPositions: int("max_position_embeddings", 512),
    typeVocabSize: int("type_vocab_size", 2),
    layerNormEps: eps,
    padTokenId: pad === null ? null : int("pad_token_id", defaults.pad_token_id, 0),
  };
  if (o.hiddenSize % o.numHeads)
    throw new ArgumentError(`${who} hidden_size: expected a multiple of num_attention_heads (${o.numHeads}), got ${o.hiddenSize}`);
  return o;
}

// a config value, for messages: strings quoted as in the JSON
function show(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v) : typeof v === "number" ? String(v) : describe(v);
}

/**
 * Sentence-transformers' mean pooling: the mean of `hidden` over the real tokens of
 * `attentionMask` (all tokens without one). hidden [L, H] -> [H]; [B, L, H] -> [B, H]. A sequence
 * with no real token gives zeros.
 */
export function meanPool(hidden: Tensor, attentionMask?: AttentionMask): Tensor {
  const h = checkTensor("hidden", hidden);
  const s = h.shape;
  if (s.length !== 2 && s.length !== 3) throw new ShapeError(`hidden: expected [L, H] or [B, L, H], got ${fmt(s)}`);
  const [B, L, H] = (s.length === 3 ? s : [1, ...s]) as [number, number, number];
  const keep = attentionMask === undefined ? new Uint8Array(B * L).fill(1) : checkAttentionMask("attentionMask", attentionMask, s.slice(0, -1));
  const out = new Float32Array(B * H);
  const sum = new Float64Array(H);
  for (let b = 0; b < B; b++) {
    sum.fill(0);
    let count = 0;
    for (let i = 0; i < L; i++) {
      if (!keep[b * L + i]) continue;
      count++;
      const row = (b * L + i) * H;
      for (let j = 0; j < H; j++) sum[j]! += h.data[row + j]!;
    }
    for (let j = 0; j < H; j++) out[b * H + j] = sum[j]! / Math.max(count, 1e-9);
  }
  return { data: out, shape: s.length === 3 ? [B, H] : [H] };
}

// an attention mask read once, as 0 / 1 bytes, checked against the shape of the ids it goes with
function checkAttentionMask(name: string, mask: unknown, shape: readonly number[]): Uint8Array {
  const kinds = ["Uint8Array", "Int32Array", "BigInt64Array"];
  let data: ArrayLike<number | bigint>;
  let got: readonly number[];
  if (Array.isArray(mask)) [data, got] = [Array.from({ length: mask.length }, (_, i): unknown => mask[i]) as number[], [mask.length]];
  else if (kinds.includes(typedKind(mask)!)) {
    data = honest<Uint8Array>(mask);
    got = [data.length];
  } else if (mask !== null && typeof mask === "object" && "data" in mask && "shape" in mask) {
    const t = mask as { data: unknown; shape: unknown };
    const d = t.data;
    if (!kinds.includes(typedKind(d)!)) throw new ArgumentError(`${name}: expected data of type ${kinds.join(", ")}, got ${describe(d)}`);
    [data, got] = [honest<Uint8Array>(d), checkShape(`${name}.shape`, t.shape)];
    if (data.length !== size(got)) throw new ShapeError(`${name}.data: expected ${size(got)} elements (shape ${fmt(got)}), got ${data.length}`);
  } else {
    throw new ArgumentError(
      `${name}: expected a Uint8Array, Int32Array, BigInt64Array, an array of numbers or { data, shape }, got ${describe(mask)}`,
    );
  }
  if (got.length !== shape.length || got.some((d, i) => d !== shape[i]))
    throw new ShapeError(`${name}: expected shape ${fmt(shape)}, got ${fmt(got)}`);
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v !== 0 && v !== 1 && v !== 0n && v !== 1n)
      throw new ArgumentError(
        `${name}: expected values 1 (real token) or 0 (padding), got ${typeof v === "bigint" ? `${v}n` : describe(v)} at position ${i}`,
      );
    out[i] = Number(v);
  }
  return out;
}
