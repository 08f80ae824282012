import { optionBool, positiveInt } from "./check.js";
// A pre-norm decoder layer of Llama-style models (Hugging Face's LlamaDecoderLayer and its
// Mistral, Qwen2, Qwen3 and Gemma 2 variants), usable alone or inside a CausalLM.
import { ArgumentError, ShapeError } from "./errors.js";
import { DecoderAttention, type Step } from "./decoder-attention.js";
import { GatedMLP } from "./gated-mlp.js";
import { type Ctx, Module, type Param, nested, prefixed, withScope } from "./module.js";
import { RMSNorm } from "./rmsnorm.js";
import { RopeTable, type RopeScaling, ropeParameters, type RopeParameters } from "./rotary.js";
import { type AttentionMask, readLeftPadding, stepPositions } from "./left-padding.js";
import { type Tensor, checkOptions, checkTensor, describe, fmt } from "./tensor.js";

export interface DecoderLayerOptions {
  hiddenSize: number;
  numHeads: number;
  /** Key/value heads (grouped-query attention); default numHeads. */
  numKvHeads?: number;
  /** Default hiddenSize / numHeads. */
  headDim?: number;
  intermediateSize: number;
  /** The MLP gate's activation; default "silu". */
  activation?: "silu" | "gelu-tanh";
  /** Default 1e-6. */
  rmsNormEps?: number;
  /** Biases on q_proj, k_proj, v_proj (Qwen2, Llama's attention_bias); default false. */
  qkvBias?: boolean;
  /** Bias on o_proj (Llama's attention_bias); default false. */
  oBias?: boolean;
  /** Biases on the MLP's projections (Llama's mlp_bias); default false. */
  mlpBias?: boolean;
  /** Qwen3's q_norm / k_norm over each head before RoPE; default false. */
  qkNorm?: boolean;
  /**
   * Gemma 2's four norms: post_attention_layernorm normalises the attention output before the
   * residual, pre_feedforward_layernorm / post_feedforward_layernorm wrap the MLP. Default false:
   * post_attention_layernorm is the norm before the MLP (Llama).
   */
  sandwichNorm?: boolean;
  /** Gemma's RMSNorm, (1 + weight); default false. */
  unitOffset?: boolean;
  /** Learned attention sinks (gpt-oss): self_attn.sinks [numHeads], one logit per head joining each row's softmax denominator; default false. */
  sinks?: boolean;
  /** RoPE of each head (rope_theta, Hugging Face's rope_scaling). Default theta 10000, no scaling. */
  rope?: { theta?: number; scaling?: RopeScaling | null; maxPositionEmbeddings?: number };
  /** Each query sees the w most recent keys, itself included; default null: all. */
  slidingWindow?: number | null;
  /** Attention logit soft-capping (Gemma 2's attn_logit_softcapping); default none. */
  softcap?: number | null;
  /** Scores scale by this ** -0.5 (Gemma 2's query_pre_attn_scalar); default headDim. */
  queryPreAttnScalar?: number;
}

export interface DecoderLayerForwardOptions {
  /** [L] or [B, L] (1 = token, 0 = padding), left padding only; positions count real tokens (cumsum - 1). */
  attentionMask?: AttentionMask;
}

const OPTIONS: (keyof DecoderLayerOptions)[] = [
  "hiddenSize",
  "numHeads",
  "numKvHeads",
  "headDim",
  "intermediateSize",
  "activation",
  "rmsNormEps",
  "qkvBias",
  "oBias",
  "mlpBias",
  "qkNorm",
  "sandwichNorm",
  "unitOffset",
  "sinks",
  "rope",
  "slidingWindow",
  "softcap",
  "queryPreAttnScalar",
];

/**
 * One decoder layer: x + attn(input_layernorm(x)), then h + mlp(post_attention_layernorm(h)); with
 * `sandwichNorm` (Gemma 2): x + post_attention_layernorm(attn(input_layernorm(x))), then
 * h + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h))). State dict (Hugging Face's
 * names under model.layers.{i}.): self_attn.{q,k,v,o}_proj.{weight,bias?},
 * self_attn.{q,k}_norm.weight (qkNorm), mlp.{gate,up,down}_proj.weight, input_layernorm.weight,
 * post_attention_layernorm.weight, {pre,post}_feedforward_layernorm.weight (sandwichNorm).
 */
