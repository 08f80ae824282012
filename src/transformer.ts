import { KVCache } from "./cache.js";
import { ArgumentError, ShapeError } from "./errors.js";
import { type Activation, Linear, bool, positiveInt } from "./linear.js";
import { LayerNorm } from "./layernorm.js";
import { mhaMask } from "./mask.js";
import { place } from "./resident.js";
import { type Ctx, Module, type Param, nested, prefixed, withScope } from "./module.js";
import { type Attend, MultiHeadAttention } from "./multihead.js";
import type { AttentionVariant } from "./attention.js";
import { type BoolTensor, type Tensor, checkOptions, checkTensor, describe, fmt } from "./tensor.js";

export interface TransformerLayerOptions {
  dModel: number;
  nhead: number;
  dimFeedforward?: number;
  /** "relu" (default), "gelu" (exact, erf: torch's "gelu") or "gelu-tanh" (torch's approximate="tanh"). */
  activation?: Activation;
  layerNormEps?: number;
  /** Pre-LN (x + f(norm(x))) instead of post-LN (norm(x + f(x))), the default. */
  normFirst?: boolean;
  bias?: boolean;
  /** Key/value heads of the self-attention (grouped-query attention); default nhead. Not in torch. */
  numKvHeads?: number;
  /** How the self-attention attends: windows, ALiBi, RoPE, soft-capping, block sparsity. Not in torch. */
  attention?: AttentionVariant;
}

type Mask = Tensor | BoolTensor;
type Placed = Attend["mask"];

const LAYER_OPTIONS = ["dModel", "nhead", "dimFeedforward", "activation", "layerNormEps", "normFirst", "bias", "numKvHeads", "attention"];

/** What every layer has: options checked once, the feed-forward block, and norms. */
abstract class Layer extends Module {
  readonly dModel: number;
  readonly nhead: number;
  readonly normFirst: boolean;
  readonly activation: Activation;
  readonly options: Required<Omit<TransformerLayerOptions, "numKvHeads" | "attention">> & { numKvHeads: number; attention?: AttentionVariant };
  readonly selfAttn: MultiHeadAttention;
  readonly linear1: Linear;
  readonly linear2: Linear;
  readonly norm1: LayerNorm;
  readonly norm2: LayerNorm;

  constructor(who: string, options: TransformerLayerOptions) {
    super();
    checkOptions(`${who} options`, options, LAYER_OPTIONS);
    const o = {
      dModel: positiveInt(who, "dModel", options.dModel),
      nhead: positiveInt(who, "nhead", options.nhead),
      dimFeedforward: positiveInt(who, "dimFeedforward", options.dimFeedforward ?? 2048),
      activation: options.activation ?? "relu",
      layerNormEps: options.layerNormEps ?? 1e-5,
      normFirst: bool(who, "normFirst", options.normFirst, false),
      bias: bool(who, "bias", options.bias, true),
      numKvHeads: options.numKvHeads ?? options.nhead,
      attention: options.attention,
    };
    if (!["relu", "gelu", "gelu-tanh"].includes(o.activation)) {
      throw new ArgumentError(`${who}: activation must be "relu", "gelu" or "gelu-tanh", got ${describe(o.activation)}`);
    }
    this.options = o;
    this.dModel = o.dModel;
    this.nhead = o.nhead;
    this.normFirst = o.normFirst;
    this.activation = o.activation;
    const norm = () => new LayerNorm({ normalizedShape: o.dModel, eps: o.layerNormEps, bias: o.bias });
    this.selfAttn = new MultiHeadAttention({ embedDim: o.dModel, numHeads: o.nhead, bias: o.bias, numKvHeads: o.numKvHeads, attention: o.attention });
    this.linear1 = new Linear({ inFeatures: o.dModel, outFeatures: o.dimFeedforward, bias: o.bias });
    this.linear2 = new Linear({ inFeatures: o.dimFeedforward, outFeatures: o.dModel, bias: o.bias });
    this.norm1 = norm();
    this.norm2 = norm();
  }

  protected override children(): Module[] {
    return [this.selfAttn, this.linear1, this.linear2, this.norm1, this.norm2];
  }

  params(): Param[] {
    return [
      ...prefixed("self_attn.", this.selfAttn.params()),
      ...prefixed("linear1.", this.linear1.params()),
      ...prefixed("linear2.", this.linear2.params()),
      ...prefixed("norm1.", this.norm1.params()),
      ...prefixed("norm2.", this.norm2.params()),
    ];
  }

  // out (M, dModel) = linear2(act(linear1(x))) + residual
  protected feedForward(ctx: Ctx, out: number, x: number, residual: number, M: number): void {
    nested(ctx, (c) => {
      const h = c.scope.alloc(4 * M * this.options.dimFeedforward);
      this.linear1.run(c, h, x, M, 0, this.activation);
      this.linear2.run(c, out, h, M, residual);
    });
  }
}

