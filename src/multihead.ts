import { optionBool, positiveInt } from "./check.js";
import { type AttentionVariant, type Variant, callGlobals, readVariant, variantCall } from "./features.js";
import { attention } from "./route.js";
import { type CacheLayer, KVCache } from "./cache.js";
import { place } from "./resident.js";
import { ArgumentError, ShapeError } from "./errors.js";
import { Linear } from "./linear.js";
import { moduleRule } from "./linear-attention.js";
import { runtime } from "./init.js";
import { type KernelMask, mhaMask } from "./mask.js";
import { type Ctx, Module, type Param, nested, prefixed, withScope } from "./module.js";
import { type BoolTensor, type Snapshot, type Tensor, checkMask, checkOptions, checkTensor, describe, fmt, resultArray } from "./tensor.js";
import { KvFormat } from "./enums.js";
import { storedBytes } from "./heads.js";

export interface MultiHeadAttentionOptions {
  /** Features of the queries and of the output (torch's embed_dim). */
  embedDim: number;
  /** Attention heads; must divide embedDim. */
  numHeads: number;
  /** Features of key inputs; default embedDim. */
  kdim?: number;
  /** Features of value inputs; default embedDim. */
  vdim?: number;
  /** Biases in the projections; default true. */
  bias?: boolean;
  /** Key/value heads for grouped-query (1: multi-query) attention; default numHeads. Not in torch. */
  numKvHeads?: number;
  /** Sliding windows, ALiBi, RoPE, soft-capping, block sparsity: see AttentionVariant. Not in torch. */
  attention?: AttentionVariant;
  /**
   * Learned attention sinks (gpt-oss): one logit per head, the state dict's `sinks` [numHeads],
   * joining each row's softmax denominator without a value. Default false. Not in torch.
   */
  sinks?: boolean;
}

export interface MultiHeadAttentionForwardOptions {
  /** [B, Lk]: boolean true = this key is padding, ignore it; or float, added to the scores. */
  keyPaddingMask?: Tensor | BoolTensor;
  /** [Lq, Lk] or [B * numHeads, Lq, Lk]: boolean true = NOT allowed (torch's MHA convention); or float, added. */
  attnMask?: Tensor | BoolTensor;
  /** Return the attention weights (default true, as torch). */
  needWeights?: boolean;
  /** Average the weights over heads: [B, Lq, Lk] (default true); else per head [B, H, Lq, Lk]. */
  averageAttnWeights?: boolean;
  /** Causal self-attention: query i sees keys 0..i. With attnMask given too, attnMask is used (torch's hint). */
  isCausal?: boolean;
  /** Decode token by token: causal self-attention whose past keys and values live in the cache. */
  cache?: KVCache;
  /** Longformer's global positions (self-attention, with `attention.window`); see scaledDotProductAttention. */
  globalTokens?: readonly number[];
}

/** @internal one attention call on data already in wasm memory */
export interface Attend {
  B: number;
  Lq: number;
  Lk: number;
  q: number; // [B, Lq, embedDim]
  k: number; // [B, Lk, kdim]
  v: number; // [B, Lk, vdim]
  out: number; // [B, Lq, embedDim] = out_proj(attention) + residual
  residual: number;
  mask: { at: number; info: KernelMask } | null;
  causal: boolean;
  weights: number; // 0 or [B, numHeads, Lq, Lk]
  cache?: KVCache;
  global?: number[] | null;
}

const FORWARD_OPTIONS: (keyof MultiHeadAttentionForwardOptions)[] = [
  "keyPaddingMask",
  "attnMask",
  "needWeights",
  "averageAttnWeights",
  "isCausal",
  "cache",
  "globalTokens",
];

/**
 * torch.nn.MultiheadAttention(batch_first=True). State dict as torch: in_proj_weight [E + 2 kvDim, E]
 * and in_proj_bias (when kdim = vdim = embedDim), else q_proj_weight, k_proj_weight, v_proj_weight;
 * out_proj.weight, out_proj.bias. kvDim = numKvHeads * embedDim / numHeads (= E without GQA).
 */
