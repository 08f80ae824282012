import { ArgumentError, ShapeError } from "./errors.js";
import { runtime } from "./init.js";
import type { Heap, Scope } from "./memory.js";
import { type Dims, attendHeads } from "./heads.js";
import { type LinearAttentionOptions, settings } from "./linear-attention.js";
import { type BlockSparsePattern, blockSparseLayout } from "./sparse.js";
import { place } from "./resident.js";
import { type KernelMask, additive, kernelMask } from "./mask.js";
import { type BoolTensor, MAX_DIM, type Snapshot, type Tensor, checkMask, checkOptions, checkTensor, describe, fmt, resultArray, size, typedKind } from "./tensor.js";
import { bool, f32, int, oneOf } from "./check.js";

const zero = () => 0;

export interface AttentionOptions {
  /**
   * Boolean (true = takes part, as torch's SDPA) or float (added to the scores), broadcast with
   * numpy rules to the scores' shape [..., Hq, Lq, Lk].
   */
  attnMask?: Tensor | BoolTensor;
  /** Query i sees keys 0..i (with the default top-left alignment). Not with `attnMask`. */
  isCausal?: boolean;
  /**
   * Where the causal diagonal starts when Lq != Lk: "top-left" (torch's is_causal: query i sees
   * keys 0..i) or "bottom-right" (FlashAttention-2 and KV-cache decoding: query i sees keys
   * 0..i + Lk - Lq). Default "top-left".
   */
  causalAlignment?: "top-left" | "bottom-right";
  /** Multiplies QK^T; default 1/sqrt(E). */
  scale?: number;
  /**
   * A sliding window [left, right] (FlashAttention-2's): query i sees keys i - left ..= i + right,
   * measured from the diagonal that `causalAlignment` sets; Infinity for no bound on a side. With
   * isCausal, right is 0. Keys outside are never scored: the cost is O(L * window * E).
   */
  window?: readonly [number, number];
  /** With `window`: only keys whose distance from the diagonal is a multiple of this (Longformer's dilation). */
  dilation?: number;
  /** Scores become softcap * tanh(score / softcap) before the mask (Gemma 2's soft-capping). */
  softcap?: number;
  /**
   * ALiBi: -slope * |i - j| is added to the scores inside the kernel (no bias matrix). `true` uses
   * the standard geometric slopes for Hq heads (alibiSlopes(Hq)); or one slope per query head.
   */
  alibi?: boolean | readonly number[];
  /**
   * Block-sparse attention: `layout` [ceil(Lq / blockSize), ceil(Lk / blockSize)], boolean (1: query
   * block i sees key block j), for example from blockSparseLayout(); blockSize a multiple of 8.
   * Key blocks that no query of a block sees are never scored.
   */
  blockSparse?: { layout: BoolTensor; blockSize: number };
  /** Rotary position embedding applied to (copies of) query and key; see RopeOptions. */
  rope?: RopeOptions;
  /**
   * Longformer's global attention (self-attention, Lq = Lk): these positions attend to every key and
   * every query attends to them, on top of the window. Not with attnMask, isCausal, alibi,
   * blockSparse or returnWeights.
   */
  globalTokens?: readonly number[];
  /** Grouped-query attention: query head h reads key/value head floor(h / (Hq / Hk)). */
  enableGqa?: boolean;
  /** Also return the softmax probabilities [..., Hq, Lq, Lk]. */
  returnWeights?: boolean;
}

const OPTIONS = ["attnMask", "isCausal", "causalAlignment", "window", "dilation", "softcap", "alibi", "rope", "blockSparse", "globalTokens", "scale", "enableGqa", "returnWeights"] as const;

/**
 * How a MultiHeadAttention (or a transformer layer's self-attention) attends, beyond plain softmax
 * attention: the same options as scaledDotProductAttention's, with the block-sparse layout given
 * as a pattern (made for each call's lengths).
 */
export interface AttentionVariant {
  window?: readonly [number, number];
  dilation?: number;
  softcap?: number;
  alibi?: boolean | readonly number[];
  rope?: RopeOptions;
  blockSparse?: BlockSparsePattern & { blockSize: number };
  /** Linear attention instead of softmax attention (see linearAttention); no masks but causal, no weights. */
  linear?: boolean | Omit<LinearAttentionOptions, "causal">;
}