/** torch.nn.TransformerEncoderLayer(batch_first=True). State dict: self_attn.*, linear1.*, linear2.*, norm1.*, norm2.*. */
export class TransformerEncoderLayer extends Layer {
  constructor(options: TransformerLayerOptions) {
    super("TransformerEncoderLayer", options);
  }

  /**
   * src [B, L, dModel] (or [L, dModel]) -> [B, L, dModel]. Masks as in MultiHeadAttention (boolean
   * true = NOT allowed). With `needWeights`, also the attention weights per head [B, H, L, Lk].
   */
  forward(src: Tensor, options?: EncoderForwardOptions & { needWeights?: false }): Tensor;
  forward(src: Tensor, options: EncoderForwardOptions & { needWeights: true }): { output: Tensor; weights: Tensor[] };
  forward(src: Tensor, options: EncoderForwardOptions = {}): Tensor | { output: Tensor; weights: Tensor[] } {
    return runEncoder("TransformerEncoderLayer.forward", [this], null, src, {
      mask: options.srcMask,
      srcKeyPaddingMask: options.srcKeyPaddingMask,
      isCausal: options.isCausal,
      cache: options.cache,
      needWeights: options.needWeights,
      globalTokens: options.globalTokens,
    }, ["srcMask", "srcKeyPaddingMask", "isCausal", "cache", "needWeights", "globalTokens"], options);
  }

  /** @internal x (B*L, dModel) in place */
  run(outer: Ctx, x: number, B: number, L: number, mask: Placed, causal: boolean, cache: KVCache | undefined, weights: number, global: number[] | null): void {
    nested(outer, (ctx) => {
      const M = B * L;
      const t = ctx.scope.alloc(4 * M * this.dModel);
      const attend = (input: number, out: number, residual: number) =>
        this.selfAttn.run(ctx, { B, Lq: L, Lk: L, q: input, k: input, v: input, out, residual, mask, causal, weights, cache, global });
      if (this.normFirst) {
        this.norm1.run(ctx, t, x, M);
        attend(t, x, x);
        this.norm2.run(ctx, t, x, M);
        this.feedForward(ctx, x, t, x, M);
      } else {
        attend(x, t, x);
        this.norm1.run(ctx, x, t, M);
        this.feedForward(ctx, t, x, x, M);
        this.norm2.run(ctx, x, t, M);
      }
    });
  }
}

/** torch.nn.TransformerDecoderLayer(batch_first=True). State dict adds multihead_attn.* and norm3.*. */
export class TransformerDecoderLayer extends Layer {
  readonly multiheadAttn: MultiHeadAttention;
  readonly norm3: LayerNorm;

  constructor(options: TransformerLayerOptions) {
    super("TransformerDecoderLayer", options);
    const o = this.options;
    this.multiheadAttn = new MultiHeadAttention({ embedDim: o.dModel, numHeads: o.nhead, bias: o.bias, numKvHeads: o.numKvHeads });
    this.norm3 = new LayerNorm({ normalizedShape: o.dModel, eps: o.layerNormEps, bias: o.bias });
  }

  protected override children(): Module[] {
    return [...super.children(), this.multiheadAttn, this.norm3];
  }

  override params(): Param[] {
    return [...super.params(), ...prefixed("multihead_attn.", this.multiheadAttn.params()), ...prefixed("norm3.", this.norm3.params())];
  }

  /** tgt [B, Lt, dModel], memory [B, Lm, dModel] -> [B, Lt, dModel]. */
  forward(tgt: Tensor, memory: Tensor, options: DecoderForwardOptions = {}): Tensor {
    return runDecoder("TransformerDecoderLayer.forward", [this], null, tgt, memory, options);
  }

  /** @internal x (B*Lt, dModel) in place; mem (B*Lm, dModel) */
  run(outer: Ctx, x: number, mem: number, B: number, Lt: number, Lm: number, selfMask: Placed, memMask: Placed, causal: boolean, cache: KVCache | undefined): void {
    nested(outer, (ctx) => {
      const M = B * Lt;
      const t = ctx.scope.alloc(4 * M * this.dModel);
      const attendSelf = (input: number, out: number, residual: number) =>
        this.selfAttn.run(ctx, { B, Lq: Lt, Lk: Lt, q: input, k: input, v: input, out, residual, mask: selfMask, causal, weights: 0, cache });
      const attendMemory = (input: number, out: number, residual: number) =>
        this.multiheadAttn.run(ctx, { B, Lq: Lt, Lk: Lm, q: input, k: mem, v: mem, out, residual, mask: memMask, causal: false, weights: 0 });
      if (this.normFirst) {
        this.norm1.run(ctx, t, x, M);
        attendSelf(t, x, x);
        this.norm2.run(ctx, t, x, M);
        attendMemory(t, x, x);
        this.norm3.run(ctx, t, x, M);
        this.feedForward(ctx, x, t, x, M);
      } else {
        attendSelf(x, t, x);
        this.norm1.run(ctx, x, t, M);
        attendMemory(x, t, x);
        this.norm2.run(ctx, x, t, M);
        this.feedForward(ctx, t, x, x, M);
        this.norm3.run(ctx, x, t, M);
      }
    });
  }
}

