import { optionBool } from "./check.js";
// Hugging Face decoder-only language models (LlamaForCausalLM and the Mistral, Qwen2, Qwen3 and
// Gemma 2 ones): token embedding, pre-norm decoder layers, final norm, LM head; forward over
// left-padded batches with or without a cache, and generation.
import { type CausalLMOptions, causalLMOptions } from "./causal-lm-config.js";
import { DecoderCache, type DecoderCacheOptions, type KeyRun } from "./decoder-cache.js";
import type { LastRowAttention, Step } from "./decoder-attention.js";
import { DecoderLayer } from "./decoder-layer.js";
import { type TokenIds, checkIds } from "./embedding.js";
import { ArgumentError } from "./errors.js";
import { type GenerateOptions, generate } from "./generate.js";
import { runtime } from "./init.js";
import { type AttentionMask, readLeftPadding, stepPositions } from "./left-padding.js";
import { type Ctx, Module, type Param, prefixed, withScope } from "./module.js";
import { RMSNorm } from "./rmsnorm.js";
import { RopeTable } from "./rotary.js";
import type { IntegerTensor } from "./safetensors.js";
import { type LoadStateDictOptions, loadParams } from "./state-dict.js";
import { type Tensor, checkOptions, describe, resultArray } from "./tensor.js";
import { VocabTable } from "./vocab-table.js";

export interface CausalLMForwardOptions {
  /**
   * 1 = token, 0 = padding, left padding only; shape [past + L] or [B, past + L], past being the
   * cache's length (as Hugging Face: the mask covers the cached and the new tokens).
   */
  attentionMask?: AttentionMask;
  /** From createCache(): the past tokens' keys and values; this call's are added to it. */
  cache?: DecoderCache;
  /** Only the last position's logits ([B, 1, vocab]): what generation needs. Default false. */
  lastOnly?: boolean;
  /**
   * Also return where the last position attends: forward then returns `{ logits, attention }`
   * (CausalLMOutputWithAttention). Default false.
   */
  attention?: boolean;
}

/**
 * forward(ids, { attention: true })'s result. `attention` holds the softmax probabilities of each
 * sequence's last position over every key it attends to, per layer and query head:
 * [numLayers, numHeads, past + L] for one sequence, [B, numLayers, numHeads, past + L] for a batch.
 * Its columns are those of the attention mask (the cached columns, then the new ones): a padding
 * column, a key outside a sliding window and a key the cache no longer holds get 0.
 */
export interface CausalLMOutputWithAttention {
  logits: Tensor;
  attention: Tensor;
}