export class DecoderLayer extends Module {
  readonly hiddenSize: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly slidingWindow: number | null;
  /** @internal the attention block (its class is internal) */
  readonly selfAttn: DecoderAttention;
  readonly mlp: GatedMLP;
  readonly inputLayernorm: RMSNorm;
  readonly postAttentionLayernorm: RMSNorm;
  readonly preFeedforwardLayernorm: RMSNorm | null;
  readonly postFeedforwardLayernorm: RMSNorm | null;
  /** @internal inv_freq and the attention factor of this layer's RoPE */
  readonly rope: RopeParameters;

  constructor(options: DecoderLayerOptions) {
    super();
    const o = checkOptions("DecoderLayer options", options, OPTIONS);
    const who = "DecoderLayer";
    this.hiddenSize = positiveInt(who, "hiddenSize", o.hiddenSize);
    const H = this.hiddenSize;
    this.numHeads = positiveInt(who, "numHeads", o.numHeads);
    this.numKvHeads = positiveInt(who, "numKvHeads", o.numKvHeads ?? this.numHeads);
    if (this.numHeads % this.numKvHeads)
      throw new ArgumentError(`${who} numHeads: expected a multiple of numKvHeads (${this.numKvHeads}), got ${describe(this.numHeads)}`);
    if (o.headDim === undefined && H % this.numHeads)
      throw new ArgumentError(`${who} hiddenSize: expected a multiple of numHeads (${this.numHeads}) when headDim is not given, got ${describe(H)}`);
    this.headDim = positiveInt(who, "headDim", o.headDim ?? H / this.numHeads);
    if (this.headDim % 2) throw new ArgumentError(`${who} headDim: expected an even integer (RoPE rotates pairs), got ${describe(this.headDim)}`);
    const eps = o.rmsNormEps ?? 1e-6;
    const unitOffset = optionBool(who, "unitOffset", o.unitOffset, false);
    const window = o.slidingWindow ?? null;
    this.slidingWindow = window === null ? null : positiveInt(who, "slidingWindow", window);
    const softcap = o.softcap ?? 0;
    if (typeof softcap !== "number" || !(softcap >= 0) || !Number.isFinite(softcap))
      throw new ArgumentError(`${who} softcap: expected a finite number >= 0 (0: none), got ${describe(softcap)}`);
    const scalar = o.queryPreAttnScalar ?? this.headDim;
    if (typeof scalar !== "number" || !(scalar > 0) || !Number.isFinite(scalar))
      throw new ArgumentError(`${who} queryPreAttnScalar: expected a finite number > 0, got ${describe(scalar)}`);
    const rope = checkOptions(`${who} rope`, o.rope, ["theta", "scaling", "maxPositionEmbeddings"]);
    this.rope = ropeParameters({ dim: this.headDim, theta: rope.theta, scaling: rope.scaling, maxPositionEmbeddings: rope.maxPositionEmbeddings });
    this.selfAttn = new DecoderAttention({
      hiddenSize: H,
      numHeads: this.numHeads,
      numKvHeads: this.numKvHeads,
      headDim: this.headDim,
      qkvBias: optionBool(who, "qkvBias", o.qkvBias, false),
      oBias: optionBool(who, "oBias", o.oBias, false),
      qkNorm: optionBool(who, "qkNorm", o.qkNorm, false),
      rmsNormEps: eps,
      unitOffset,
      slidingWindow: this.slidingWindow,
      softcap,
      scale: scalar ** -0.5,
      sinks: optionBool(who, "sinks", o.sinks, false),
    });
    this.mlp = new GatedMLP({
      hiddenSize: H,
      intermediateSize: o.intermediateSize,
      activation: o.activation,
      bias: optionBool(who, "mlpBias", o.mlpBias, false),
    });
    const norm = () => new RMSNorm({ normalizedShape: H, eps, unitOffset });
    this.inputLayernorm = norm();
    this.postAttentionLayernorm = norm();
    const sandwich = optionBool(who, "sandwichNorm", o.sandwichNorm, false);
    this.preFeedforwardLayernorm = sandwich ? norm() : null;
    this.postFeedforwardLayernorm = sandwich ? norm() : null;
  }

  protected override children(): Module[] {
    const extra = this.preFeedforwardLayernorm ? [this.preFeedforwardLayernorm, this.postFeedforwardLayernorm!] : [];
    return [this.selfAttn, this.mlp, this.inputLayernorm, this.postAttentionLayernorm, ...extra];
  }

