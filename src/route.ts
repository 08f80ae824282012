// Routing: from a call's heads in WebAssembly memory and its checked features to kernel calls,
// by the cheapest exact route (see attend). Both scaledDotProductAttention and MultiHeadAttention
// come through here, with their heads laid out as blocks or as column slices of rows.
import type { Ctx } from "./kernels.js";
import type { Heap, Scope } from "./memory.js";
import { KvFormat } from "./enums.js";
import { type Dims, type Heads, type StoredKV, attendHeads, storedBytes } from "./heads.js";
import { type Features, bandOf } from "./features.js";
import type { KernelMask } from "./mask.js";

const zero = () => 0;

/** Where one call's heads live: the address of head (b, h) of each operand, and rows' strides in elements. */
export interface HeadLayout extends Dims {
  q(b: number, h: number): number;
  k(b: number, g: number): number;
  v(b: number, g: number): number;
  out(b: number, h: number): number;
  qStride: number;
  kStride: number;
  vStride: number;
  outStride: number;
}

/**
 * Attention over every head of `layout` with features `f`: `diag` is where the causal diagonal
 * and the band start (Lk - Lq bottom-right, the past length when decoding), `mask` a placed kernel
 * mask, `weights` 0 or [B, Hq, Lq, Lk] for the probabilities, `stats` 0 or [B, Hq, Lq, 2] for
 * each row's softmax (max, sum), to merge this call with another over other keys.
 */
export function attention(
  ctx: Ctx,
  layout: HeadLayout,
  f: Features,
  o: {
    diag: number;
    mask: { at: number; info: KernelMask } | null;
    weights: number;
    keyRange?: Heads["keyRange"];
    rawScores?: boolean;
    stats?: number;
    /** keys and values as a cache stores them (absent: float32, as the layout's strides say) */
    kv?: StoredKV;
  },
): void {
  const [left, right] = bandOf(f);
  // keys outside a sequence's range are never visited: their weights are zeros, their scores -Infinity
  if (o.keyRange && o.weights) ctx.heap.f32(o.weights, layout.B * layout.Hq * layout.Lq * layout.Lk).fill(o.rawScores ? -Infinity : 0);
  const blocks = placeBlocks(ctx.scope, ctx.heap, f.blockSparse);
  // every field named (no spread of the layout): one object shape for every call, which V8 builds
  // fast; spreading the caller's layout made each field a transition on a new shape (~50 us a call)
  const heads: Heads = {
    B: layout.B,
    Hq: layout.Hq,
    Hk: layout.Hk,
    Lq: layout.Lq,
    Lk: layout.Lk,
    E: layout.E,
    Ev: layout.Ev,
    q: layout.q,
    k: layout.k,
    v: layout.v,
    out: layout.out,
    qStride: layout.qStride,
    kStride: layout.kStride,
    vStride: layout.vStride,
    outStride: layout.outStride,
    weights: o.weights,
    mask: o.mask?.at ?? 0,
    maskOffset: o.mask?.info.offset ?? zero,
    maskRow: o.mask?.info.rowStride ?? 0,
    scale: f.scale ?? Math.fround(1 / Math.sqrt(layout.E)),
    diag: o.diag,
    left,
    right,
    dilation: f.dilation,
    softcap: f.softcap,
    slope: (h) => f.slopes[h] ?? 0,
    blocks: blocks.blocks,
    starts: blocks.starts,
    blockSize: f.blockSparse?.blockSize ?? 8,
    keyRange: o.keyRange,
    sink: f.sinks ? (h) => f.sinks![h]! : undefined,
    rawScores: o.rawScores,
    stats: o.stats,
    kv: o.kv,
  };
  attend(ctx, heads, f.global);
}

/**
 * Attention over every head, by the cheapest exact route: global tokens in three passes;
 * a dilated window as `dilation` interleaved problems (queries of one residue class against the
 * keys they can see, rows `dilation` apart), so no score is computed only to be dropped; else the
 * kernel directly (with a mask, returned weights or a block layout, a dilated window is masked per
 * score instead).
 */
