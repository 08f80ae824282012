import { optionBool, positiveInt } from "./check.js";
import { KVCache } from "./cache.js";
import { ArgumentError, ShapeError } from "./errors.js";
import { type Activation, Linear } from "./linear.js";
import { LayerNorm } from "./layernorm.js";
import { mhaMask } from "./mask.js";
import { place } from "./resident.js";
import { type Ctx, Module, type Param, nested, prefixed, withScope } from "./module.js";
import { type Attend, MultiHeadAttention } from "./multihead.js";
import type { AttentionVariant } from "./features.js";
import { type BoolTensor, type Snapshot, type Tensor, checkMask, checkOptions, checkTensor, describe, fmt } from "./tensor.js";
import { runtime } from "./init.js";

export interface TransformerLayerOptions {
  /** Features of each position (torch's d_model). */
  dModel: number;
  /** Attention heads; must divide dModel. */
  nhead: number;
  /** Hidden features of the feed-forward block; default 2048, as torch. */
  dimFeedforward?: number;
  /** "relu" (default), "gelu" (exact, erf: torch's "gelu") or "gelu-tanh" (torch's approximate="tanh"). */
  activation?: Activation;
  /** The layer norms' epsilon; default 1e-5. */
  layerNormEps?: number;
  /** Pre-LN (x + f(norm(x))) instead of post-LN (norm(x + f(x))), the default. */
  normFirst?: boolean;
  /** Biases in every linear layer and layer norm; default true. */
  bias?: boolean;
  /** Key/value heads of the self-attention (grouped-query attention); default nhead. Not in torch. */
  numKvHeads?: number;
  /** How the self-attention attends: windows, ALiBi, RoPE, soft-capping, block sparsity. Not in torch. */
  attention?: AttentionVariant;
}

/**
 * A mask for the modules (nn.MultiheadAttention's convention): boolean, true = NOT allowed (a
 * Uint8Array of 1 and 0, or tensor() of booleans); or float, added to the scores.
 */