  params(): Param[] {
    return [
      ...prefixed("self_attn.", this.selfAttn.params()),
      ...prefixed("mlp.", this.mlp.params()),
      ...prefixed("input_layernorm.", this.inputLayernorm.params()),
      ...prefixed("post_attention_layernorm.", this.postAttentionLayernorm.params()),
      ...(this.preFeedforwardLayernorm
        ? [
            ...prefixed("pre_feedforward_layernorm.", this.preFeedforwardLayernorm.params()),
            ...prefixed("post_feedforward_layernorm.", this.postFeedforwardLayernorm!.params()),
          ]
        : []),
    ];
  }

  /**
   * hidden [L, hiddenSize] or [B, L, hiddenSize] -> the layer's output, same shape (causal
   * self-attention, positions 0.. of each sequence's real tokens; padded rows' outputs mean nothing).
   */
  forward(hidden: Tensor, options: DecoderLayerForwardOptions = {}): Tensor {
    const { attentionMask } = checkOptions("DecoderLayer.forward options", options, ["attentionMask"]);
    const t = checkTensor("hidden", hidden);
    const batched = t.shape.length === 3;
    if ((t.shape.length !== 2 && !batched) || t.shape[t.shape.length - 1] !== this.hiddenSize) {
      throw new ShapeError(`DecoderLayer.forward hidden: expected [L, ${this.hiddenSize}] or [B, L, ${this.hiddenSize}], got ${fmt(t.shape)}`);
    }
    // [B, L, hiddenSize] or [L, hiddenSize], checked above
    const [B, L] = (batched ? t.shape : [1, ...t.shape]) as [number, number];
    const pads = readLeftPadding("attentionMask", attentionMask, batched ? [B, L] : [L], 0, null);
    this.assertReady();
    const M = B * L;
    if (M === 0) return { data: new Float32Array(0), shape: [...t.shape] };
    const table = new RopeTable(this.rope);
    try {
      return withScope((ctx) => {
        const x = ctx.scope.put(t.data);
        const { positions, qpos0 } = stepPositions(B, L, 0, pads);
        const kvDim = this.numKvHeads * this.headDim;
        const step: Step = {
          B,
          L,
          positions: ctx.scope.put(positions),
          ...table.cover(ctx, Math.max(2, ...positions) + 1),
          qpos0,
          runs: (_, b, K, V) => {
            const pad = pads[b]!;
            return L > pad ? [{ k: K + 4 * (b * L + pad) * kvDim, v: V + 4 * (b * L + pad) * kvDim, n: L - pad, pos0: 0 }] : [];
          },
        };
        this.run(ctx, x, step, 0);
        return { data: ctx.heap.f32(x, M * this.hiddenSize).slice(), shape: [...t.shape] };
      });
    } finally {
      table.free();
    }
  }

  /** @internal bytes of scratch run() takes at its peak for M rows and at most Lk keys per sequence */
  footprint(M: number, Lk: number, B: number, lastRow = false): number {
    return 8 * M * this.hiddenSize + Math.max(this.selfAttn.footprint(M, Lk, B, lastRow), this.mlp.scratchBytes(M) + 4096);
  }

  /** @internal x (M = B * L rows of hiddenSize) = the layer's output, in place */
  run(outer: Ctx, x: number, step: Step, layer: number): void {
    nested(outer, (ctx) => {
      const M = step.B * step.L;
      const n = M * this.hiddenSize;
      const h = ctx.scope.alloc(4 * n);
      this.inputLayernorm.run(ctx, h, x, M);
      if (!this.preFeedforwardLayernorm) {
        // Llama: x = x + attn(norm(x)); x = x + mlp(norm(x)), the residuals added in the products' stores
        this.selfAttn.run(ctx, x, h, step, layer, x);
        this.postAttentionLayernorm.run(ctx, h, x, M);
        this.mlp.run(ctx, x, h, M, x);
        return;
      }
      // Gemma 2: the attention and MLP outputs are normalised before their residuals
      const y = ctx.scope.alloc(4 * n);
      this.selfAttn.run(ctx, y, h, step, layer);
      this.postAttentionLayernorm.run(ctx, y, y, M);
      addInto(ctx, x, y, n);
      this.preFeedforwardLayernorm.run(ctx, h, x, M);
      this.mlp.run(ctx, y, h, M);
      this.postFeedforwardLayernorm!.run(ctx, y, y, M);
      addInto(ctx, x, y, n);
    });
  }
}

// x (n) += y (n), float32
function addInto(ctx: Ctx, x: number, y: number, n: number): void {
  const a = ctx.heap.f32(x, n);
  const b = ctx.heap.f32(y, n);
  for (let i = 0; i < n; i++) a[i]! += b[i]!;
}
