// The self-attention of Llama-style decoder layers (Hugging Face's LlamaAttention and its
// Mistral, Qwen2, Qwen3 and Gemma 2 variants): separate q/k/v/o projections, grouped-query heads,
// optional per-head q/k RMSNorm (Qwen3), RoPE from a shared cos/sin table at each row's own
// position, causal attention with an optional sliding window and logit soft-capping, over the
// keys each sequence has (its runs of cached keys and the new ones), never over padding.
import { type Features, readVariant } from "./features.js";
import type { KeyRun } from "./decoder-cache.js";
import { Linear } from "./linear.js";
import { type Ctx, Module, type Param, nested, prefixed } from "./module.js";
import { RMSNorm } from "./rmsnorm.js";
import { attention } from "./route.js";
import { runtime } from "./init.js";
import type { Tensor } from "./tensor.js";
import { KvFormat } from "./enums.js";
import { storedBytes } from "./heads.js";

/** @internal what every layer of one forward shares */
export interface Step {
  B: number;
  /** new rows (columns) per sequence */
  L: number;
  /** i32 [B * L] in WebAssembly memory: each row's RoPE position */
  positions: number;
  /** the RoPE table, covering every position of `positions` */
  cos: number;
  sin: number;
  /** the position of query row 0 of each sequence (negative under leading padding) */
  qpos0: readonly number[];
  /**
   * The runs of keys sequence b reads in `layer`, once the new rows' keys and values are at K and V
   * ([B * L, kvDim], RoPE applied): a cache stores the real ones first.
   */
  runs(layer: number, b: number, K: number, V: number): KeyRun[];
  /** When the runs of `layer` are a cache's stored rows (f16, q8): their format and row bytes. */
  stored?: (layer: number) => { format: KvFormat; rowBytes: number };
  /** When set, each layer writes the attention of each sequence's last row here (CausalLM.forward's `attention`). */
  lastRow?: LastRowAttention;
}

/**
 * @internal Where the probabilities of each sequence's last query row go, per layer and head:
 * `data[((b * layers + layer) * Hq + h) * columns + pads[b] + t]` for the key at position t (a
 * sequence's column is its padding plus its position); keys it does not see stay 0.
 */
export interface LastRowAttention {
  data: Float32Array;
  layers: number;
  columns: number;
  pads: Int32Array;
}

// what one kernel pass over run j gave the last rows: weights [B, Hq, Lk] and, when the keys
// came in several passes, each row's softmax (max, sum) [B, Hq, 2] to rescale them by
interface LastRowPass {
  weights: Float32Array;
  Lk: number;
  stats: Float32Array | null;
}

export interface DecoderAttentionOptions {
  hiddenSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Biases on q_proj, k_proj, v_proj (Qwen2; Llama's attention_bias). */
  qkvBias: boolean;
  /** Bias on o_proj (Llama's attention_bias). */
  oBias: boolean;
  /** Qwen3: RMSNorm over each head of queries and keys, before RoPE (q_norm, k_norm). */
  qkNorm: boolean;
  rmsNormEps: number;
  /** Gemma's (1 + weight) RMSNorm. */
  unitOffset: boolean;
  /** The w most recent keys, the query's own included; null: all. */
  slidingWindow: number | null;
  /** Scores become softcap * tanh(score / softcap) (Gemma 2); 0: none. */
  softcap: number;
  /** The scores' factor: headDim ** -0.5, Gemma 2's query_pre_attn_scalar ** -0.5. */
  scale: number;
  /** Learned attention sinks (gpt-oss): self_attn.sinks [numHeads], one logit per head in each row's softmax denominator. */
  sinks?: boolean;
}

/** @internal one decoder layer's self_attn: q_proj, k_proj, v_proj, o_proj (and q_norm, k_norm) */
export class DecoderAttention extends Module {
  readonly o: Readonly<DecoderAttentionOptions>;
  readonly #q: Linear;
  readonly #k: Linear;
  readonly #v: Linear;
  readonly #out: Linear;
  readonly #qNorm: RMSNorm | null;
  readonly #kNorm: RMSNorm | null;
  readonly #features: Features;
  // the learned sink logits once loaded, [numHeads] (a few floats: they stay in JavaScript)
  #sinks: Float32Array | null;