// what checkpoints carry besides the model's weights: RoPE buffers of older transformers
const IGNORED = /^(?:model\.)?(?:layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq$/;

/**
 * A Hugging Face decoder-only language model: `fromConfig(config.json)` (model_type "llama",
 * "mistral", "qwen2", "qwen3", "gemma2"), `loadStateDict(dict)` with the checkpoint's names,
 * `forward(ids, { attentionMask, cache, lastOnly })` -> logits (`{ logits, attention }` with
 * `attention: true`), `generate(ids, options)` -> new tokens, `createCache()` for decoding step by step.
 *
 * Tied embeddings: `tie_word_embeddings: true` uses embed_tokens' table as the LM head (one table
 * in memory, read both ways); false loads lm_head.weight. When the config leaves the field out,
 * the model is tied unless the state dict holds lm_head.weight (Gemma 2 configs omit it and are
 * tied; Llama, Mistral and Qwen configs always write it).
 */
export class CausalLM extends Module {
  readonly config: Readonly<CausalLMOptions>;
  readonly layers: readonly DecoderLayer[];
  readonly #embed: VocabTable;
  readonly #norm: RMSNorm;
  #head: VocabTable | null;
  readonly #rope: RopeTable;
  readonly #normalizer: number;

  /** A model of a Hugging Face config.json object. */
  static fromConfig(config: Record<string, unknown>): CausalLM {
    return new CausalLM(causalLMOptions(config));
  }

  /** @internal use fromConfig() */
  constructor(options: CausalLMOptions) {
    super();
    const o = Object.freeze({ ...options, slidingWindows: Object.freeze([...options.slidingWindows]) as (number | null)[] });
    this.config = o;
    const H = o.hiddenSize;
    this.layers = o.slidingWindows.map(
      (window) =>
        new DecoderLayer({
          hiddenSize: H,
          numHeads: o.numHeads,
          numKvHeads: o.numKvHeads,
          headDim: o.headDim,
          intermediateSize: o.intermediateSize,
          activation: o.activation,
          rmsNormEps: o.rmsNormEps,
          qkvBias: o.qkvBias,
          oBias: o.oBias,
          mlpBias: o.mlpBias,
          qkNorm: o.qkNorm,
          sandwichNorm: o.gemma,
          unitOffset: o.gemma,
          slidingWindow: window,
          softcap: o.attnSoftcap,
          queryPreAttnScalar: o.queryPreAttnScalar,
          sinks: o.sinks ?? false,
          rope: { theta: o.ropeTheta, scaling: o.ropeScaling, maxPositionEmbeddings: o.maxPositionEmbeddings },
        }),
    );
    this.#embed = new VocabTable(o.vocabSize, H);
    this.#norm = new RMSNorm({ normalizedShape: H, eps: o.rmsNormEps, unitOffset: o.gemma });
    this.#head = o.tieWordEmbeddings === false ? new VocabTable(o.vocabSize, H) : null;
    this.#rope = new RopeTable(this.layers[0]?.rope ?? { invFreq: new Float32Array(1), attentionScaling: 1 });
    // Gemma: embeddings times sqrt(hidden_size), a tensor of the hidden states' dtype (float32)
    this.#normalizer = o.gemma ? Math.fround(Math.sqrt(H)) : 1;
  }

  /** Whether the LM head reads the embedding table (decided by the config, else at loading). */
  get tieWordEmbeddings(): boolean {
    return this.#head === null;
  }

  protected override children(): Module[] {
    return [this.#embed, ...this.layers, this.#norm, ...(this.#head ? [this.#head] : [])];
  }

  /** Hugging Face's names: model.embed_tokens.weight, model.layers.{i}.*, model.norm.weight, lm_head.weight (untied). */
  params(): Param[] {
    return this.#params(this.#head);
  }

  #params(head: VocabTable | null): Param[] {
    return [
      ...prefixed("model.embed_tokens.", this.#embed.params()),
      ...this.layers.flatMap((l, i) => prefixed(`model.layers.${i}.`, l.params())),
      ...prefixed("model.norm.", this.#norm.params()),
      ...(head ? prefixed("lm_head.", head.params()) : []),
    ];
  }

  /**
   * Loads a checkpoint with Hugging Face's names (a base model's, without "model.", too).
   * Ignored: RoPE buffers (*.rotary_emb.inv_freq) and, for a model tied by its config,
   * lm_head.weight (and its lm_head.weight_scale if pre-quantized). With `strict` (default) any
   * other key the model does not use is an error.
   */
  override loadStateDict(dict: Readonly<Record<string, Tensor | IntegerTensor>>, prefix = "", options: LoadStateDictOptions = {}): this {
    this.assertLive();
    if (dict === null || typeof dict !== "object" || typeof prefix !== "string") return super.loadStateDict(dict, prefix, options);
    const keys = Object.keys(dict).filter((k) => k.startsWith(prefix));
    // a base model's checkpoint (LlamaModel): embed_tokens.weight, layers.{i}.*, norm.weight
    const base = !keys.includes(`${prefix}model.embed_tokens.weight`) && keys.includes(`${prefix}embed_tokens.weight`);
    const tied = this.config.tieWordEmbeddings ?? !keys.includes(`${prefix}lm_head.weight`);
    const kept: Record<string, Tensor | IntegerTensor> = Object.create(null);
    for (const [key, value] of Object.entries(dict)) {
      const rel = key.startsWith(prefix) ? key.slice(prefix.length) : null;
      if (rel !== null && (IGNORED.test(rel) || (tied && (rel === "lm_head.weight" || rel === "lm_head.weight_scale")))) continue;
      kept[rel !== null && base ? `${prefix}model.${rel}` : key] = value;
    }
    const head = tied ? null : (this.#head ?? new VocabTable(this.config.vocabSize, this.config.hiddenSize));
    try {
      loadParams(this.constructor.name, this.#params(head), kept, prefix, options);
    } catch (error) {
      if (head && head !== this.#head) head.dispose();
      throw error;
    }
    if (this.#head && this.#head !== head) this.#head.dispose();
    this.#head = head;
    this.markLoaded();
    return this;
  }

  /** A cache for decoding with this model: keys and values stored as `dtype` "f32" (the default), "f16" or "q8". */
  createCache(options: DecoderCacheOptions = {}): DecoderCache {
    this.assertLive();
    const { numKvHeads: heads, headDim } = this.config;
    return new DecoderCache(
      this,
      this.layers.map((l) => ({ heads, headDim, window: l.slidingWindow })),
      options,
    );
  }

  /**
   * inputIds [L] or { data, shape: [B, L] } -> logits [L, vocab] or [B, L, vocab] ([1, vocab] /
   * [B, 1, vocab] with lastOnly). Batches are left-padded: each sequence's positions count its
   * real tokens and its padding is never read as a key, so a sequence gets the same logits
   * whatever it is batched with. Logits at padded positions mean nothing. With a cache, the call
   * continues the cached sequences and adds its tokens to the cache.
   *
   * With `attention: true` it returns `{ logits, attention }`: `attention` [numLayers, numHeads,
   * past + L] (batched: [B, numLayers, numHeads, past + L]) is the softmax probabilities of each
   * sequence's last position over its keys, by attention-mask column (0 for padding, keys outside
   * a sliding window and keys the cache dropped), for prefills and decode steps, with or without
   * a cache. Each row sums to 1 (less with attention sinks, whose share is not a column). Decode
   * steps (L = 1) read them from the attention they compute anyway; a longer input computes its
   * last row once more with them, so no [L, L] matrix is ever made.
   */
  forward(inputIds: TokenIds, options: CausalLMForwardOptions & { attention: true }): CausalLMOutputWithAttention;
  forward(inputIds: TokenIds, options?: CausalLMForwardOptions & { attention?: false }): Tensor;
  forward(inputIds: TokenIds, options?: CausalLMForwardOptions): Tensor | CausalLMOutputWithAttention;
  forward(inputIds: TokenIds, options: CausalLMForwardOptions = {}): Tensor | CausalLMOutputWithAttention {
    const o = checkOptions("CausalLM.forward options", options, ["attentionMask", "cache", "lastOnly", "attention"]);
    const c = this.config;
    const ids = checkIds("inputIds", inputIds, c.vocabSize, 2);
    // checkIds gave rank 2 ([B, L]) for { data, shape } and [L] otherwise
    const [B, L] = (ids.batched ? ids.shape : [1, ...ids.shape]) as [number, number];
    const cache = o.cache;
    if (cache !== undefined && !(cache instanceof DecoderCache))
      throw new ArgumentError(`cache: expected a DecoderCache (from createCache()), got ${describe(cache)}`);
    cache?.check(this, B);
    const past = cache?.length ?? 0;
    const pads = readLeftPadding(
      "attentionMask",
      o.attentionMask,
      ids.batched ? [B, past + L] : [past + L],
      past,
      cache ? (b) => cache.pads(b) : null,
    );
    const lastOnly = optionBool("CausalLM.forward", "lastOnly", o.lastOnly, false);
    const withAttention = optionBool("CausalLM.forward", "attention", o.attention, false);
    this.assertReady();
    const rows = lastOnly ? Math.min(L, 1) : L;
    const shape = ids.batched ? [B, rows, c.vocabSize] : [rows, c.vocabSize];
    // the last rows' probabilities, by column of the attention mask
    const nLayers = this.layers.length;
    const attentionShape = ids.batched ? [B, nLayers, c.numHeads, past + L] : [nLayers, c.numHeads, past + L];
    const lastRow: LastRowAttention | undefined = withAttention
      ? { data: resultArray("CausalLM.forward", B * nLayers * c.numHeads * (past + L)), layers: nLayers, columns: past + L, pads }
      : undefined;
    const result = (logits: Tensor) => (lastRow ? { logits, attention: { data: lastRow.data, shape: attentionShape } } : logits);
    if (B * L === 0) return result({ data: new Float32Array(0), shape });
    const { positions, qpos0 } = stepPositions(B, L, past, pads);
    const M = B * L;
    const H = c.hiddenSize;
    const maxKeys = Math.max(...qpos0) + L;
    const { heap } = runtime();
    heap.need(
      "CausalLM.forward",
      4 * M * (2 * H + 1) +
        this.#rope.bytesToCover(Math.max(...positions) + 1) +
        Math.max(...this.layers.map((l) => l.footprint(M, maxKeys, B, withAttention))) +
        (this.#head ?? this.#embed).projectBytes(B * rows),
    );
    const logits = resultArray("CausalLM.forward", B * rows * c.vocabSize);
    if (cache) cache.begin(this, B, L, pads);
    withScope((ctx) => {
      const x = ctx.scope.alloc(4 * M * H);
      this.#embed.gather(ctx.heap.f32(x, M * H), ids.data, { scale: this.#normalizer });
      const step: Step = {
        B,
        L,
        positions: ctx.scope.put(positions),
        ...this.#rope.cover(ctx, Math.max(...positions) + 1),
        qpos0,
        runs: cache ? this.#cachedRuns(ctx, cache, L, past, pads) : this.#newRuns(L, pads),
        stored: cache && cache.dtype !== "f32" ? (layer) => ({ ...cache.rows(layer), format: cache.readFormat() }) : undefined,
        lastRow,
      };
      this.layers.forEach((layer, i) => layer.run(ctx, x, step, i));
      // the final norm and the LM head, over the last row of each sequence only with lastOnly
      let y = x;
      if (lastOnly) {
        y = ctx.scope.alloc(4 * B * H);
        for (let b = 0; b < B; b++) ctx.heap.f32(y + 4 * b * H, H).set(ctx.heap.f32(x + 4 * ((b + 1) * L - 1) * H, H));
      }
      this.#norm.run(ctx, y, y, B * rows);
      (this.#head ?? this.#embed).project(ctx, logits, y, B * rows);
    });
    if (c.finalSoftcap !== null) softcap(logits, c.finalSoftcap);
    cache?.commit(L, pads);
    return result({ data: logits, shape });
  }

  /**
   * Generates up to maxNewTokens tokens after each sequence of inputIds ([L], or [B, L]
   * left-padded with attentionMask), greedily by default; see GenerateOptions. Returns the new
   * tokens, the stop token that ended a sequence included: an Int32Array for one sequence, one
   * per sequence for a batch (each as long as it ran).
   */
  generate(inputIds: TokenIds, options: GenerateOptions = {}): Int32Array | Int32Array[] {
    return generate(this, inputIds, options);
  }

  // without a cache: sequence b's keys are its real new rows
  #newRuns(L: number, pads: Int32Array): Step["runs"] {
    const kvDim = this.config.numKvHeads * this.config.headDim;
    return (_, b, K, V): KeyRun[] => {
      const pad = pads[b]!;
      const first = b * L + pad;
      return L > pad ? [{ k: K + 4 * first * kvDim, v: V + 4 * first * kvDim, n: L - pad, pos0: 0 }] : [];
    };
  }

  // with a cache: the real new rows are stored after the cached ones, then read from there
  #cachedRuns(ctx: Ctx, cache: DecoderCache, L: number, past: number, pads: Int32Array): Step["runs"] {
    const { numKvHeads: heads, headDim } = this.config;
    const kvDim = heads * headDim;
    return (layer, b, K, V): KeyRun[] => {
      const lane = cache.lane(b, layer);
      const skip = Math.max(0, pads[b]! - past);
      const n = L - skip;
      if (n > 0) {
        const from = 4 * (b * L + skip) * kvDim;
        const { format, rowBytes } = cache.rows(layer);
        cache.noteStored(ctx.K.kv_store_rows(lane.k, rowBytes, K + from, kvDim, n, heads, headDim, format));
        cache.noteStored(ctx.K.kv_store_rows(lane.v, rowBytes, V + from, kvDim, n, heads, headDim, format));
      }
      return lane.runs;
    };
  }

  protected override freeOwn(): void {
    this.#rope.free();
  }
}

// Gemma 2's final logit soft-capping, in float32 as torch: tanh(x / cap) * cap
function softcap(x: Float32Array, cap: number): void {
  const c = Math.fround(cap);
  for (let i = 0; i < x.length; i++) x[i] = Math.fround(Math.tanh(Math.fround(x[i]! / c))) * c;
}