function attend(ctx: Ctx, a: Heads, global: number[] | null): void {
  if (global) {
    if (a.kv) throw new Error("wasm-attention internal: global tokens over stored keys (the caller checks)");
    attendWithGlobals(ctx, a, global);
    return;
  }
  const d = a.dilation;
  if (d <= 1 || a.mask || a.weights || a.blocks || a.stats || a.keyRange) {
    attendHeads(ctx, a);
    return;
  }
  const mod = (x: number) => ((x % d) + d) % d;
  const el = storedBytes(a.kv?.format ?? KvFormat.F32);
  for (let c = 0; c < Math.min(d, a.Lq); c++) {
    // queries i = c + d i', keys j = ck + d j' with j - i - diag a multiple of d
    const ck = mod(c + a.diag);
    const Lq = Math.ceil((a.Lq - c) / d);
    const Lk = Math.max(0, Math.ceil((a.Lk - ck) / d));
    attendHeads(ctx, {
      ...a,
      Lq,
      Lk,
      q: (b, h) => a.q(b, h) + 4 * c * a.qStride,
      qStride: a.qStride * d,
      out: (b, h) => a.out(b, h) + 4 * c * a.outStride,
      outStride: a.outStride * d,
      k: (b, g) => a.k(b, g) + el * ck * a.kStride,
      kStride: a.kStride * d,
      v: (b, g) => a.v(b, g) + el * ck * a.vStride,
      vStride: a.vStride * d,
      kv: a.kv && {
        format: a.kv.format,
        kScale: (b, g) => a.kv!.kScale(b, g) + el * ck * a.kStride,
        vScale: (b, g) => a.kv!.vScale(b, g) + el * ck * a.vStride,
      },
      diag: (c + a.diag - ck) / d,
      left: a.left < 0 ? -1 : Math.floor(a.left / d),
      right: a.right < 0 ? -1 : Math.floor(a.right / d),
      dilation: 1,
      slope: (h) => a.slope(h) * d,
    });
  }
}

/**
 * Longformer's global attention in three passes over what the kernel already does:
 *   1. every query over its band (the window), keeping each row's softmax (max, sum);
 *   2. every query over the global keys outside its band, gathered into a block of their own;
 *      the two passes are merged row by row as one softmax over the union;
 *   3. the global queries over every key, written over their rows.
 * Cost O(L * (window + G) * E + G * L * E), never O(L^2) for G << L.
 */
function attendWithGlobals(ctx: Ctx, a: Heads, global: number[]): void {
  const { K, heap, scope } = ctx;
  const { B, Hq, Hk, Lq, E, Ev } = a;
  const G = global.length;
  const slices = B * Hq;
  const stats = scope.alloc(8 * slices * Lq);
  attendHeads(ctx, { ...a, stats });
  // the global rows of query, key or value heads, packed: [B, H, G, D]
  const gather = (src: (b: number, g: number) => number, H: number, D: number, stride: number) => {
    const dst = scope.alloc(4 * B * H * G * D);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        global.forEach((r, j) => heap.f32(dst + 4 * ((b * H + h) * G + j) * D, D).set(heap.f32(src(b, h) + 4 * r * stride, D)));
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
    ...a,
    ...none,
    Lk: G,
    k: gk,
    v: gv,
    kStride: E,
    vStride: Ev,
    out: (b, h) => out2 + 4 * (b * Hq + h) * Lq * Ev,
    outStride: Ev,
    mask: mask2,
    maskOffset: zero,
    maskRow: G,
    stats: stats2,
  });
  for (let n = 0; n < slices; n++)
    K.attention_f32_merge(
      a.out(Math.floor(n / Hq), n % Hq),
      a.outStride,
      stats + 8 * n * Lq,
      out2 + 4 * n * Lq * Ev,
      Ev,
      stats2 + 8 * n * Lq,
      Lq,
      Ev,
    );
  // the global queries see everything
  const gq = gather(a.q, Hq, E, a.qStride);
  const outG = scope.alloc(4 * slices * G * Ev);
  attendHeads(ctx, {
    ...a,
    ...none,
    Lq: G,
    q: gq,
    qStride: E,
    out: (b, h) => outG + 4 * (b * Hq + h) * G * Ev,
    outStride: Ev,
    mask: 0,
    maskOffset: zero,
    maskRow: 0,
  });
  for (let n = 0; n < slices; n++) {
    global.forEach((pos, j) =>
      heap.f32(a.out(Math.floor(n / Hq), n % Hq) + 4 * pos * a.outStride, Ev).set(heap.f32(outG + 4 * (n * G + j) * Ev, Ev)),
    );
  }
}

/**
 * A block layout as the kernel reads it, in `scope`: for query block i, the key blocks
 * blocks[starts[i] .. starts[i + 1]), ascending (i32 lists; both 0 without a layout)
 */
function placeBlocks(scope: Scope, heap: Heap, sparse: { layout: Uint8Array; nKB: number } | null): { blocks: number; starts: number } {
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