export class MultiHeadAttention extends Module {
  readonly embedDim: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly kdim: number;
  readonly vdim: number;
  readonly bias: boolean;
  readonly headDim: number;
  readonly #q: Linear;
  readonly #k: Linear;
  readonly #v: Linear;
  readonly #out: Linear;
  readonly #variant: Variant;
  // the learned sink logits, [numHeads] once loaded (a few floats: they stay in JavaScript)
  #sinks: Float32Array | null;

  constructor(options: MultiHeadAttentionOptions) {
    super();
    checkOptions("MultiHeadAttention options", options, ["embedDim", "numHeads", "kdim", "vdim", "bias", "numKvHeads", "attention", "sinks"]);
    const who = "MultiHeadAttention";
    this.embedDim = positiveInt(who, "embedDim", options.embedDim);
    this.numHeads = positiveInt(who, "numHeads", options.numHeads);
    this.numKvHeads = positiveInt(who, "numKvHeads", options.numKvHeads ?? this.numHeads);
    this.kdim = positiveInt(who, "kdim", options.kdim ?? this.embedDim);
    this.vdim = positiveInt(who, "vdim", options.vdim ?? this.embedDim);
    this.bias = optionBool(who, "bias", options.bias, true);
    this.#sinks = optionBool(who, "sinks", options.sinks, false) ? new Float32Array(0) : null;
    if (this.#sinks && options.attention?.linear) throw new ArgumentError(`${who} sinks: not together with linear attention`);
    if (this.embedDim % this.numHeads) {
      throw new ArgumentError(`${who} embedDim: expected a multiple of numHeads (${this.numHeads}), got ${describe(this.embedDim)}`);
    }
    if (this.numHeads % this.numKvHeads) {
      throw new ArgumentError(`${who} numHeads: expected a multiple of numKvHeads (${this.numKvHeads}), got ${describe(this.numHeads)}`);
    }
    this.headDim = this.embedDim / this.numHeads;
    this.#variant = readVariant(options.attention, this.numHeads, this.headDim);
    const kvDim = this.numKvHeads * this.headDim;
    this.#q = new Linear({ inFeatures: this.embedDim, outFeatures: this.embedDim, bias: this.bias });
    this.#k = new Linear({ inFeatures: this.kdim, outFeatures: kvDim, bias: this.bias });
    this.#v = new Linear({ inFeatures: this.vdim, outFeatures: kvDim, bias: this.bias });
    this.#out = new Linear({ inFeatures: this.embedDim, outFeatures: this.embedDim, bias: this.bias });
  }

  protected override children(): Module[] {
    return [this.#q, this.#k, this.#v, this.#out];
  }

  params(): Param[] {
    const E = this.embedDim;
    const kvDim = this.numKvHeads * this.headDim;
    // the packed in_proj's rows: q 0 .. qEnd - 1, then k to kEnd - 1, then v to vEnd - 1
    const [qEnd, kEnd, vEnd] = [E, E + kvDim, E + 2 * kvDim];
    const ps: Param[] = [];
    if (this.kdim === E && this.vdim === E) {
      ps.push({
        key: "in_proj_weight",
        shape: [E + 2 * kvDim, E],
        load: (t) => {
          this.#q.setWeight(t.data.subarray(0, qEnd * E));
          this.#k.setWeight(t.data.subarray(qEnd * E, kEnd * E));
          this.#v.setWeight(t.data.subarray(kEnd * E, vEnd * E));
        },
      });
    } else {
      ps.push(
        { key: "q_proj_weight", shape: [E, E], load: (t) => this.#q.setWeight(t.data) },
        { key: "k_proj_weight", shape: [kvDim, this.kdim], load: (t) => this.#k.setWeight(t.data) },
        { key: "v_proj_weight", shape: [kvDim, this.vdim], load: (t) => this.#v.setWeight(t.data) },
      );
    }
    if (this.bias) {
      ps.push({
        key: "in_proj_bias",
        shape: [E + 2 * kvDim],
        load: (t) => {
          this.#q.setBias(t.data.subarray(0, qEnd));
          this.#k.setBias(t.data.subarray(qEnd, kEnd));
          this.#v.setBias(t.data.subarray(kEnd, vEnd));
        },
      });
    }
    if (this.#sinks)
      ps.push({
        key: "sinks",
        shape: [this.numHeads],
        load: (t) => {
          this.#sinks = Float32Array.from(t.data);
        },
      });
    return [...ps, ...prefixed("out_proj.", this.#out.params())];
  }

  /**
   * query [B, Lq, embedDim], key [B, Lk, kdim], value [B, Lk, vdim] (or all without B) ->
   * { output [B, Lq, embedDim], weights [B, Lq, Lk] averaged, [B, H, Lq, Lk] per head, or null }.
   * Boolean masks here mean true = NOT allowed, the opposite of scaledDotProductAttention.
   * A query whose every key is masked gets zeros, not NaN.
   */
  forward(query: Tensor, key: Tensor, value: Tensor, options: MultiHeadAttentionForwardOptions = {}): { output: Tensor; weights: Tensor | null } {
    // every caller object is read once, first: a getter that disposes this module runs before the check below
    const o = checkOptions("MultiHeadAttention.forward options", options, FORWARD_OPTIONS);
    const q = checkTensor("query", query);
    const k = key === query ? q : checkTensor("key", key);
    const v = value === query ? q : value === key ? k : checkTensor("value", value);
    const attnMask = o.attnMask === undefined || o.attnMask === null ? undefined : checkMask("attnMask", o.attnMask);
    const paddingMask = o.keyPaddingMask === undefined || o.keyPaddingMask === null ? undefined : checkMask("keyPaddingMask", o.keyPaddingMask);
    this.assertReady();
    const batched = q.shape.length === 3;
    if (q.shape.length !== 3 && q.shape.length !== 2)
      throw new ShapeError(`query: expected [B, Lq, ${this.embedDim}] or [Lq, ${this.embedDim}], got ${fmt(q.shape)}`);
    const [B, Lq, Eq] = (batched ? q.shape : [1, ...q.shape]) as [number, number, number];
    const expect = (name: string, t: Snapshot, features: number) => {
      const [b, l, f] = batched ? t.shape : [1, ...t.shape];
      if (t.shape.length !== q.shape.length || b !== B || f !== features) {
        throw new ShapeError(
          `${name}: expected ${fmt(batched ? [B, l ?? 0, features] : [l ?? 0, features])} to go with query ${fmt(q.shape)}, got ${fmt(t.shape)}`,
        );
      }
      return l!;
    };
    if (Eq !== this.embedDim) throw new ShapeError(`query: expected [..., ${this.embedDim}] (embedDim), got ${fmt(q.shape)}`);
    const Lk = expect("key", k, this.kdim);
    if (expect("value", v, this.vdim) !== Lk) throw new ShapeError(`value: expected ${Lk} positions like key ${fmt(k.shape)}, got ${fmt(v.shape)}`);
    const needWeights = optionBool("MultiHeadAttention.forward", "needWeights", o.needWeights, !this.#variant.linear);
    const average = optionBool("MultiHeadAttention.forward", "averageAttnWeights", o.averageAttnWeights, true);
    const isCausal = optionBool("MultiHeadAttention.forward", "isCausal", o.isCausal, false);
    const cache = o.cache;
    if (cache !== undefined) {
      if (!(cache instanceof KVCache)) throw new ArgumentError(`cache: expected a KVCache, got ${describe(cache)}`);
      if (!isCausal) throw new ArgumentError("isCausal: expected true with a cache (decoding is causal), got false");
      if (query !== key || key !== value) {
        throw new ArgumentError(
          `${query !== key ? "key" : "value"}: expected the query tensor itself with a cache (decoding is self-attention), got another tensor`,
        );
      }
      if (attnMask || paddingMask) throw new ArgumentError(`${attnMask ? "attnMask" : "keyPaddingMask"}: not together with a cache`);
      cache.check(this, B);
    }
    const padding = paddingMask && !batched ? { data: paddingMask.data, shape: [1, ...paddingMask.shape] } : paddingMask;
    const mask = mhaMask({ attn: "attnMask", padding: "keyPaddingMask" }, attnMask, padding, B, this.numHeads, Lq, Lk);
    const LkAll = Lk + (cache?.length ?? 0);
    const H = this.numHeads;
    const global = this.checkCall({ masked: !!mask, causal: isCausal, needWeights, Lq, Lk, globalTokens: o.globalTokens, cache });
    const lead = batched ? [B] : [];
    if (B * Lq === 0) {
      const weights = !needWeights ? null : { data: new Float32Array(0), shape: average ? [...lead, Lq, LkAll] : [...lead, H, Lq, LkAll] };
      return { output: { data: new Float32Array(0), shape: [...q.shape] }, weights };
    }
    const { heap } = runtime();
    const weightsBytes = needWeights ? 4 * B * H * Lq * LkAll : 0;
    const inputs = [q, k, v].filter((t, i, all) => all.indexOf(t) === i && t.address === undefined).reduce((n, t) => n + 4 * t.data.length, 0);
    heap.need(
      "MultiHeadAttention.forward",
      inputs + 4 * B * Lq * this.embedDim + weightsBytes + 4 * (mask?.data.length ?? 0) + this.footprint(B, Lq, LkAll),
    );
    // the results too, before any kernel runs
    const output = { data: resultArray("MultiHeadAttention.forward", B * Lq * this.embedDim), shape: [...q.shape] };
    const weightsOut = !needWeights
      ? null
      : average
        ? { data: resultArray("MultiHeadAttention.forward", B * Lq * LkAll), shape: [...lead, Lq, LkAll] }
        : { data: resultArray("MultiHeadAttention.forward", B * H * Lq * LkAll), shape: [...lead, H, Lq, LkAll] };
    if (cache) cache.begin(this, B, [this.cacheLayer()], Lq);

    withScope((ctx) => {
      const { scope } = ctx;
      const out = scope.alloc(4 * B * Lq * this.embedDim);
      const weights = needWeights ? scope.alloc(4 * B * H * Lq * LkAll) : 0;
      // self-attention passes one tensor three times: copy it in once
      const qAt = place(scope, q);
      const kAt = k === q ? qAt : place(scope, k);
      const vAt = v === q ? qAt : v === k ? kAt : place(scope, v);
      this.run(ctx, {
        B,
        Lq,
        Lk,
        q: qAt,
        k: kAt,
        v: vAt,
        out,
        residual: 0,
        mask: mask && { at: scope.put(mask.data), info: mask },
        causal: isCausal && !attnMask,
        weights,
        cache,
        global,
      });
      output.data.set(ctx.heap.f32(out, B * Lq * this.embedDim));
      if (!weightsOut) return;
      const n = Lq * LkAll;
      // the average over heads in place: batch b's mean goes where its first head was, earlier batches already read
      if (average) for (let b = 0; b < B; b++) ctx.K.mean_f32(weights + 4 * b * n, weights + 4 * b * H * n, H, n);
      weightsOut.data.set(ctx.heap.f32(weights, weightsOut.data.length));
    });
    const result = { output, weights: weightsOut };
    cache?.commit(this, B, Lq);
    return result;
  }

  /** @internal bytes of WebAssembly memory run() takes at its peak, beyond its inputs and outputs */
  footprint(B: number, Lq: number, Lk: number): number {
    const { kernels: K, pool } = runtime();
    const kvDim = this.numKvHeads * this.headDim;
    const E = this.embedDim;
    return (
      4 * (2 * B * Lq * E + 2 * B * Lk * kvDim) +
      pool.size * (K.attention_f32_workspace(Lk, this.headDim, this.headDim, KvFormat.Q8, true) + K.gemm_f32_workspace()) +
      4096
    );
  }

  /**
   * @internal what this module's variant cannot do with a call, found before anything runs; returns
   * the checked global positions
   */
  checkCall(c: {
    masked: boolean;
    causal: boolean;
    needWeights: boolean;
    Lq: number;
    Lk: number;
    globalTokens?: readonly number[];
    cache?: KVCache;
  }): number[] | null {
    if (c.cache && c.cache.dtype !== "f32") {
      const dtype = c.cache.dtype;
      if (this.#variant.linear) throw new ArgumentError(`cache: expected an "f32" cache with linear attention, got a "${dtype}" cache`);
      if (c.globalTokens) throw new ArgumentError(`cache: expected an "f32" cache with globalTokens, got a "${dtype}" cache`);
    }
    if (this.#variant.linear) {
      if (c.masked) throw new ArgumentError("MultiHeadAttention masks: not together with linear attention (isCausal is)");
      if (c.needWeights) throw new ArgumentError("needWeights: expected false with linear attention (it has no attention weights), got true");
      if (c.globalTokens) throw new ArgumentError("globalTokens: not together with linear attention");
      if (this.#variant.linear.rule !== "normalized" && (!c.causal || c.Lq !== c.Lk))
        throw new ArgumentError(
          `isCausal: expected true and as many keys as queries (linear attention by rule "${this.#variant.linear.rule}" is causal self-attention only), got ${c.causal} with ${c.Lq} queries and ${c.Lk} keys`,
        );
    }
    if (this.#sinks && c.globalTokens) throw new ArgumentError("globalTokens: not together with sinks");
    return callGlobals(c.globalTokens, this.#variant, c);
  }

  /** @internal what this module keeps in a KVCache: a row of numKvHeads heads of headDim values per token */
  cacheLayer(): CacheLayer {
    return { key: this, heads: this.numKvHeads, headDim: this.headDim };
  }

  /** @internal */
  run(outer: Ctx, a: Attend): void {
    nested(outer, (ctx) => this.#attend(ctx, a));
  }

  #attend(ctx: Ctx, a: Attend): void {
    const { scope } = ctx;
    const E = this.embedDim;
    const hd = this.headDim;
    const kvDim = this.numKvHeads * hd;
    const Q = scope.alloc(4 * a.B * a.Lq * E);
    this.#q.run(ctx, Q, a.q, a.B * a.Lq);
    const rope = this.#variant.features.rope;
    // keys and values: [B, rows, kvDim], the first Lk rows of each batch used
    let kAll: number,
      vAll: number,
      rows: number,
      past = 0;
    let stored: { rowBytes: number; format: KvFormat } | null = null;
    if (a.cache) {
      const entry = a.cache.entry(this);
      const format = a.cache.format;
      past = a.cache.length;
      rows = entry.capacity;
      // float32: projected straight into the cache; else through rows of this call, then stored
      const direct = format === KvFormat.F32;
      const newK = direct ? 0 : scope.alloc(4 * a.B * a.Lq * kvDim);
      const newV = direct ? 0 : scope.alloc(4 * a.B * a.Lq * kvDim);
      for (let b = 0; b < a.B; b++) {
        const at = (b * rows + past) * entry.rowBytes;
        const kb = direct ? entry.k + at : newK + 4 * b * a.Lq * kvDim;
        const vb = direct ? entry.v + at : newV + 4 * b * a.Lq * kvDim;
        this.#k.run(ctx, kb, a.k + 4 * b * a.Lq * this.kdim, a.Lq);
        this.#v.run(ctx, vb, a.v + 4 * b * a.Lq * this.vdim, a.Lq);
        if (rope)
          ctx.K.rope_f32(kb, a.Lq, a.Lq, kvDim, this.numKvHeads, hd, rope.rotaryDim, rope.positionOffset + past, rope.theta, rope.interleaved);
        if (direct) continue;
        a.cache.noteStored(ctx.K.kv_store_rows(entry.k + at, entry.rowBytes, kb, kvDim, a.Lq, this.numKvHeads, hd, format));
        a.cache.noteStored(ctx.K.kv_store_rows(entry.v + at, entry.rowBytes, vb, kvDim, a.Lq, this.numKvHeads, hd, format));
      }
      [kAll, vAll] = [entry.k, entry.v];
      if (!direct) stored = { rowBytes: entry.rowBytes, format: a.cache.readFormat };
    } else {
      rows = a.Lk;
      kAll = scope.alloc(4 * a.B * a.Lk * kvDim);
      vAll = scope.alloc(4 * a.B * a.Lk * kvDim);
      this.#k.run(ctx, kAll, a.k, a.B * a.Lk);
      this.#v.run(ctx, vAll, a.v, a.B * a.Lk);
      if (rope) ctx.K.rope_f32(kAll, a.B * a.Lk, a.Lk, kvDim, this.numKvHeads, hd, rope.rotaryDim, rope.positionOffset, rope.theta, rope.interleaved);
    }
    // queries continue the keys' positions (bottom-right, as when decoding with a cache)
    if (rope) ctx.K.rope_f32(Q, a.B * a.Lq, a.Lq, E, this.numHeads, hd, rope.rotaryDim, rope.positionOffset + past, rope.theta, rope.interleaved);
    const Lk = past + a.Lk;
    const attn = scope.alloc(4 * a.B * a.Lq * E);
    if (this.#variant.linear) {
      this.#linear(ctx, a, Q, kAll, vAll, rows, past, attn);
      this.#out.run(ctx, a.out, attn, a.B * a.Lq, a.residual);
      return;
    }
    // heads are column slices of [B, L, features] rows: no copies to split or merge them; a
    // stored cache's rows are rowBytes long, its stride counted in stored values
    const el = stored ? storedBytes(stored.format) : 4;
    const kvRow = stored ? stored.rowBytes : 4 * kvDim;
    const layout = {
      B: a.B,
      Hq: this.numHeads,
      Hk: this.numKvHeads,
      Lq: a.Lq,
      Lk,
      E: hd,
      Ev: hd,
      q: (b: number, h: number) => Q + 4 * (b * a.Lq * E + h * hd),
      k: (b: number, g: number) => kAll + b * rows * kvRow + el * g * hd,
      v: (b: number, g: number) => vAll + b * rows * kvRow + el * g * hd,
      out: (b: number, h: number) => attn + 4 * (b * a.Lq * E + h * hd),
      qStride: E,
      kStride: kvRow / el,
      vStride: kvRow / el,
      outStride: E,
    };
    // a q8 row's scales follow its kvDim values, one per head
    const kv = stored && {
      format: stored.format,
      kScale: (b: number, g: number) => kAll + b * rows * kvRow + kvDim + 4 * g,
      vScale: (b: number, g: number) => vAll + b * rows * kvRow + kvDim + 4 * g,
    };
    const sinks = this.#sinks && Array.from(this.#sinks);
    const features = { ...variantCall(this.#variant, a.causal, a.Lq, Lk), global: a.global ?? null, sinks };
    attention(ctx, layout, features, { diag: past, mask: a.mask, weights: a.weights, kv: kv || undefined });
    this.#out.run(ctx, a.out, attn, a.B * a.Lq, a.residual);
  }

  // linear attention per head over the projected rows; with a cache, the past keys first, then the new tokens causally
  #linear(ctx: Ctx, a: Attend, Q: number, kAll: number, vAll: number, rows: number, past: number, attn: number): void {
    const { K, scope, heap } = ctx;
    const [E, hd] = [this.embedDim, this.headDim];
    const kvDim = this.numKvHeads * hd;
    if (this.#variant.linear!.rule !== "normalized") {
      moduleRule(K, heap, scope, this.#variant.linear!, {
        B: a.B,
        Hq: this.numHeads,
        Hkv: this.numKvHeads,
        hd,
        Lq: a.Lq,
        past,
        q: Q,
        qRow: E,
        k: kAll,
        v: vAll,
        kvRow: kvDim,
        rows,
        out: attn,
      });
      return;
    }
    const { map, eps } = this.#variant.linear!;
    const state = scope.alloc(4 * (hd * hd + hd));
    const work = scope.alloc(4 * hd);
    const group = this.numHeads / this.numKvHeads;
    for (let b = 0; b < a.B; b++) {
      for (let h = 0; h < this.numHeads; h++) {
        heap.f32(state, hd * hd + hd).fill(0);
        const kb = kAll + 4 * (b * rows * kvDim + Math.floor(h / group) * hd);
        const vb = vAll + 4 * (b * rows * kvDim + Math.floor(h / group) * hd);
        const qb = Q + 4 * (b * a.Lq * E + h * hd);
        const ob = attn + 4 * (b * a.Lq * E + h * hd);
        const z = state + 4 * hd * hd;
        if (!a.causal) K.linear_attention_f32(ob, E, qb, E, kb, kvDim, vb, kvDim, state, z, work, a.Lq, past + a.Lk, hd, hd, false, map, eps);
        else {
          if (past) K.linear_attention_f32(ob, E, qb, E, kb, kvDim, vb, kvDim, state, z, work, 0, past, hd, hd, false, map, eps);
          K.linear_attention_f32(
            ob,
            E,
            qb,
            E,
            kb + 4 * past * kvDim,
            kvDim,
            vb + 4 * past * kvDim,
            kvDim,
            state,
            z,
            work,
            a.Lq,
            a.Lq,
            hd,
            hd,
            true,
            map,
            eps,
          );
        }
      }
    }
  }
}