/** @internal a checked AttentionVariant for Hq heads of dimension E */
export function checkVariant(v: AttentionVariant | undefined, Hq: number, E: number) {
  const o = checkOptions("attention", v, ["window", "dilation", "softcap", "alibi", "rope", "blockSparse", "linear"]);
  const linear = o.linear ? settings("attention.linear", o.linear === true ? {} : o.linear) : null;
  if (linear) {
    const other = (["window", "softcap", "alibi", "blockSparse"] as const).find((n) => o[n] !== undefined);
    if (other) throw new ArgumentError(`attention: linear attention does not combine with ${other}`);
  }
  const [left, right] = band(o.window, false);
  const window = o.window === undefined ? undefined : Object.freeze([left < 0 ? Infinity : left, right < 0 ? Infinity : right] as const);
  const blockSparse = o.blockSparse === undefined ? undefined : Object.freeze({ ...o.blockSparse });
  if (blockSparse) patternLayout(blockSparse, blockSparse.blockSize, blockSparse.blockSize); // checks the pattern
  return { ...extras({ ...o, window } as AttentionOptions, Hq, E), window, blockSparse, linear };
}

/** @internal the kernel's band and block layout of a checked variant for one call */
export function variantCall(v: ReturnType<typeof checkVariant>, causal: boolean, Lq: number, Lk: number) {
  return { band: band(v.window, causal), layout: v.blockSparse ? patternLayout(v.blockSparse, Lq, Lk) : null };
}

// a block-sparse pattern with its block size, laid out and checked for these lengths
function patternLayout({ blockSize, ...pattern }: BlockSparsePattern & { blockSize: number }, Lq: number, Lk: number) {
  return sparse({ layout: blockSparseLayout(Lq, Lk, blockSize, pattern as BlockSparsePattern), blockSize }, Lq, Lk);
}

/**
 * Rotary position embedding (Su et al.): key j is at position offset + j, query i at offset + i
 * (+ Lk - Lq with bottom-right alignment, as when decoding); the first rotaryDim dims of each head
 * rotate by pos * theta^(-2i / rotaryDim).
 */
export interface RopeOptions {
  /** Default 10000. */
  theta?: number;
  /** Pairs (2i, 2i + 1) as GPT-J and LLaMA; default false: pairs (i, i + rotaryDim / 2) as GPT-NeoX. */
  interleaved?: boolean;
  /** Dims rotated (even, at most E); default E. */
  rotaryDim?: number;
  /** Position of the first key; default 0. */
  positionOffset?: number;
}

/**
 * ALiBi's slopes for n heads (Press et al.): 2^(-8 (h + 1) / n) when n is a power of two; otherwise
 * those of the nearest lower power of two, then every other slope of twice that many.
 */
export function alibiSlopes(n: number): number[] {
  if (!Number.isInteger(n) || n < 1) throw new ArgumentError(`alibiSlopes: n must be a positive integer, got ${String(n)}`);
  const pow2 = (m: number) => Array.from({ length: m }, (_, h) => 2 ** ((-8 * (h + 1)) / m));
  const m = 2 ** Math.floor(Math.log2(n));
  return m === n ? pow2(n) : [...pow2(m), ...pow2(2 * m).filter((_, i) => i % 2 === 0).slice(0, n - m)];
}

/**
 * softmax(Q K^T * scale + mask) V, with the semantics of torch.nn.functional.scaled_dot_product_attention:
 * query [..., Hq, Lq, E], key [..., Hk, Lk, E], value [..., Hk, Lk, Ev] give [..., Hq, Lq, Ev].
 * Leading dimensions are optional and must match. A query row whose every key is masked gets
 * zeros (and zero weights), not NaN. Inputs are not modified; the output is a new tensor.
 * Resident tensors (residentTensor()) are read where they are, without a copy.
 */