export interface StackOptions {
  layer: TransformerLayerOptions;
  numLayers: number;
  /** A final LayerNorm ("norm.*" in the state dict), eps from the layer options. */
  norm?: boolean;
}

export interface EncoderForwardOptions {
  srcMask?: Mask;
  srcKeyPaddingMask?: Mask;
  isCausal?: boolean;
  cache?: KVCache;
  /** Also return each layer's attention weights per head [B, H, L, Lk]: an extension, for interpretability. */
  needWeights?: boolean;
  /** Longformer's global positions, for self-attention with an `attention.window`. */
  globalTokens?: readonly number[];
}

export interface StackEncoderForwardOptions extends Omit<EncoderForwardOptions, "srcMask"> {
  mask?: Mask;
}

export interface DecoderForwardOptions {
  tgtMask?: Mask;
  memoryMask?: Mask;
  tgtKeyPaddingMask?: Mask;
  memoryKeyPaddingMask?: Mask;
  tgtIsCausal?: boolean;
  cache?: KVCache;
}

abstract class Stack<L extends Layer> extends Module {
  readonly layers: L[];
  readonly norm: LayerNorm | null;

  constructor(who: string, options: StackOptions, make: (o: TransformerLayerOptions) => L) {
    super();
    checkOptions(`${who} options`, options, ["layer", "numLayers", "norm"]);
    const n = positiveInt(who, "numLayers", options.numLayers);
    this.layers = Array.from({ length: n }, () => make(options.layer));
    const eps = this.layers[0].options.layerNormEps;
    this.norm = bool(who, "norm", options.norm, false)
      ? new LayerNorm({ normalizedShape: this.layers[0].dModel, eps, bias: this.layers[0].options.bias })
      : null;
  }

  protected override children(): Module[] {
    return this.norm ? [...this.layers, this.norm] : [...this.layers];
  }

  params(): Param[] {
    const ps = this.layers.flatMap((l, i) => prefixed(`layers.${i}.`, l.params()));
    return this.norm ? [...ps, ...prefixed("norm.", this.norm.params())] : ps;
  }
}

/** torch.nn.TransformerEncoder: layers.{i}.* and, with `norm`, norm.*. */
export class TransformerEncoder extends Stack<TransformerEncoderLayer> {
  constructor(options: StackOptions) {
    super("TransformerEncoder", options, (o) => new TransformerEncoderLayer(o));
  }

  forward(src: Tensor, options?: StackEncoderForwardOptions & { needWeights?: false }): Tensor;
  forward(src: Tensor, options: StackEncoderForwardOptions & { needWeights: true }): { output: Tensor; weights: Tensor[] };
  forward(src: Tensor, options: StackEncoderForwardOptions = {}): Tensor | { output: Tensor; weights: Tensor[] } {
    return runEncoder("TransformerEncoder.forward", this.layers, this.norm, src, options, ["mask", "srcKeyPaddingMask", "isCausal", "cache", "needWeights", "globalTokens"], options);
  }
}

/** torch.nn.TransformerDecoder: layers.{i}.* and, with `norm`, norm.*. */
export class TransformerDecoder extends Stack<TransformerDecoderLayer> {
  constructor(options: StackOptions) {
    super("TransformerDecoder", options, (o) => new TransformerDecoderLayer(o));
  }

  forward(tgt: Tensor, memory: Tensor, options: DecoderForwardOptions = {}): Tensor {
    return runDecoder("TransformerDecoder.forward", this.layers, this.norm, tgt, memory, options);
  }
}

// [B, L, E] or [L, E] -> B, L, and whether a batch dimension was given
function sequence(name: string, x: unknown, E: number) {
  const t = checkTensor(name, x);
  const s = t.shape;
  if ((s.length !== 3 && s.length !== 2) || s[s.length - 1] !== E) {
    throw new ShapeError(`${name}: expected [B, L, ${E}] or [L, ${E}], got ${fmt(s)}`);
  }
  return { t, B: s.length === 3 ? s[0] : 1, L: s[s.length - 2], batched: s.length === 3 };
}

function checkCache(cache: unknown, causal: boolean, masked: boolean, B: number): KVCache | undefined {
  if (cache === undefined) return undefined;
  if (!(cache instanceof KVCache)) throw new ArgumentError(`cache: expected a KVCache, got ${describe(cache)}`);
  if (!causal) throw new ArgumentError("cache: decoding with a cache needs causal self-attention (isCausal / tgtIsCausal: true)");
  if (masked) throw new ArgumentError("cache: masks of the self-attention are not supported together with a cache");
  cache.check(B);
  return cache;
}

