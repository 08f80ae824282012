import { KvFormat } from "./enums.js";
import type { Ctx } from "./kernels.js";
import { type Call, SCRATCH } from "./threads.js";

/**
 * Where one attention call's heads live in WebAssembly memory: batch b, query head h, key/value
 * head g = floor(h / (Hq / Hk)). Addresses are bytes; strides are elements between rows, so heads
 * may be whole blocks ([B, H, L, E]) or slices of rows ([B, L, H * E]).
 */
/** The sizes of one attention call: batch, query and key/value heads, lengths, head dims. */
export interface Dims {
  B: number;
  Hq: number;
  Hk: number;
  Lq: number;
  Lk: number;
  E: number;
  Ev: number;
}

export interface Heads extends Dims {
  q(b: number, h: number): number;
  k(b: number, g: number): number;
  v(b: number, g: number): number;
  out(b: number, h: number): number;
  qStride: number;
  kStride: number;
  vStride: number;
  outStride: number;
  /** 0, or [B, Hq, Lq, Lk] for the probabilities */
  weights: number;
  /** 0, or the mask rows of slice n = b * Hq + h at mask + 4 * maskOffset(n), rows maskRow apart */
  mask: number;
  maskOffset(n: number): number;
  maskRow: number;
  scale: number;
  /** query i sees keys i + diag - left <= j <= i + diag + right; -1: no bound on that side (causal: right = 0) */
  diag: number;
  left: number;
  right: number;
  /** 1, or only keys with (i + diag - j) % dilation == 0 */
  dilation: number;
  /** 0, or scores become softcap * tanh(score / softcap) */
  softcap: number;
  /** ALiBi slope of query head h (0: none) */
  slope(h: number): number;
  /** 0, or block-sparse: the key blocks of query block i are blocks[starts[i] .. starts[i + 1]) (i32 lists in WebAssembly memory) */
  blocks: number;
  starts: number;
  blockSize: number;
  /** 0, or [B, Hq, Lq, 2] for each row's softmax (max, sum) */
  stats?: number;
  /**
   * Keys [start, end) of batch b and its diagonal (in place of `diag`), when they differ per
   * sequence: keys outside are never read (left padding, per-sequence key lengths). Columns of the
   * mask and the weights stay those of all Lk keys.
   */
  keyRange?: (b: number) => readonly [start: number, end: number, diag: number];
  /** the attention sink of query head h (a logit without a value), or -Infinity: none */
  sink?: (h: number) => number;
  /** `weights` receives the scores as the softmax sees them, not the probabilities */
  rawScores?: boolean;
  /** keys and values stored as a cache stores them (absent: float32) */
  kv?: StoredKV;
}

/**
 * Keys and values in a cache's stored form (src/enums.ts KvFormat; assembly/kv.ts has the row
 * layout): `k`/`v` address a head's first stored value, strides count stored values, and a Q8
 * head's scales are one float32 per row, at kScale/vScale, with the rows' stride.
 */
export interface StoredKV {
  format: KvFormat;
  kScale(b: number, g: number): number;
  vScale(b: number, g: number): number;
}

/** Bytes of one stored value of `format`. */
export function storedBytes(format: KvFormat): number {
  return format === KvFormat.F16 || format === KvFormat.F16Finite ? 2 : format === KvFormat.Q8 ? 1 : 4;
}

/** Whether the kernel can read keys and values of `format` in place: it widens 4 (F16) or 16 (Q8) values at a time. */
function storedInPlace(format: KvFormat, E: number, Ev: number): boolean {
  const unit = format === KvFormat.Q8 ? 16 : format === KvFormat.F32 ? 1 : 4;
  return E % unit === 0 && Ev % unit === 0;
}

/**
 * Whether the kernel reads keys in place instead of from a transposed copy: the copy costs a pass
 * over the keys per key/value head and pays off once a few queries (of all heads sharing them) reuse it.
 */
export function readKeysInPlace(queriesPerKvHead: number): boolean {
  return queriesPerKvHead < 4;
}

/**
 * Runs attention over every head, on every thread of the pool: one task per key/value head (its
 * keys prepared once, then each query head that reads them), or, when there are fewer key/value
 * heads than threads, per block of query rows. Every row is computed the same way whichever task
 * holds it, so the result does not depend on the number of threads.
 */
export function attendHeads(ctx: Ctx, a: Heads): void {
  const { K, scope, pool } = ctx;
  const group = a.Hq / a.Hk;
  const format = a.kv?.format ?? KvFormat.F32;
  const el = storedBytes(format);
  const inPlace = readKeysInPlace(a.Lq * group) && storedInPlace(format, a.E, a.Ev);
  const work = K.attention_f32_workspace(a.Lk, a.E, a.Ev, format, !inPlace);
  const scratch = scope.alloc(work * pool.size);
  // rows per task: all of them, or a multiple of 4 that gives each thread about two tasks
  const tasksPerKv = a.B * a.Hk >= 2 * pool.size ? 1 : Math.ceil((2 * pool.size) / (a.B * a.Hk));
  // rows per task: a multiple of 4 (the kernel's row blocks) and of the sparse layout's blocks
  const unit = a.blocks ? a.blockSize : 4;
  const rows = Math.max(unit, Math.ceil(a.Lq / tasksPerKv / unit) * unit);
  const tasks: Call[][] = [];
  for (let b = 0; b < a.B; b++) {
    const [start, end, diag] = a.keyRange?.(b) ?? [0, a.Lk, a.diag];
    const Lk = end - start;
    for (let g = 0; g < a.Hk; g++) {
      const k = a.k(b, g) + el * start * a.kStride;
      const v = a.v(b, g) + el * start * a.vStride;
      const kScale = a.kv ? a.kv.kScale(b, g) + el * start * a.kStride : 0;
      const vScale = a.kv ? a.kv.vScale(b, g) + el * start * a.vStride : 0;
      for (let r0 = 0; r0 < a.Lq; r0 += rows) {
        const n = Math.min(rows, a.Lq - r0);
        const task: Call[] = [["attention_f32_prepare_kv", SCRATCH, k, a.kStride, v, a.vStride, Lk, a.E, a.Ev, !inPlace, format, kScale, vScale]];
        for (let h = g * group; h < (g + 1) * group; h++) {
          const slice = b * a.Hq + h;
          task.push([
            "attention_f32_flash",
            a.out(b, h) + 4 * r0 * a.outStride,
            a.outStride,
            a.weights && a.weights + 4 * ((slice * a.Lq + r0) * a.Lk + start),
            a.Lk,
            a.q(b, h) + 4 * r0 * a.qStride,
            a.qStride,
            inPlace ? k : 0,
            a.kStride,
            v,
            a.vStride,
            a.mask && a.mask + 4 * (a.maskOffset(slice) + r0 * a.maskRow + start),
            a.maskRow,
            SCRATCH,
            n,
            Lk,
            a.E,
            a.Ev,
            a.scale,
            diag - start + r0,
            a.left,
            a.right,
            a.dilation,
            a.softcap,
            a.slope(h),
            a.blocks,
            a.starts && a.starts + 4 * (r0 / a.blockSize),
            a.blockSize,
            a.stats ? a.stats + 8 * (slice * a.Lq + r0) : 0,
            a.sink?.(h) ?? -Infinity,
            a.rawScores ?? false,
            format,
            kScale,
            vScale,
          ]);
        }
        tasks.push(task);
      }
    }
  }
  pool.run(tasks, { base: scratch, stride: work }, a.B * a.Hq * a.Lq * a.Lk * (a.E + a.Ev));
}