export function scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, options?: AttentionOptions & { returnWeights?: false }): Tensor;
export function scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, options: AttentionOptions & { returnWeights: true }): { output: Tensor; weights: Tensor };
export function scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, options: AttentionOptions = {}): Tensor | { output: Tensor; weights: Tensor } {
  const { kernels: K, heap, pool } = runtime();
  // every caller object is read once, here; only the snapshots are used afterwards
  const o = checkOptions("scaledDotProductAttention options", options, OPTIONS);
  const q = checkTensor("query", query);
  const k = key === query ? q : checkTensor("key", key);
  const v = value === key ? k : value === query ? q : checkTensor("value", value);
  const p = plan(q, k, v, o);
  const { B, Hq, Hk, Lq, Lk, E, Ev } = p;
  const outLength = B * Hq * Lq * Ev;
  const weightsLength = p.returnWeights ? B * Hq * Lq * Lk : 0;
  const result = (out: Float32Array, weights: Float32Array) => {
    const output = { data: out, shape: p.outShape };
    return p.returnWeights ? { output, weights: { data: weights, shape: p.scoreShape } } : output;
  };
  // nothing to compute, however the empty tensors are shaped
  if (outLength === 0) return result(new Float32Array(0), new Float32Array(weightsLength));
  const mask = p.mask;
  const work = K.attention_f32_workspace(Lk, E, Ev);
  const copies = (t: Snapshot) => (t.address === undefined || p.rope ? t.data.length : 0);
  heap.need(
    "scaledDotProductAttention",
    4 * (copies(q) + (k === q ? 0 : copies(k)) + (v === k || v === q ? 0 : copies(v)) + outLength + weightsLength + (mask?.data.length ?? 0)) +
      work * pool.size + 8 * (p.blockSparse?.layout.length ?? 0) + 64 * 16,
  );

  // the results too, before any kernel runs
  const outData = resultArray("scaledDotProductAttention", outLength);
  const weightsData = resultArray("scaledDotProductAttention", weightsLength);
  const scope = heap.scope();
  try {
    // with RoPE, query and key are rotated in copies of their own: inputs, resident ones too, are never modified
    const qk = (t: Snapshot) => (p.rope ? scope.put(t.data) : place(scope, t));
    const qAt = qk(q);
    const kAt = k === q && !p.rope ? qAt : qk(k);
    const vAt = v === k && !p.rope ? kAt : place(scope, v);
    const diag = p.alignment === "bottom-right" ? Lk - Lq : 0;
    if (p.rope) {
      const { theta, interleaved, rotaryDim, positionOffset } = p.rope;
      K.rope_f32(qAt, B * Hq * Lq, Lq, E, 1, E, rotaryDim, positionOffset + diag, theta, interleaved);
      K.rope_f32(kAt, B * Hk * Lk, Lk, E, 1, E, rotaryDim, positionOffset, theta, interleaved);
    }
    const m = mask ? scope.put(mask.data) : 0;
    const blocks = placeBlocks(scope, heap, p.blockSparse);
    const out = scope.alloc(4 * outLength);
    const w = p.returnWeights ? scope.alloc(4 * weightsLength) : 0;
    const at = (base: number, H: number, L: number, D: number) => (b: number, h: number) => base + 4 * (b * H + h) * L * D;
    const ctx = { K, heap, scope, pool };
    const heads = {
      B, Hq, Hk, Lq, Lk, E, Ev,
      q: at(qAt, Hq, Lq, E), k: at(kAt, Hk, Lk, E), v: at(vAt, Hk, Lk, Ev), out: at(out, Hq, Lq, Ev),
      qStride: E, kStride: E, vStride: Ev, outStride: Ev,
      weights: w, mask: m, maskOffset: mask?.offset ?? zero, maskRow: mask?.rowStride ?? 0,
      scale: p.scale, diag, left: p.window[0], right: p.window[1],
      dilation: p.dilation, softcap: p.softcap, slope: (h: number) => p.slopes[h] ?? 0,
      ...blocks, blockSize: p.blockSparse?.blockSize ?? 8,
    };
    attend(ctx, heads, p.global);
    outData.set(heap.f32(out, outLength));
    if (w) weightsData.set(heap.f32(w, weightsLength));
    return result(outData, weightsData);
  } finally {
    scope.release();
  }
}