  constructor(o: DecoderAttentionOptions) {
    super();
    this.o = Object.freeze({ ...o });
    const { hiddenSize: H, numHeads: Hq, numKvHeads: Hk, headDim: hd } = o;
    this.#q = new Linear({ inFeatures: H, outFeatures: Hq * hd, bias: o.qkvBias });
    this.#k = new Linear({ inFeatures: H, outFeatures: Hk * hd, bias: o.qkvBias });
    this.#v = new Linear({ inFeatures: H, outFeatures: Hk * hd, bias: o.qkvBias });
    this.#out = new Linear({ inFeatures: Hq * hd, outFeatures: H, bias: o.oBias });
    const norm = () => new RMSNorm({ normalizedShape: hd, eps: o.rmsNormEps, unitOffset: o.unitOffset });
    this.#qNorm = o.qkNorm ? norm() : null;
    this.#kNorm = o.qkNorm ? norm() : null;
    const variant = readVariant({ window: o.slidingWindow === null ? undefined : [o.slidingWindow - 1, 0], softcap: o.softcap || undefined }, Hq, hd);
    this.#features = { ...variant.features, causal: true, scale: Math.fround(o.scale) };
    this.#sinks = o.sinks ? new Float32Array(0) : null;
  }

  protected override children(): Module[] {
    return [this.#q, this.#k, this.#v, this.#out, ...(this.#qNorm ? [this.#qNorm, this.#kNorm!] : [])];
  }

  params(): Param[] {
    return [
      ...prefixed("q_proj.", this.#q.params()),
      ...prefixed("k_proj.", this.#k.params()),
      ...prefixed("v_proj.", this.#v.params()),
      ...prefixed("o_proj.", this.#out.params()),
      ...(this.#qNorm ? [...prefixed("q_norm.", this.#qNorm.params()), ...prefixed("k_norm.", this.#kNorm!.params())] : []),
      ...(this.#sinks ? [{ key: "sinks", shape: [this.o.numHeads], load: (t: Tensor) => this.#loadSinks(t) }] : []),
    ];
  }

  #loadSinks(t: Tensor): void {
    this.#sinks = Float32Array.from(t.data);
  }

  /** @internal bytes of scratch run() takes at its peak for M rows and at most Lk keys per sequence */
  footprint(M: number, Lk: number, B: number, lastRow = false): number {
    const { kernels: K, pool } = runtime();
    const { numHeads: Hq, numKvHeads: Hk, headDim: hd } = this.o;
    // with lastRow: the last rows' queries and outputs, their weights and stats
    const extra = lastRow ? 4 * B * Hq * (2 * hd + Lk + 4) + 4096 : 0;
    // Q, K, V, the output and a second pass with its stats (sequences that share a prefix)
    return (
      4 * M * (3 * Hq * hd + 2 * Hk * hd) +
      16 * B * Hq * M +
      pool.size * (K.attention_f32_workspace(Lk, hd, hd, KvFormat.Q8, true) + K.gemm_f32_workspace()) +
      4096 +
      extra
    );
  }

  /** @internal out (M, hidden) = o_proj(attention of x (M, hidden)) + residual (0: none; may be out) */
  run(outer: Ctx, out: number, x: number, step: Step, layer: number, residual = 0): void {
    nested(outer, (ctx) => {
      const { K, scope } = ctx;
      const { numHeads: Hq, numKvHeads: Hk, headDim: hd } = this.o;
      const { B, L } = step;
      const M = B * L;
      const [qDim, kvDim] = [Hq * hd, Hk * hd];
      // 1. projections [M, heads * hd]; Qwen3 normalises each head; RoPE at each row's position
      const Q = scope.alloc(4 * M * qDim);
      const Kn = scope.alloc(4 * M * kvDim);
      const Vn = scope.alloc(4 * M * kvDim);
      this.#q.run(ctx, Q, x, M);
      this.#k.run(ctx, Kn, x, M);
      this.#v.run(ctx, Vn, x, M);
      if (this.#qNorm) {
        this.#qNorm.run(ctx, Q, Q, M * Hq);
        this.#kNorm!.run(ctx, Kn, Kn, M * Hk);
      }
      const half = hd / 2;
      K.rope_f32_table(Q, M, L, qDim, Hq, hd, half, step.positions, 0, step.cos, step.sin, false);
      K.rope_f32_table(Kn, M, L, kvDim, Hk, hd, half, step.positions, 0, step.cos, step.sin, false);
      // 2. the keys each sequence reads (the cache stores the new ones first), then attention
      const runs = Array.from({ length: B }, (_, b) => step.runs(layer, b, Kn, Vn));
      const stored = step.stored?.(layer);
      const attn = scope.alloc(4 * M * qDim);
      const features = this.#sinks ? { ...this.#features, sinks: Array.from(this.#sinks) } : this.#features;
      const sink = step.lastRow;
      if (!sink) attendRuns(ctx, features, { B, L, Hq, Hk, hd, Q, out: attn, runs, qpos0: step.qpos0, stored });
      else {
        // the probabilities of each sequence's last row, kept from each pass over its runs of keys
        const passes: LastRowPass[] = [];
        const collect = (weights: Float32Array, Lk: number, stats: Float32Array | null) =>
          passes.push({ weights: weights.slice(), Lk, stats: stats?.slice() ?? null });
        if (L === 1) {
          // decoding: the new rows are the last rows; their weights come with their outputs
          attendRuns(ctx, features, { B, L, Hq, Hk, hd, Q, out: attn, runs, qpos0: step.qpos0, stored }, collect);
        } else {
          // prefill: every row without weights, then the last rows once more, alone, with them
          attendRuns(ctx, features, { B, L, Hq, Hk, hd, Q, out: attn, runs, qpos0: step.qpos0, stored });
          const last = scope.alloc(4 * B * qDim);
          for (let b = 0; b < B; b++) ctx.heap.f32(last + 4 * b * qDim, qDim).set(ctx.heap.f32(Q + 4 * (b * L + L - 1) * qDim, qDim));
          const qpos0 = step.qpos0.map((p) => p + L - 1);
          attendRuns(ctx, features, { B, L: 1, Hq, Hk, hd, Q: last, out: scope.alloc(4 * B * qDim), runs, qpos0, stored }, collect);
        }
        writeLastRows(sink, layer, Hq, runs, passes);
      }
      // 3. out = o_proj(attention) + residual
      this.#out.run(ctx, out, attn, M, residual);
    });
  }
}

/**
 * Causal attention of every sequence's L queries (rows of Q [B * L, Hq * hd]) over its runs of
 * keys, into out [B * L, Hq * hd]. One kernel pass per run index, each sequence's run j read in
 * place with its own diagonal; the passes' softmaxes are merged row by row. A sequence without
 * keys gets zeros.
 */
function attendRuns(
  ctx: Ctx,
  f: Features,
  a: {
    B: number;
    L: number;
    Hq: number;
    Hk: number;
    hd: number;
    Q: number;
    out: number;
    runs: KeyRun[][];
    qpos0: readonly number[];
    stored: { format: KvFormat; rowBytes: number } | undefined;
  },
  collect?: (weights: Float32Array, Lk: number, stats: Float32Array | null) => void,
): void {
  const { K, scope, heap } = ctx;
  const { B, L, Hq, Hk, hd, Q, runs } = a;
  const qDim = Hq * hd;
  const kvDim = Hk * hd;
  const passes = Math.max(0, ...runs.map((r) => r.length));
  if (passes === 0) {
    heap.f32(a.out, B * L * qDim).fill(0);
    return;
  }
  const rows = B * Hq * L;
  const stats = passes > 1 ? scope.alloc(8 * rows) : 0;
  const stats2 = passes > 1 ? scope.alloc(8 * rows) : 0;
  const out2 = passes > 1 ? scope.alloc(4 * B * L * qDim) : 0;
  // with collect: one buffer for every pass's weights [B, Hq, L, Lk], read after each pass
  const maxLk = Math.max(0, ...runs.flatMap((r) => r.map((run) => run.n)));
  const weights = collect ? scope.alloc(4 * Math.max(1, rows * maxLk)) : 0;
  for (let j = 0; j < passes; j++) {
    const target = j === 0 ? a.out : out2;
    const run = (b: number) => runs[b]![j];
    const Lk = Math.max(...runs.map((r) => r[j]?.n ?? 0));
    // rows of float32 keys, or of a cache's stored ones (strides count stored values; a q8 row's
    // scales follow its kvDim values, one per head)
    const el = a.stored ? storedBytes(a.stored.format) : 4;
    const kvRow = a.stored?.rowBytes ?? 4 * kvDim;
    const layout = {
      B,
      Hq,
      Hk,
      Lq: L,
      Lk,
      E: hd,
      Ev: hd,
      q: (b: number, h: number) => Q + 4 * (b * L * qDim + h * hd),
      k: (b: number, g: number) => (run(b)?.k ?? Q) + el * g * hd,
      v: (b: number, g: number) => (run(b)?.v ?? Q) + el * g * hd,
      out: (b: number, h: number) => target + 4 * (b * L * qDim + h * hd),
      qStride: qDim,
      kStride: kvRow / el,
      vStride: kvRow / el,
      outStride: qDim,
    };
    const kv = a.stored && {
      format: a.stored.format,
      kScale: (b: number, g: number) => (run(b)?.k ?? Q) + kvDim + 4 * g,
      vScale: (b: number, g: number) => (run(b)?.v ?? Q) + kvDim + 4 * g,
    };
    // run j of sequence b holds positions pos0..: query i (at position qpos0 + i) sees key t when t <= i + qpos0 - pos0
    const keyRange = (b: number) => {
      const r = run(b);
      return r ? ([0, r.n, a.qpos0[b]! - r.pos0] as const) : ([0, 0, 0] as const);
    };
    // a sink joins the first pass's softmax only: the merges of later passes must not count it again
    attention(ctx, layout, j === 0 ? f : { ...f, sinks: null }, {
      diag: 0,
      mask: null,
      weights,
      keyRange,
      stats: passes > 1 ? (j === 0 ? stats : stats2) : 0,
      kv,
    });
    if (collect) collect(heap.f32(weights, rows * Lk), Lk, passes > 1 ? heap.f32(j === 0 ? stats : stats2, 2 * rows) : null);
    if (j === 0) continue;
    for (let b = 0; b < B; b++) {
      if (!run(b)) continue;
      for (let h = 0; h < Hq; h++) {
        const n = (b * Hq + h) * L;
        const at = 4 * (b * L * qDim + h * hd);
        K.attention_f32_merge(a.out + at, qDim, stats + 8 * n, out2 + at, qDim, stats2 + 8 * n, L, hd);
      }
      if (j < passes - 1) mergeStats(heap.f32(stats + 8 * b * Hq * L, 2 * Hq * L), heap.f32(stats2 + 8 * b * Hq * L, 2 * Hq * L));
    }
  }
}

// (max, sum) of the softmax over both passes' keys, into s1, for a further merge
function mergeStats(s1: Float32Array, s2: Float32Array): void {
  for (let i = 0; i < s1.length; i += 2) {
    const [m1, l1, m2, l2] = [s1[i]!, s1[i + 1]!, s2[i]!, s2[i + 1]!];
    if (l2 === 0) continue;
    if (l1 === 0) {
      s1[i] = m2;
      s1[i + 1] = l2;
      continue;
    }
    const m = Math.max(m1, m2);
    s1[i] = m;
    s1[i + 1] = l1 * Math.exp(m1 - m) + l2 * Math.exp(m2 - m);
  }
}

/**
 * Writes one layer's last-row probabilities into `sink` from each pass over a run of keys: a
 * pass's weights are a softmax over its own keys, rescaled by l_j e^(m_j - M) / sum_i l_i e^(m_i - M)
 * when there were several (the merge the outputs get).
 */
function writeLastRows(sink: LastRowAttention, layer: number, Hq: number, runs: KeyRun[][], passes: LastRowPass[]): void {
  const factors = new Float64Array(passes.length);
  runs.forEach((seqRuns, b) => {
    for (let h = 0; h < Hq; h++) {
      const row = b * Hq + h;
      // each pass's (max, sum) for this row; a pass without stats was the only one
      const stat = (p: LastRowPass) => ({ m: p.stats?.[2 * row] ?? 0, l: p.stats?.[2 * row + 1] ?? 1 });
      let big = -Infinity;
      passes.forEach((p, j) => {
        const { m, l } = stat(p);
        if (seqRuns[j] && l > 0) big = Math.max(big, m);
      });
      let total = 0;
      passes.forEach((p, j) => {
        const { m, l } = stat(p);
        factors[j] = seqRuns[j] && l > 0 ? (p.stats ? l * Math.exp(m - big) : 1) : 0;
        total += factors[j] ?? 0;
      });
      const at = ((b * sink.layers + layer) * Hq + h) * sink.columns + (sink.pads[b] ?? 0);
      passes.forEach(({ weights, Lk }, j) => {
        const run = seqRuns[j];
        const f = factors[j] ?? 0;
        if (!run || f === 0) return;
        const scale = f / total;
        for (let t = 0; t < run.n; t++) sink.data[at + run.pos0 + t] = (weights[row * Lk + t] ?? 0) * scale;
      });
    }
  });
}