function unbatch(mask: Mask | undefined, batched: boolean): Mask | undefined {
  return mask && !batched ? { ...mask, shape: [1, ...mask.shape] } : mask;
}

function runEncoder(
  fn: string, layers: TransformerEncoderLayer[], norm: LayerNorm | null, src: Tensor,
  o: StackEncoderForwardOptions, known: string[], given: object,
): Tensor | { output: Tensor; weights: Tensor[] } {
  for (const l of layers) l.assertReady();
  norm?.assertReady();
  checkOptions(`${fn} options`, given, known);
  const E = layers[0].dModel;
  const H = layers[0].nhead;
  const { t, B, L, batched } = sequence("src", src, E);
  const isCausal = bool(fn, "isCausal", o.isCausal, false);
  const needWeights = bool(fn, "needWeights", o.needWeights, false);
  const cache = checkCache(o.cache, isCausal, !!(o.mask || o.srcKeyPaddingMask), B);
  const mask = mhaMask({ attn: "mask", padding: "srcKeyPaddingMask" }, o.mask, unbatch(o.srcKeyPaddingMask, batched), B, H, L, L);
  const Lk = L + (cache?.length ?? 0);
  const global = layers.map((l) => l.selfAttn.checkCall({ masked: !!mask, causal: isCausal && !o.mask, needWeights, Lq: L, Lk: L, globalTokens: o.globalTokens }))[0];
  return withScope((ctx) => {
    const x = ctx.scope.put(t.data);
    const placed = mask && { at: ctx.scope.put(mask.data), info: mask };
    const weights = layers.map(() => (needWeights ? ctx.scope.alloc(4 * B * H * L * Lk) : 0));
    layers.forEach((layer, i) => layer.run(ctx, x, B, L, placed, isCausal && !o.mask, cache, weights[i], global));
    norm?.run(ctx, x, x, B * L);
    const output = { data: ctx.heap.f32(x, t.data.length).slice(), shape: [...t.shape] };
    if (!needWeights) return output;
    const shape = batched ? [B, H, L, Lk] : [H, L, Lk];
    return { output, weights: weights.map((w) => ({ data: ctx.heap.f32(w, B * H * L * Lk).slice(), shape })) };
  });
}

function runDecoder(fn: string, layers: TransformerDecoderLayer[], norm: LayerNorm | null, tgt: Tensor, memory: Tensor, o: DecoderForwardOptions): Tensor {
  for (const l of layers) l.assertReady();
  norm?.assertReady();
  checkOptions(`${fn} options`, o, ["tgtMask", "memoryMask", "tgtKeyPaddingMask", "memoryKeyPaddingMask", "tgtIsCausal", "cache"]);
  const E = layers[0].dModel;
  const H = layers[0].nhead;
  const x = sequence("tgt", tgt, E);
  const m = sequence("memory", memory, E);
  if (m.batched !== x.batched || m.B !== x.B) throw new ShapeError(`memory: expected a batch of ${x.B} like tgt ${fmt(x.t.shape)}, got ${fmt(m.t.shape)}`);
  const { B } = x;
  const isCausal = bool(fn, "tgtIsCausal", o.tgtIsCausal, false);
  const cache = checkCache(o.cache, isCausal, !!(o.tgtMask || o.tgtKeyPaddingMask), B);
  const selfMask = mhaMask({ attn: "tgtMask", padding: "tgtKeyPaddingMask" }, o.tgtMask, unbatch(o.tgtKeyPaddingMask, x.batched), B, H, x.L, x.L);
  const memMask = mhaMask({ attn: "memoryMask", padding: "memoryKeyPaddingMask" }, o.memoryMask, unbatch(o.memoryKeyPaddingMask, x.batched), B, H, x.L, m.L);
  for (const l of layers) l.selfAttn.checkCall({ masked: !!selfMask, causal: isCausal && !o.tgtMask, needWeights: false, Lq: x.L, Lk: x.L });
  return withScope((ctx) => {
    const at = ctx.scope.put(x.t.data);
    const mem = place(ctx.scope, m.t);
    const placeMask = (k: typeof selfMask) => k && { at: ctx.scope.put(k.data), info: k };
    const sm = placeMask(selfMask);
    const mm = placeMask(memMask);
    for (const layer of layers) layer.run(ctx, at, mem, B, x.L, m.L, sm, mm, isCausal && !o.tgtMask, cache);
    norm?.run(ctx, at, at, B * x.L);
    return { data: ctx.heap.f32(at, x.t.data.length).slice(), shape: [...x.t.shape] };
  });
}