/**
 * @internal Attention over every head, by the cheapest exact route: global tokens in three passes;
 * a dilated window as `dilation` interleaved problems (queries of one residue class against the
 * keys they can see, rows `dilation` apart), so no score is computed only to be dropped; else the
 * kernel directly (with a mask, returned weights or a block layout, a dilated window is masked per
 * score instead).
 */
export function attend(ctx: Parameters<typeof attendHeads>[0], a: Parameters<typeof attendHeads>[1], global: number[] | null | undefined): void {
  if (global) return attendWithGlobals(ctx, a, global);
  const d = a.dilation;
  if (d <= 1 || a.mask || a.weights || a.blocks || a.stats) return attendHeads(ctx, a);
  const mod = (x: number) => ((x % d) + d) % d;
  for (let c = 0; c < Math.min(d, a.Lq); c++) {
    // queries i = c + d i', keys j = ck + d j' with j - i - diag a multiple of d
    const ck = mod(c + a.diag);
    const Lq = Math.ceil((a.Lq - c) / d);
    const Lk = Math.max(0, Math.ceil((a.Lk - ck) / d));
    attendHeads(ctx, {
      ...a, Lq, Lk,
      q: (b, h) => a.q(b, h) + 4 * c * a.qStride, qStride: a.qStride * d,
      out: (b, h) => a.out(b, h) + 4 * c * a.outStride, outStride: a.outStride * d,
      k: (b, g) => a.k(b, g) + 4 * ck * a.kStride, kStride: a.kStride * d,
      v: (b, g) => a.v(b, g) + 4 * ck * a.vStride, vStride: a.vStride * d,
      diag: (c + a.diag - ck) / d,
      left: a.left < 0 ? -1 : Math.floor(a.left / d),
      right: a.right < 0 ? -1 : Math.floor(a.right / d),
      dilation: 1,
      slope: (h) => a.slope(h) * d,
    });
  }
}

/**
 * @internal Longformer's global attention in three passes over what the kernel already does:
 *   1. every query over its band (the window), keeping each row's softmax (max, sum);
 *   2. every query over the global keys outside its band, gathered into a block of their own;
 *      the two passes are merged row by row as one softmax over the union;
 *   3. the global queries over every key, written over their rows.
 * Cost O(L * (window + G) * E + G * L * E), never O(L^2) for G << L.
 */
export function attendWithGlobals(ctx: Parameters<typeof attendHeads>[0], a: Parameters<typeof attendHeads>[1], global: number[]): void {
  const { K, heap, scope } = ctx;
  const { B, Hq, Hk, Lq, E, Ev } = a;
  const G = global.length;
  const slices = B * Hq;
  const stats = scope.alloc(8 * slices * Lq);
  attendHeads(ctx, { ...a, stats });
  // the global rows of query, key or value heads, packed: [B, H, G, D]
  const gather = (src: (b: number, g: number) => number, H: number, D: number, stride: number) => {
    const dst = scope.alloc(4 * B * H * G * D);
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) global.forEach((r, j) => heap.f32(dst + 4 * ((b * H + h) * G + j) * D, D).set(heap.f32(src(b, h) + 4 * r * stride, D)));
    return (b: number, h: number) => dst + 4 * (b * H + h) * G * D;
  };
  const gk = gather(a.k, Hk, E, a.kStride);
  const gv = gather(a.v, Hk, Ev, a.vStride);
  // the global keys each query already saw in its band
  const seen = new Float32Array(Lq * G);
  for (let i = 0; i < Lq; i++) {
    global.forEach((pos, j) => {
      const d = i + a.diag - pos;
      const inBand = (a.left < 0 || d <= a.left) && (a.right < 0 || -d <= a.right) && (a.dilation <= 1 || d % a.dilation === 0);
      seen[i * G + j] = inBand ? -Infinity : 0;
    });
  }
  const mask2 = scope.put(seen);
  const out2 = scope.alloc(4 * slices * Lq * Ev);
  const stats2 = scope.alloc(8 * slices * Lq);
  const none = { diag: 0, left: -1, right: -1, dilation: 1, blocks: 0, starts: 0, weights: 0 };
  attendHeads(ctx, {
    ...a, ...none, Lk: G, k: gk, v: gv, kStride: E, vStride: Ev, out: (b, h) => out2 + 4 * (b * Hq + h) * Lq * Ev, outStride: Ev,
    mask: mask2, maskOffset: zero, maskRow: G, stats: stats2,
  });
  for (let n = 0; n < slices; n++) K.attention_f32_merge(a.out(Math.floor(n / Hq), n % Hq), a.outStride, stats + 8 * n * Lq, out2 + 4 * n * Lq * Ev, Ev, stats2 + 8 * n * Lq, Lq, Ev);
  // the global queries see everything
  const gq = gather(a.q, Hq, E, a.qStride);
  const outG = scope.alloc(4 * slices * G * Ev);
  attendHeads(ctx, { ...a, ...none, Lq: G, q: gq, qStride: E, out: (b, h) => outG + 4 * (b * Hq + h) * G * Ev, outStride: Ev, mask: 0, maskOffset: zero, maskRow: 0 });
  for (let n = 0; n < slices; n++) {
    global.forEach((pos, j) => heap.f32(a.out(Math.floor(n / Hq), n % Hq) + 4 * pos * a.outStride, Ev).set(heap.f32(outG + 4 * (n * G + j) * Ev, Ev)));
  }
}