export type Mask = Tensor | BoolTensor;
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
      normFirst: optionBool(who, "normFirst", options.normFirst, false),
      bias: optionBool(who, "bias", options.bias, true),
      numKvHeads: options.numKvHeads ?? options.nhead,
      attention: options.attention,
    };
    if (!["relu", "gelu", "gelu-tanh"].includes(o.activation)) {
      throw new ArgumentError(`${who} activation: expected "relu", "gelu" or "gelu-tanh", got ${describe(o.activation)}`);
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

  /** @internal bytes of WebAssembly memory run() takes at its peak for B x L queries over Lk keys */
  footprint(B: number, L: number, Lk: number): number {
    const M = B * L;
    return 4 * M * (2 * this.dModel + this.options.dimFeedforward) + 2 * this.selfAttn.footprint(B, L, Lk);
  }

  /** @internal out (M, dModel) = linear2(act(linear1(x))) + residual */
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
  /** Options whose needWeights is not known where they are written (an `EncoderForwardOptions` made ahead). */
  forward(src: Tensor, options?: EncoderForwardOptions): Tensor | { output: Tensor; weights: Tensor[] };
  forward(src: Tensor, options: EncoderForwardOptions = {}): Tensor | { output: Tensor; weights: Tensor[] } {
    return runEncoder(
      "TransformerEncoderLayer.forward",
      this,
      [this],
      null,
      src,
      {
        mask: options.srcMask,
        srcKeyPaddingMask: options.srcKeyPaddingMask,
        isCausal: options.isCausal,
        cache: options.cache,
        needWeights: options.needWeights,
        globalTokens: options.globalTokens,
      },
      ["srcMask", "srcKeyPaddingMask", "isCausal", "cache", "needWeights", "globalTokens"],
      options,
    );
  }

  /** @internal x (B*L, dModel) in place */
  run(
    outer: Ctx,
    x: number,
    B: number,
    L: number,
    mask: Placed,
    causal: boolean,
    cache: KVCache | undefined,
    weights: number,
    global: number[] | null,
  ): void {
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
    return runDecoder("TransformerDecoderLayer.forward", this, [this], null, tgt, memory, options);
  }

  /** @internal x (B*Lt, dModel) in place; mem (B*Lm, dModel) */
  run(
    outer: Ctx,
    x: number,
    mem: number,
    B: number,
    Lt: number,
    Lm: number,
    selfMask: Placed,
    memMask: Placed,
    causal: boolean,
    cache: KVCache | undefined,
  ): void {
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
  /** The options of every layer. */
  layer: TransformerLayerOptions;
  /** How many layers (torch's num_layers). */
  numLayers: number;
  /** A final LayerNorm ("norm.*" in the state dict), eps from the layer options. */
  norm?: boolean;
}

export interface EncoderForwardOptions {
  /** [L, L] or [B * nhead, L, L]: true = NOT allowed (boolean), or added (float). Default none. */
  srcMask?: Mask;
  /** [B, L]: true = this key is padding (boolean), or added (float). Default none. */
  srcKeyPaddingMask?: Mask;
  /** Causal self-attention: position i sees 0..i. Default false. */
  isCausal?: boolean;
  /** Decode token by token: past keys and values live in the cache (with isCausal). */
  cache?: KVCache;
  /** Also return each layer's attention weights per head [B, H, L, Lk]: an extension, for interpretability. */
  needWeights?: boolean;
  /** Longformer's global positions, for self-attention with an `attention.window`. */
  globalTokens?: readonly number[];
}

export interface StackEncoderForwardOptions extends Omit<EncoderForwardOptions, "srcMask"> {
  /** [L, L] or [B * nhead, L, L], as a layer's srcMask (torch's TransformerEncoder names it mask). */
  mask?: Mask;
}

export interface DecoderForwardOptions {
  /** [Lt, Lt] or [B * nhead, Lt, Lt] for the self-attention: true = NOT allowed, or added. Default none. */
  tgtMask?: Mask;
  /** [Lt, Lm] or [B * nhead, Lt, Lm] for the attention over memory. Default none. */
  memoryMask?: Mask;
  /** [B, Lt]: true = this target position is padding. Default none. */
  tgtKeyPaddingMask?: Mask;
  /** [B, Lm]: true = this memory position is padding. Default none. */
  memoryKeyPaddingMask?: Mask;
  /** Causal self-attention over the target. Default false. */
  tgtIsCausal?: boolean;
  /** Decode token by token (with tgtIsCausal): the self-attention's past keys and values. */
  cache?: KVCache;
}

abstract class Stack<L extends Layer> extends Module {
  readonly layers: L[];
  readonly norm: LayerNorm | null;

  constructor(who: string, options: StackOptions, make: (o: TransformerLayerOptions) => L) {
    super();
    checkOptions(`${who} options`, options, ["layer", "numLayers", "norm"]);
    const n = positiveInt(who, "numLayers", options.numLayers);
    const first = make(options.layer);
    this.layers = [first, ...Array.from({ length: n - 1 }, () => make(options.layer))];
    this.norm = optionBool(who, "norm", options.norm, false)
      ? new LayerNorm({ normalizedShape: first.dModel, eps: first.options.layerNormEps, bias: first.options.bias })
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
  /** Options whose needWeights is not known where they are written (a `StackEncoderForwardOptions` made ahead). */
  forward(src: Tensor, options?: StackEncoderForwardOptions): Tensor | { output: Tensor; weights: Tensor[] };
  forward(src: Tensor, options: StackEncoderForwardOptions = {}): Tensor | { output: Tensor; weights: Tensor[] } {
    return runEncoder(
      "TransformerEncoder.forward",
      this,
      this.layers,
      this.norm,
      src,
      options,
      ["mask", "srcKeyPaddingMask", "isCausal", "cache", "needWeights", "globalTokens"],
      options,
    );
  }
}

/** torch.nn.TransformerDecoder: layers.{i}.* and, with `norm`, norm.*. */
export class TransformerDecoder extends Stack<TransformerDecoderLayer> {
  constructor(options: StackOptions) {
    super("TransformerDecoder", options, (o) => new TransformerDecoderLayer(o));
  }

  forward(tgt: Tensor, memory: Tensor, options: DecoderForwardOptions = {}): Tensor {
    return runDecoder("TransformerDecoder.forward", this, this.layers, this.norm, tgt, memory, options);
  }
}

// [B, L, E] or [L, E] -> B, L, and whether a batch dimension was given
function sequence(name: string, x: unknown, E: number) {
  const t = checkTensor(name, x);
  const s = t.shape;
  if ((s.length !== 3 && s.length !== 2) || s[s.length - 1] !== E) {
    throw new ShapeError(`${name}: expected [B, L, ${E}] or [L, ${E}], got ${fmt(s)}`);
  }
  return { t, B: s.length === 3 ? s[0]! : 1, L: s[s.length - 2]!, batched: s.length === 3 };
}

// `causal` and `mask`: the option that makes the self-attention causal and its value, the name of a mask given to it
function checkCache(owner: object, cache: unknown, causal: [string, boolean], mask: string | undefined, B: number): KVCache | undefined {
  if (cache === undefined) return undefined;
  if (!(cache instanceof KVCache)) throw new ArgumentError(`cache: expected a KVCache, got ${describe(cache)}`);
  if (!causal[1]) throw new ArgumentError(`${causal[0]}: expected true with a cache (decoding is causal self-attention), got false`);
  if (mask) throw new ArgumentError(`${mask}: not together with a cache`);
  cache.check(owner, B);
  return cache;
}

// a mask read once; without a batch dimension, given one
function maskOf(name: string, mask: unknown, batched: boolean): Snapshot<Float32Array | Uint8Array> | undefined {
  if (mask === undefined || mask === null) return undefined;
  const m = checkMask(name, mask);
  return batched ? m : { data: m.data, shape: [1, ...m.shape] };
}

function runEncoder(
  fn: string,
  owner: Module,
  layers: TransformerEncoderLayer[],
  norm: LayerNorm | null,
  src: Tensor,
  given: StackEncoderForwardOptions,
  known: string[],
  options: object,
): Tensor | { output: Tensor; weights: Tensor[] } {
  // every caller object is read once, first; then the state check, so a getter cannot dispose the module under us
  checkOptions(`${fn} options`, options, known);
  const o = { ...given };
  const E = layers[0]!.dModel;
  const H = layers[0]!.nhead;
  const { t, B, L, batched } = sequence("src", src, E);
  const attnMask = o.mask === undefined || o.mask === null ? undefined : checkMask("mask", o.mask);
  const padding = maskOf("srcKeyPaddingMask", o.srcKeyPaddingMask, batched);
  owner.assertReady();
  const isCausal = optionBool(fn, "isCausal", o.isCausal, false);
  const needWeights = optionBool(fn, "needWeights", o.needWeights, false);
  const cache = checkCache(owner, o.cache, ["isCausal", isCausal], attnMask ? "mask" : padding ? "srcKeyPaddingMask" : undefined, B);
  const mask = mhaMask({ attn: "mask", padding: "srcKeyPaddingMask" }, attnMask, padding, B, H, L, L);
  const Lk = L + (cache?.length ?? 0);
  const global = layers.map((l) =>
    l.selfAttn.checkCall({ masked: !!mask, causal: isCausal && !attnMask, needWeights, Lq: L, Lk: L, globalTokens: o.globalTokens, cache }),
  )[0]!;
  const shape = batched ? [B, H, L, Lk] : [H, L, Lk];
  if (B * L === 0) {
    const output = { data: new Float32Array(0), shape: [...t.shape] };
    return needWeights ? { output, weights: layers.map(() => ({ data: new Float32Array(0), shape })) } : output;
  }
  const { heap } = runtime();
  const weightBytes = needWeights ? layers.length * 4 * B * H * L * Lk : 0;
  heap.need(fn, 4 * (t.data.length + (mask?.data.length ?? 0)) + weightBytes + layers[0]!.footprint(B, L, Lk));
  cache?.begin(
    owner,
    B,
    layers.map((l) => l.selfAttn.cacheLayer()),
    L,
  );
  const result = withScope((ctx) => {
    const x = ctx.scope.put(t.data);
    const placed = mask && { at: ctx.scope.put(mask.data), info: mask };
    const weights = layers.map(() => (needWeights ? ctx.scope.alloc(4 * B * H * L * Lk) : 0));
    layers.forEach((layer, i) => layer.run(ctx, x, B, L, placed, isCausal && !attnMask, cache, weights[i]!, global));
    norm?.run(ctx, x, x, B * L);
    const output = { data: ctx.heap.f32(x, t.data.length).slice(), shape: [...t.shape] };
    if (!needWeights) return output;
    return { output, weights: weights.map((w) => ({ data: ctx.heap.f32(w, B * H * L * Lk).slice(), shape })) };
  });
  cache?.commit(owner, B, L);
  return result;
}

function runDecoder(
  fn: string,
  owner: Module,
  layers: TransformerDecoderLayer[],
  norm: LayerNorm | null,
  tgt: Tensor,
  memory: Tensor,
  options: DecoderForwardOptions,
): Tensor {
  const o = checkOptions(`${fn} options`, options, ["tgtMask", "memoryMask", "tgtKeyPaddingMask", "memoryKeyPaddingMask", "tgtIsCausal", "cache"]);
  const E = layers[0]!.dModel;
  const H = layers[0]!.nhead;
  const x = sequence("tgt", tgt, E);
  const m = memory === tgt ? { ...x } : sequence("memory", memory, E);
  const tgtMask = o.tgtMask === undefined || o.tgtMask === null ? undefined : checkMask("tgtMask", o.tgtMask);
  const memoryMask = o.memoryMask === undefined || o.memoryMask === null ? undefined : checkMask("memoryMask", o.memoryMask);
  const tgtPadding = maskOf("tgtKeyPaddingMask", o.tgtKeyPaddingMask, x.batched);
  const memoryPadding = maskOf("memoryKeyPaddingMask", o.memoryKeyPaddingMask, x.batched);
  owner.assertReady();
  if (m.batched !== x.batched || m.B !== x.B)
    throw new ShapeError(`memory: expected a batch of ${x.B} like tgt ${fmt(x.t.shape)}, got ${fmt(m.t.shape)}`);
  const { B } = x;
  const isCausal = optionBool(fn, "tgtIsCausal", o.tgtIsCausal, false);
  const cache = checkCache(owner, o.cache, ["tgtIsCausal", isCausal], tgtMask ? "tgtMask" : tgtPadding ? "tgtKeyPaddingMask" : undefined, B);
  const selfMask = mhaMask({ attn: "tgtMask", padding: "tgtKeyPaddingMask" }, tgtMask, tgtPadding, B, H, x.L, x.L);
  const memMask = mhaMask({ attn: "memoryMask", padding: "memoryKeyPaddingMask" }, memoryMask, memoryPadding, B, H, x.L, m.L);
  for (const l of layers) l.selfAttn.checkCall({ masked: !!selfMask, causal: isCausal && !tgtMask, needWeights: false, Lq: x.L, Lk: x.L, cache });
  if (B * x.L === 0) return { data: new Float32Array(0), shape: [...x.t.shape] };
  const { heap } = runtime();
  const Lk = x.L + (cache?.length ?? 0);
  const layer = layers[0]!;
  heap.need(
    fn,
    4 * (x.t.data.length + m.t.data.length + (selfMask?.data.length ?? 0) + (memMask?.data.length ?? 0)) + layer.footprint(B, x.L, Math.max(Lk, m.L)),
  );
  cache?.begin(
    owner,
    B,
    layers.map((l) => l.selfAttn.cacheLayer()),
    x.L,
  );
  const result = withScope((ctx) => {
    const at = ctx.scope.put(x.t.data);
    const mem = place(ctx.scope, m.t);
    const placeMask = (k: typeof selfMask) => k && { at: ctx.scope.put(k.data), info: k };
    const sm = placeMask(selfMask);
    const mm = placeMask(memMask);
    for (const l of layers) l.run(ctx, at, mem, B, x.L, m.L, sm, mm, isCausal && !tgtMask, cache);
    norm?.run(ctx, at, at, B * x.L);
    return { data: ctx.heap.f32(at, x.t.data.length).slice(), shape: [...x.t.shape] };
  });
  cache?.commit(owner, B, x.L);
  return result;
}