// the global positions, read once, checked, sorted
export function globals(o: AttentionOptions, Lq: number, Lk: number): number[] | null {
  if (o.globalTokens === undefined) return null;
  const given: unknown = o.globalTokens;
  const g = Array.isArray(given) ? Array.from({ length: int("globalTokens.length", (given as unknown[]).length, 0) }, (_, i) => (given as unknown[])[i]) : null;
  if (!g || !g.every((x) => Number.isInteger(x) && (x as number) >= 0 && (x as number) < Lk) || new Set(g).size !== g.length) {
    throw new ArgumentError(`globalTokens: expected distinct positions from 0 to ${Lk - 1}, got ${g ? `[${g.slice(0, 8).join(", ")}${g.length > 8 ? ", ..." : ""}]` : describe(given)}`);
  }
  if (Lq !== Lk) throw new ShapeError(`globalTokens: for self-attention, Lq = Lk; got Lq = ${Lq}, Lk = ${Lk}`);
  for (const name of ["attnMask", "isCausal", "alibi", "blockSparse", "returnWeights"] as const) {
    if (o[name]) throw new ArgumentError(`globalTokens: not together with ${name}`);
  }
  return g.length ? (g as number[]).sort((a, b) => a - b) : null;
}

/**
 * @internal a block layout as the kernel reads it, in `scope`: for query block i, the key blocks
 * blocks[starts[i] .. starts[i + 1]), ascending (i32 lists; both 0 without a layout)
 */
export function placeBlocks(scope: Scope, heap: Heap, sparse: { layout: Uint8Array; nKB: number } | null): { blocks: number; starts: number } {
  if (!sparse) return { blocks: 0, starts: 0 };
  const nQ = sparse.layout.length / sparse.nKB;
  const starts = new Int32Array(nQ + 1);
  const list: number[] = [];
  for (let i = 0; i < nQ; i++) {
    for (let j = 0; j < sparse.nKB; j++) if (sparse.layout[i * sparse.nKB + j]) list.push(j);
    starts[i + 1] = list.length;
  }
  const blocks = scope.alloc(4 * Math.max(1, list.length));
  new Int32Array(heap.memory.buffer, blocks, list.length).set(list);
  const at = scope.alloc(4 * starts.length);
  new Int32Array(heap.memory.buffer, at, starts.length).set(starts);
  return { blocks, starts: at };
}

// the block-sparse layout, read once, checked against the lengths
function sparse(given: AttentionOptions["blockSparse"], Lq: number, Lk: number) {
  if (given === undefined) return null;
  const o = checkOptions("blockSparse", given, ["layout", "blockSize"]);
  const bs = o.blockSize;
  if (typeof bs !== "number" || !Number.isInteger(bs) || bs < 8 || bs % 8 || bs > 2 ** 30) {
    throw new ArgumentError(`blockSparse.blockSize: expected a positive multiple of 8${typeof bs === "number" && bs > 2 ** 30 ? " up to 2^30" : ""}, got ${describe(bs)}`);
  }
  const layout = checkMask("blockSparse.layout", o.layout);
  const want = [Math.ceil(Lq / bs), Math.ceil(Lk / bs)];
  if (typedKind(layout.data) !== "Uint8Array") throw new ArgumentError("blockSparse.layout: expected a boolean tensor (Uint8Array data)");
  if (layout.shape.length !== 2 || layout.shape[0] !== want[0] || layout.shape[1] !== want[1]) {
    throw new ShapeError(`blockSparse.layout: expected ${fmt(want)} (ceil(Lq / ${bs}), ceil(Lk / ${bs})), got ${fmt(layout.shape)}`);
  }
  return { layout: layout.data as Uint8Array, blockSize: bs, nKB: want[1]! };
}

// dilation, softcap, ALiBi slopes and RoPE settings, checked against what the kernels take
function extras(o: AttentionOptions, Hq: number, E: number) {
  const dilation = int("dilation", o.dilation ?? 1, 1);
  if (dilation > 1 && !o.window) throw new ArgumentError("dilation: only with a window (a dilated sliding window)");
  const softcap = o.softcap === undefined ? 0 : f32("softcap", o.softcap, "positive");
  let slopes: number[] = [];
  const alibi: unknown = o.alibi;
  if (alibi === true) slopes = alibiSlopes(Hq).map(Math.fround);
  else if (Array.isArray(alibi)) {
    const given = Array.from({ length: Math.min((alibi as unknown[]).length, Hq + 1) }, (_, i) => (alibi as unknown[])[i]);
    if (given.length !== Hq) throw new ArgumentError(`alibi: expected true or ${Hq} finite slopes (one per query head), got ${(alibi as unknown[]).length} values`);
    slopes = given.map((x, h) => f32(`alibi[${h}]`, x));
  } else if (alibi !== undefined && alibi !== false) throw new ArgumentError(`alibi: expected a boolean or an array of slopes, got ${describe(alibi)}`);
  let rope: Required<RopeOptions> | null = null;
  if (o.rope !== undefined) {
    const r = checkOptions("rope", o.rope, ["theta", "interleaved", "rotaryDim", "positionOffset"]);
    const rotaryDim = r.rotaryDim ?? E;
    if (!Number.isInteger(rotaryDim) || rotaryDim < 2 || rotaryDim % 2 || rotaryDim > E) {
      throw new ArgumentError(`rope.rotaryDim: expected an even integer from 2 to E = ${E}, got ${describe(rotaryDim)}`);
    }
    rope = {
      theta: f32("rope.theta", r.theta ?? 10000, "positive"),
      interleaved: bool("rope.interleaved", r.interleaved, false),
      rotaryDim,
      positionOffset: int("rope.positionOffset", r.positionOffset ?? 0, 0),
    };
  }
  return { dilation, softcap, slopes, rope };
}

// the kernel's band [left, right] from the window option and isCausal; -1 for no bound
function band(window: unknown, causal: boolean): [number, number] {
  let [left, right] = [-1, -1];
  if (window !== undefined) {
    const w = Array.isArray(window) && (window as unknown[]).length === 2 ? [(window as unknown[])[0], (window as unknown[])[1]] : null;
    const ok = (x: unknown) => x === Infinity || (typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= MAX_DIM);
    if (!w || !w.every(ok)) {
      const big = w?.some((x) => typeof x === "number" && Number.isFinite(x) && x > MAX_DIM) ? " (a finite side must be below 2^31)" : "";
      throw new ArgumentError(`window: expected [left, right], each a non-negative integer or Infinity, got ${Array.isArray(window) ? `[${(window as unknown[]).slice(0, 4).join(", ")}]` : describe(window)}${big}`);
    }
    [left, right] = w.map((x) => (x === Infinity ? -1 : (x as number)));
  }
  return [left!, causal ? 0 : right!];
}

interface Plan extends Dims {
  scale: number;
  alignment: "top-left" | "bottom-right";
  dilation: number;
  softcap: number;
  slopes: number[];
  rope: Required<RopeOptions> | null;
  blockSparse: { layout: Uint8Array; blockSize: number; nKB: number } | null;
  global: number[] | null;
  /** [left, right] of the band of keys each query sees; -1: unbounded */
  window: [number, number];
  mask: KernelMask | null;
  returnWeights: boolean;
  outShape: number[];
  scoreShape: number[];
}

// every check, on snapshots, before any memory is touched
function plan(q: Snapshot, k: Snapshot, v: Snapshot, options: AttentionOptions): Plan {
  const fn = "scaledDotProductAttention";
  const rank = q.shape.length;
  if (rank < 2) throw new ShapeError(`query: expected [..., Lq, E] (at least 2 dimensions), got ${fmt(q.shape)}`);
  for (const [name, t] of [["key", k], ["value", v]] as const) {
    if (t.shape.length !== rank) {
      throw new ShapeError(`${name}: expected ${rank} dimensions like query ${fmt(q.shape)}, got ${fmt(t.shape)}`);
    }
  }
  const batch = q.shape.slice(0, -3);
  for (const [name, t] of [["key", k], ["value", v]] as const) {
    if (t.shape.slice(0, -3).some((d, i) => d !== batch[i])) {
      throw new ShapeError(`${name}: leading dimensions of ${fmt(t.shape)} must equal query's ${fmt(q.shape)}`);
    }
  }
  const [Lq, E] = q.shape.slice(-2) as [number, number];
  const [Lk, Ek] = k.shape.slice(-2) as [number, number];
  const [Lv, Ev] = v.shape.slice(-2) as [number, number];
  const Hq = rank > 2 ? q.shape[rank - 3]! : 1;
  const Hk = rank > 2 ? k.shape[rank - 3]! : 1;
  if (E < 1) throw new ShapeError(`query: the embedding dimension E must be at least 1, got ${fmt(q.shape)}`);
  if (Ek !== E) throw new ShapeError(`key: expected [..., Lk, ${E}] (E of query ${fmt(q.shape)}), got ${fmt(k.shape)}`);
  if (Lv !== Lk) throw new ShapeError(`value: expected [..., ${Lk}, Ev] (Lk of key ${fmt(k.shape)}), got ${fmt(v.shape)}`);
  if (rank > 2 && v.shape[rank - 3] !== Hk) {
    throw new ShapeError(`value: expected ${Hk} heads like key ${fmt(k.shape)}, got ${fmt(v.shape)}`);
  }
  if (bool("enableGqa", options.enableGqa, false)) {
    if (Hk === 0 || Hq % Hk !== 0) {
      throw new ShapeError(`enableGqa: query heads (${Hq}, from ${fmt(q.shape)}) must be a multiple of key/value heads (${Hk}, from ${fmt(k.shape)})`);
    }
  } else if (Hq !== Hk) {
    throw new ShapeError(`key: expected ${Hq} heads like query ${fmt(q.shape)}, got ${fmt(k.shape)} (pass enableGqa: true for grouped-query attention)`);
  }
  const isCausal = bool("isCausal", options.isCausal, false);
  const alignment = oneOf("causalAlignment", options.causalAlignment, ["top-left", "bottom-right"], "top-left");
  if (isCausal && options.attnMask !== undefined) {
    throw new ArgumentError(`${fn}: pass either isCausal or attnMask, not both (fold the causal mask into attnMask)`);
  }
  const scale = options.scale === undefined ? Math.fround(1 / Math.sqrt(E)) : f32("scale", options.scale, "positive");
  const returnWeights = bool("returnWeights", options.returnWeights, false);
  const scoreShape = [...q.shape.slice(0, -1), Lk];
  const mask = options.attnMask === undefined ? null : kernelMask("attnMask", additive(checkMask("attnMask", options.attnMask), true), scoreShape);
  return {
    B: size(batch),
    Hq,
    Hk,
    Lq,
    Lk,
    E,
    Ev,
    scale,
    alignment,
    window: band(options.window, isCausal),
    ...extras(options, Hq, E),
    blockSparse: sparse(options.blockSparse, Lq, Lk),
    global: globals(options, Lq, Lk),
    mask,
    returnWeights,
    outShape: [...q.shape.slice(0, -1), Ev],
    scoreShape,
  };
}
