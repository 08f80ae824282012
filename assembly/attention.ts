import { KvFormat } from "../src/enums";
import { tile_4x8 } from "./gemm";
import { accumulatePV1F16, accumulatePV1Q8, kvElem, kv_pack_t, kv_widen, pv, quantizeQuery_i16, scaleQuery_f16, scoreRows, scoreRowsQ8 } from "./kv";
import { pack_f32_t, packedBytes, roundUp4, roundUp8 } from "./pack";
import { exp_f32, exp_f32x4, fma_f32x4, hmax_f32x4, hsum_f32x4, store8_v128, sums4_f32x4 } from "./simd";

// Flash attention for one (batch, head) pair: scores are made one tile of BR queries by BC keys at
// a time and folded into an online softmax, so the Lq x Lk matrix never exists unless the caller
// asks for the weights.
//
// Per block of BR query rows, per tile of BC keys:
//   pass 1: S (BR, BC) = Q . K^T              (4 x 8 register micro-kernel over Kt)
//   pass 2: S = S * scale + mask, -Inf outside the row's band of keys; m_new = max(m, rowmax S)
//   pass 3: P = e^(S - m_new); l = l * e^(m - m_new) + rowsum P; O = O * e^(m - m_new)
//   pass 4: O += P . V
// and at the end of the block out = O / l (a row whose every key is masked has l = 0: zeros).
// NaN containment: a score whose mask is -Inf is -Inf whatever the key holds (NaN + -Inf would be
// NaN), and a probability of exactly 0 never multiplies a value row (0 x NaN would be NaN): tiles
// that hold such zeros take the masked form of pass 4. A NaN reaches only the rows that read it.
// Keys and values may be stored as halves or int8 (`format`, see kv.ts): a few queries read them
// in place; more widen them once into the packed copies.

const BR: i32 = 4; // query rows per block: the rows of the score micro-kernel
const BC: i32 = 64; // keys per tile: one online-softmax update each
const F32: usize = 4;
const NEG_INF: f32 = -Infinity;
const S_ROW: usize = <usize>BC * F32; // bytes of one row of the score tile

// The workspace, in order: Kt (when keys are packed), Vp (when values are copied), the score tile,
// the output rows, (m, l), and the quantized query rows, their scales and weight pairs (Q8 in place).
@inline function ktBytes(Lk: i32, E: i32, packed: bool): usize {
  return packed ? packedBytes(Lk, E) : 0;
}

// float32 V is read in place when its rows are whole vectors, else through a padded copy; stored
// values are read in place with the keys, else widened with them
@inline function vCopied(Ev: i32, format: i32, packed: bool): bool {
  return format == KvFormat.F32 ? (Ev & 3) != 0 : packed;
}

@inline function vpBytes(Lk: i32, Ev: i32, format: i32, packed: bool): usize {
  return vCopied(Ev, format, packed) ? <usize>Lk * roundUp4(Ev) * F32 : 0;
}

// the query rows as the stored keys need them: int16 (Q8) or float32 times 2^112 (F16Finite)
@inline function qiBytes(E: i32): usize {
  return (<usize>BR * <usize>E * F32 + 15) & ~15;
}

// bytes of scratch that attention_f32_prepare_kv and attention_f32_flash need for these sizes, keys
// and values stored in `format`, keys packed (transposeK) or read in place
export function attention_f32_workspace(Lk: i32, E: i32, Ev: i32, format: i32, packed: bool): usize {
  const tile = <usize>BR * S_ROW + <usize>BR * roundUp4(Ev) * F32 + 2 * <usize>BR * F32;
  return ktBytes(Lk, E, packed) + vpBytes(Lk, Ev, format, packed) + tile + qiBytes(E) + <usize>BR * F32 + <usize>(BC / 2) * 4;
}

// work <- Kt = K (Lk, E)^T packed by pack_f32_t (panels of 8 keys, zero keys up to Lk rounded to 8),
//         then, when Ev % 4 != 0, Vp (Lk, Ev4) = V (Lk, Ev) with zero columns up to Ev4.
// Rows of k and v are kStride and vStride elements apart. Done once per key/value head and
// shared by every query head that reads it (GQA). With transposeK false, Kt is not made: the
// flash kernel then reads keys in place (worth it for a few queries, as when decoding).
// Keys and values stored in `format` F16 or Q8 (kScale, vScale: their scales, with the rows'
// stride) are widened into Kt and Vp when packed; in place they need E and Ev multiples of 4 (F16)
// or 16 (Q8).
export function attention_f32_prepare_kv(
  work: usize, k: usize, kStride: i32, v: usize, vStride: i32, Lk: i32, E: i32, Ev: i32, transposeK: bool, format: i32, kScale: usize, vScale: usize,
): void {
  if (format != KvFormat.F32) {
    if (!transposeK) return;
    const el = kvElem(format);
    kv_pack_t(work, k, kScale, kStride * <i32>el, Lk, E, format);
    kv_widen(work + ktBytes(Lk, E, true), <i32>roundUp4(Ev), v, vScale, vStride * <i32>el, Lk, Ev, format);
    return;
  }
  if (transposeK) pack_f32_t(work, k, kStride, Lk, E);
  if (!(Ev & 3)) return;
  const ev4 = roundUp4(Ev);
  const vp = work + ktBytes(Lk, E, transposeK);
  for (let j: usize = 0; j < <usize>Lk; j++) {
    const src = v + j * <usize>vStride * F32;
    const dst = vp + j * ev4 * F32;
    for (let e: usize = 0; e < ev4; e++) {
      store<f32>(dst + e * F32, e < <usize>Ev ? load<f32>(src + e * F32) : 0);
    }
  }
}

// out (Lq, Ev) = softmax(q (Lq, E) . k (Lk, E)^T * scale + mask) . v (Lk, Ev)
//   rows of out, q, v are outStride, qStride, vStride elements apart (heads inside [B, L, E] rows)
//   work:     prepared by attention_f32_prepare_kv for this k and v (v is passed again for its address)
//   k:        0 to read keys from Kt in work; else the keys themselves, rows kStride elements apart
//   mask:     0, or f32 rows of Lk entries, row i at mask + i * maskRow (maskRow = 0: one row for all)
//   band:     query i sees keys i + diag - left <= j <= i + diag + right; left or right < 0: no bound
//             on that side (causal: right = 0; a sliding window: both); tiles outside are skipped;
//             with dilation d > 1, only keys with (i + diag - j) % d == 0 (Longformer)
//   blocks:   0, or block-sparse (bs % 8 == 0): query block i / bs sees the key blocks
//             blocks[starts[i / bs] .. starts[i / bs + 1]) (i32 lists); no other key is visited
//   stats:    0, or (Lq, 2) receives each row's softmax max and sum (m, l), for merging passes
//   softcap:  0, or scores become softcap * tanh(score / softcap) (before biases and mask)
//   slope:    0, or ALiBi: -slope * |i + diag - j| is added to every score
//   weights:  0, or (Lq, Lk) that receives the softmax probabilities, rows wRow elements apart;
//             with rawScores, the scores as the softmax sees them instead (scaled, capped, biased,
//             masked: -Inf where a key takes no part)
//   sink:     -Inf, or a logit that joins every row's softmax denominator without a value
//             (gpt-oss's attention sinks): the row starts with max = sink and sum = 1
//   format:   how k and v are stored (KvFormat; their strides count stored values), with
//             kScale and vScale the scales of Q8 rows (0 otherwise), as attention_f32_prepare_kv
// Pointers are byte addresses; work 16-byte aligned; any sizes (tails handled).
export function attention_f32_flash(
  out: usize, outStride: i32, weights: usize, wRow: i32, q: usize, qStride: i32, k: usize, kStride: i32, v: usize, vStride: i32,
  mask: usize, maskRow: i32, work: usize,
  Lq: i32, Lk: i32, E: i32, Ev: i32, scale: f32, diag: i32, left: i32, right: i32,
  dilation: i32, softcap: f32, slope: f32, blocks: usize, starts: usize, bs: i32, stats: usize, sink: f32, rawScores: bool,
  format: i32, kScale: usize, vScale: usize,
): void {
  const plain = dilation <= 1 && softcap == 0 && slope == 0;
  const ev4 = roundUp4(Ev);
  const packed = k == 0;
  const el = kvElem(format);
  const vCopy = vCopied(Ev, format, packed);
  const vp = vCopy ? work + ktBytes(Lk, E, packed) : v;
  const vRow = vCopy ? ev4 * F32 : <usize>vStride * el;
  const kRow = <usize>kStride * el;
  const stored = format != KvFormat.F32 && !packed; // keys and values read in place as stored
  const s = work + ktBytes(Lk, E, packed) + vpBytes(Lk, Ev, format, packed);
  const o = s + <usize>BR * S_ROW;
  const m = o + <usize>BR * ev4 * F32;
  const l = m + <usize>BR * F32;
  const qi = l + <usize>BR * F32;
  const qs = qi + qiBytes(E);
  const pairs = qs + <usize>BR * F32;
  for (let r0 = 0; r0 < Lq; r0 += BR) {
    const rows = min(BR, Lq - r0);
    if (stored && format == KvFormat.Q8) {
      for (let r = 0; r < rows; r++) {
        const scaleQ = quantizeQuery_i16(qi + <usize>r * <usize>E * 2, q + <usize>(r0 + r) * <usize>qStride * F32, E);
        store<f32>(qs + <usize>r * F32, scaleQ);
      }
    }
    // finite halves: the widening without checks, against the query rows times 2^112 (when they fit)
    let finite = stored && format == KvFormat.F16Finite;
    for (let r = 0; finite && r < rows; r++) {
      finite = scaleQuery_f16(qi + <usize>r * <usize>E * F32, q + <usize>(r0 + r) * <usize>qStride * F32, E);
    }
    // keys outside every row's band are skipped: start at the first row's lower bound (down to a
    // panel of 8 keys), end after the last row's upper bound
    const keyStart = left < 0 ? 0 : max(0, r0 + diag - left) & ~7;
    const keyEnd = right < 0 ? Lk : max(0, min(Lk, r0 + rows + diag + right));
    for (let r = 0; r < BR; r++) {
      store<f32>(m + <usize>r * F32, sink);
      store<f32>(l + <usize>r * F32, sink == NEG_INF ? <f32>0 : <f32>1);
    }
    memory.fill(o, 0, <usize>BR * ev4 * F32);
    if (weights) fillRows(weights, wRow, r0, rows, Lk, NEG_INF);
    // the keys to visit: the band, or its part in each key block this block of queries sees (all
    // four rows are in one query block, since bs is a multiple of 8)
    const first = blocks ? load<i32>(starts + <usize>(r0 / bs) * 4) : 0;
    const segments = blocks ? load<i32>(starts + <usize>(r0 / bs + 1) * 4) - first : 1;
    for (let g = 0; g < segments; g++) {
      let from = keyStart;
      let to = keyEnd;
      if (blocks) {
        const kb = load<i32>(blocks + <usize>(first + g) * 4);
        from = max(from, kb * bs);
        to = min(to, (kb + 1) * bs);
      }
      for (let t0 = from, cols = 0; t0 < to; t0 += cols) {
        cols = min(BC, to - t0);
        if (mask && tileMasked(mask, maskRow, r0, rows, t0, cols)) continue;
        if (stored && format == KvFormat.Q8) scoreRowsQ8(s, S_ROW, qi, qs, k, kScale, kRow, rows, t0, cols, E);
        else if (finite) scoreRows<u16>(s, S_ROW, qi, <usize>E * F32, k, kRow, 0, rows, t0, cols, E, true);
        else if (stored) scoreRows<u16>(s, S_ROW, q, <usize>qStride * F32, k, kRow, r0, rows, t0, cols, E, false);
        else if (k) scoreRows<f32>(s, S_ROW, q, <usize>qStride * F32, k, kRow, r0, rows, t0, cols, E, false);
        else scoreTile(s, q, <usize>qStride * F32, work, r0, Lq, t0, <i32>roundUp8(cols), E);
        let zeros = false; // some probability of the tile is exactly 0
        for (let r = 0; r < rows; r++) {
          const i = r0 + r;
          const lower = left < 0 ? 0 : max(0, i + diag - left - t0);
          const limit = right < 0 ? cols : min(cols, i + diag + right + 1 - t0);
          const mrow = mask ? mask + (<usize>i * <usize>maskRow + <usize>t0) * F32 : 0;
          const srow = s + <usize>r * S_ROW;
          const rowMax = plain
            ? maskScores(srow, mrow, lower, limit, <i32>roundUp8(cols), scale)
            : shapeScores(srow, mrow, lower, limit, <i32>roundUp8(cols), scale, i + diag - t0, dilation, softcap, slope);
          if (weights) memory.copy(weights + (<usize>i * <usize>wRow + <usize>t0) * F32, srow, <usize>cols * F32);
          if (softmaxUpdate(srow, o + <usize>r * ev4 * F32, m + <usize>r * F32, l + <usize>r * F32, rowMax, cols, ev4)) zeros = true;
        }
        const vt = vp + <usize>t0 * vRow;
        if (stored) {
          for (let r = 0; r < rows; r++) {
            const orow = o + <usize>r * ev4 * F32;
            const prow = s + <usize>r * S_ROW;
            if (format == KvFormat.Q8) accumulatePV1Q8(orow, prow, vt, vScale + <usize>t0 * vRow, vRow, cols, Ev, pairs);
            else if (format == KvFormat.F16Finite) {
              if (zeros) accumulatePV1F16(orow, prow, vt, vRow, cols, Ev, true, true);
              else accumulatePV1F16(orow, prow, vt, vRow, cols, Ev, false, true);
            } else if (zeros) accumulatePV1F16(orow, prow, vt, vRow, cols, Ev, true, false);
            else accumulatePV1F16(orow, prow, vt, vRow, cols, Ev, false, false);
          }
        } else if (rows == 1) {
          if (zeros) accumulatePV1(o, s, vt, vRow, cols, ev4, true);
          else accumulatePV1(o, s, vt, vRow, cols, ev4, false);
        } else if (zeros) accumulatePV(o, s, vt, vRow, cols, ev4, true);
        else accumulatePV(o, s, vt, vRow, cols, ev4, false);
      }
    }
    for (let r = 0; r < rows; r++) {
      const i = r0 + r;
      const sum = load<f32>(l + <usize>r * F32);
      storeRow(out + <usize>i * <usize>outStride * F32, o + <usize>r * ev4 * F32, Ev, sum);
      if (stats) {
        store<f32>(stats + <usize>i * 8, load<f32>(m + <usize>r * F32));
        store<f32>(stats + <usize>i * 8, sum, 4);
      }
      if (weights && !rawScores) normalizeWeights(weights + <usize>i * <usize>wRow * F32, Lk, load<f32>(m + <usize>r * F32), sum);
    }
  }
}

// out (rows, Ev) = the softmax over the keys of two passes, from each pass's normalised output and
// its rows' (max, sum) stats: weights l1 e^(m1 - M) and l2 e^(m2 - M), M = max(m1, m2). Rows of
// out and out2 are outStride and out2Stride apart; a row that neither pass saw stays zeros.
export function attention_f32_merge(out: usize, outStride: i32, stats: usize, out2: usize, out2Stride: i32, stats2: usize, rows: i32, Ev: i32): void {
  for (let i = 0; i < rows; i++) {
    const m1 = load<f32>(stats + <usize>i * 8);
    const l1 = load<f32>(stats + <usize>i * 8, 4);
    const m2 = load<f32>(stats2 + <usize>i * 8);
    const l2 = load<f32>(stats2 + <usize>i * 8, 4);
    if (l2 == 0) continue;
    const big = l1 == 0 ? m2 : max(m1, m2);
    const w1 = l1 == 0 ? <f32>0 : l1 * exp_f32(m1 - big);
    const w2 = l2 * exp_f32(m2 - big);
    const total = w1 + w2;
    const a = out + <usize>i * <usize>outStride * F32;
    const b = out2 + <usize>i * <usize>out2Stride * F32;
    for (let e = 0; e < Ev; e++) {
      const at = <usize>e * F32;
      store<f32>(a + at, (load<f32>(a + at) * w1 + load<f32>(b + at) * w2) / total);
    }
  }
}

@inline function fillRows(w: usize, wRow: i32, r0: i32, rows: i32, Lk: i32, value: f32): void {
  for (let r = r0; r < r0 + rows; r++) {
    const start = w + <usize>r * <usize>wRow * F32;
    for (let j: usize = 0; j < <usize>Lk; j++) store<f32>(start + j * F32, value);
  }
}

// true when the mask is -Inf on every (row, key) of the tile: nothing there can take part
@inline function tileMasked(mask: usize, maskRow: i32, r0: i32, rows: i32, t0: i32, cols: i32): bool {
  const ninf = f32x4.splat(NEG_INF);
  for (let r = 0; r < rows; r++) {
    const mrow = mask + (<usize>(r0 + r) * <usize>maskRow + <usize>t0) * F32;
    let j = 0;
    for (; j + 4 <= cols; j += 4) {
      if (v128.any_true(f32x4.ne(v128.load(mrow + <usize>j * F32), ninf))) return false;
    }
    for (; j < cols; j++) {
      if (load<f32>(mrow + <usize>j * F32) != NEG_INF) return false;
    }
  }
  return true;
}

// pass 1: s (BR, BC) <- q rows r0.. (BR, E) . Kt columns t0.. (E, cols8); rows past Lq repeat the
// last row (their results are never read)
@inline function scoreTile(s: usize, q: usize, qRow: usize, kt: usize, r0: i32, Lq: i32, t0: i32, cols8: i32, E: i32): void {
  const q0 = q + <usize>r0 * qRow;
  const q1 = r0 + 1 < Lq ? q0 + qRow : q0;
  const q2 = r0 + 2 < Lq ? q1 + qRow : q1;
  const q3 = r0 + 3 < Lq ? q2 + qRow : q2;
  for (let c = 0; c < cols8; c += 8) {
    tile_4x8(s + <usize>c * F32, S_ROW, q0, q1, q2, q3, kt + <usize>((t0 + c) >> 3) * <usize>E * 8 * F32, 32, E);
  }
}

// pass 2 for one row: s[j] = s[j] * scale + mask[j] for lower <= j < limit, -Inf elsewhere up to
// cols8; returns the max
@inline function maskScores(srow: usize, mrow: usize, lower: i32, limit: i32, cols8: i32, scale: f32): f32 {
  const sc = f32x4.splat(scale);
  const ninf = f32x4.splat(NEG_INF);
  let vmax = ninf;
  let j = 0;
  for (; j < min(lower, cols8); j++) store<f32>(srow + <usize>j * F32, NEG_INF);
  for (; j + 4 <= limit; j += 4) {
    const at = <usize>j * F32;
    let x = f32x4.mul(v128.load(srow + at), sc);
    if (mrow) {
      const mk = v128.load(mrow + at);
      x = v128.bitselect(ninf, f32x4.add(x, mk), f32x4.eq(mk, ninf));
    }
    v128.store(srow + at, x);
    vmax = f32x4.max(vmax, x);
  }
  let rowMax = hmax_f32x4(vmax);
  for (; j < limit; j++) {
    const at = <usize>j * F32;
    let x = load<f32>(srow + at) * scale;
    if (mrow) x = masked(x, load<f32>(mrow + at));
    store<f32>(srow + at, x);
    rowMax = max(rowMax, x);
  }
  for (j = max(j, 0); j < cols8; j++) store<f32>(srow + <usize>j * F32, NEG_INF);
  return rowMax;
}

// pass 2 with the extras, element by element: s = cap * tanh(s * scale / cap) - slope * |d| + mask,
// where d = (i + diag) - j, and -Inf where d is not a multiple of the dilation; `at` is i + diag - t0
function shapeScores(srow: usize, mrow: usize, lower: i32, limit: i32, cols8: i32, scale: f32, at: i32, dilation: i32, softcap: f32, slope: f32): f32 {
  let rowMax = NEG_INF;
  for (let j = 0; j < cols8; j++) {
    const ptr = srow + <usize>j * F32;
    if (j < lower || j >= limit) {
      store<f32>(ptr, NEG_INF);
      continue;
    }
    const d = at - j;
    if (dilation > 1 && d % dilation != 0) {
      store<f32>(ptr, NEG_INF);
      continue;
    }
    let x = load<f32>(ptr) * scale;
    if (softcap != 0) x = softcap * tanh_f32(x / softcap);
    if (slope != 0) x -= slope * <f32>abs(d);
    if (mrow) x = masked(x, load<f32>(mrow + <usize>j * F32));
    store<f32>(ptr, x);
    rowMax = max(rowMax, x);
  }
  return rowMax;
}

// a score plus its mask; -Inf where the mask is -Inf, whatever the score (even NaN)
@inline function masked(x: f32, mask: f32): f32 {
  return mask == NEG_INF ? NEG_INF : x + mask;
}

// tanh from the kernels' exp: odd Taylor series below 1/8 (error < 1e-9), else (1 - e^-2|x|) / (1 + e^-2|x|)
@inline function tanh_f32(x: f32): f32 {
  const a = abs(x);
  if (a < 0.125) {
    const x2 = x * x;
    return x * (<f32>1 + x2 * (<f32>(-1.0 / 3) + x2 * (<f32>(2.0 / 15) + x2 * <f32>(-17.0 / 315))));
  }
  const e = exp_f32(<f32>-2 * a);
  const t: f32 = (<f32>1 - e) / (<f32>1 + e);
  return x < 0 ? -t : t;
}

// pass 3 for one row: p = e^(s - m_new) in place, l and the output row rescaled to the new max;
// returns whether some p of the cols keys is exactly 0 (pass 4 then keeps it off the values)
@inline function softmaxUpdate(srow: usize, orow: usize, m: usize, l: usize, rowMax: f32, cols: i32, ev4: usize): bool {
  const cols8 = <i32>roundUp8(cols);
  const mOld = load<f32>(m);
  const mNew = max(mOld, rowMax);
  if (mNew == NEG_INF) {
    // nothing has taken part yet: all of p is 0
    memory.fill(srow, 0, <usize>cols8 * F32);
    return cols > 0;
  }
  const mv = f32x4.splat(mNew);
  const zero = f32x4.splat(0);
  let sum = zero;
  let zeros = zero;
  for (let j = 0; j < cols8; j += 4) {
    const at = <usize>j * F32;
    const p = exp_f32x4(f32x4.sub(v128.load(srow + at), mv));
    v128.store(srow + at, p);
    sum = f32x4.add(sum, p);
    if (j + 4 <= cols) zeros = v128.or(zeros, f32x4.eq(p, zero));
  }
  let anyZero = v128.any_true(zeros);
  for (let j = cols & ~3; j < cols; j++) if (load<f32>(srow + <usize>j * F32) == 0) anyZero = true;
  const correction = exp_f32(mOld - mNew);
  store<f32>(m, mNew);
  store<f32>(l, load<f32>(l) * correction + hsum_f32x4(sum));
  const cv = f32x4.splat(correction);
  for (let e: usize = 0; e < ev4 * F32; e += 16) v128.store(orow + e, f32x4.mul(v128.load(orow + e), cv));
  return anyZero;
}

// pass 4: o (BR, ev4) += p (BR, BC; cols used) . v (cols, ev4), rows of v vRow bytes apart
@inline function accumulatePV(o: usize, p: usize, v: usize, vRow: usize, cols: i32, ev4: usize, safe: bool): void {
  const oRow = ev4 * F32;
  let c: usize = 0;
  for (; c + 8 <= ev4; c += 8) {
    const op = o + c * F32;
    let a00 = v128.load(op), a01 = v128.load(op, 16);
    let a10 = v128.load(op + oRow), a11 = v128.load(op + oRow, 16);
    let a20 = v128.load(op + 2 * oRow), a21 = v128.load(op + 2 * oRow, 16);
    let a30 = v128.load(op + 3 * oRow), a31 = v128.load(op + 3 * oRow, 16);
    let vp = v + c * F32;
    let pp = p;
    for (let j = 0; j < cols; j++) {
      const v0 = v128.load(vp);
      const v1 = v128.load(vp, 16);
      let x = v128.load32_splat(pp);
      a00 = pv(x, v0, a00, safe);
      a01 = pv(x, v1, a01, safe);
      x = v128.load32_splat(pp, S_ROW);
      a10 = pv(x, v0, a10, safe);
      a11 = pv(x, v1, a11, safe);
      x = v128.load32_splat(pp, 2 * S_ROW);
      a20 = pv(x, v0, a20, safe);
      a21 = pv(x, v1, a21, safe);
      x = v128.load32_splat(pp, 3 * S_ROW);
      a30 = pv(x, v0, a30, safe);
      a31 = pv(x, v1, a31, safe);
      vp += vRow;
      pp += F32;
    }
    v128.store(op, a00);
    v128.store(op, a01, 16);
    v128.store(op + oRow, a10);
    v128.store(op + oRow, a11, 16);
    v128.store(op + 2 * oRow, a20);
    v128.store(op + 2 * oRow, a21, 16);
    v128.store(op + 3 * oRow, a30);
    v128.store(op + 3 * oRow, a31, 16);
  }
  if (c < ev4) {
    // one vector of columns left
    const op = o + c * F32;
    let a0 = v128.load(op), a1 = v128.load(op + oRow), a2 = v128.load(op + 2 * oRow), a3 = v128.load(op + 3 * oRow);
    let vp = v + c * F32;
    let pp = p;
    for (let j = 0; j < cols; j++) {
      const v0 = v128.load(vp);
      a0 = pv(v128.load32_splat(pp), v0, a0, safe);
      a1 = pv(v128.load32_splat(pp, S_ROW), v0, a1, safe);
      a2 = pv(v128.load32_splat(pp, 2 * S_ROW), v0, a2, safe);
      a3 = pv(v128.load32_splat(pp, 3 * S_ROW), v0, a3, safe);
      vp += vRow;
      pp += F32;
    }
    v128.store(op, a0);
    v128.store(op + oRow, a1);
    v128.store(op + 2 * oRow, a2);
    v128.store(op + 3 * oRow, a3);
  }
}

// pass 4 for a block of one query (decoding): o (ev4) += p (cols) . v (cols, ev4), 32 columns of
// accumulators at a time, so each row of v is loaded once per 32 columns and no work is wasted
@inline function accumulatePV1(o: usize, p: usize, v: usize, vRow: usize, cols: i32, ev4: usize, safe: bool): void {
  let c: usize = 0;
  for (; c + 32 <= ev4; c += 32) {
    const op = o + c * F32;
    let a0 = v128.load(op), a1 = v128.load(op, 16), a2 = v128.load(op, 32), a3 = v128.load(op, 48);
    let a4 = v128.load(op, 64), a5 = v128.load(op, 80), a6 = v128.load(op, 96), a7 = v128.load(op, 112);
    let vp = v + c * F32;
    for (let j = 0; j < cols; j++) {
      const x = v128.load32_splat(p + <usize>j * F32);
      a0 = pv(x, v128.load(vp), a0, safe);
      a1 = pv(x, v128.load(vp, 16), a1, safe);
      a2 = pv(x, v128.load(vp, 32), a2, safe);
      a3 = pv(x, v128.load(vp, 48), a3, safe);
      a4 = pv(x, v128.load(vp, 64), a4, safe);
      a5 = pv(x, v128.load(vp, 80), a5, safe);
      a6 = pv(x, v128.load(vp, 96), a6, safe);
      a7 = pv(x, v128.load(vp, 112), a7, safe);
      vp += vRow;
    }
    store8_v128(op, a0, a1, a2, a3, a4, a5, a6, a7);
  }
  for (; c < ev4; c += 4) {
    const op = o + c * F32;
    let a = v128.load(op);
    let vp = v + c * F32;
    for (let j = 0; j < cols; j++) {
      a = pv(v128.load32_splat(p + <usize>j * F32), v128.load(vp), a, safe);
      vp += vRow;
    }
    v128.store(op, a);
  }
}

// out row (Ev) = o row / sum; zeros when sum is 0 (every key masked)
@inline function storeRow(dst: usize, orow: usize, Ev: i32, sum: f32): void {
  if (sum == 0) {
    memory.fill(dst, 0, <usize>Ev * F32);
    return;
  }
  const sv = f32x4.splat(sum);
  let e = 0;
  for (; e + 4 <= Ev; e += 4) {
    const at = <usize>e * F32;
    v128.store(dst + at, f32x4.div(v128.load(orow + at), sv));
  }
  for (; e < Ev; e++) {
    const at = <usize>e * F32;
    store<f32>(dst + at, load<f32>(orow + at) / sum);
  }
}

// weights row (Lk) holds the masked scores (-Inf where skipped): w = e^(w - m) / sum, zeros when sum is 0
@inline function normalizeWeights(w: usize, Lk: i32, rowMax: f32, sum: f32): void {
  if (sum == 0) {
    memory.fill(w, 0, <usize>Lk * F32);
    return;
  }
  const mv = f32x4.splat(rowMax);
  const sv = f32x4.splat(sum);
  let j = 0;
  for (; j + 4 <= Lk; j += 4) {
    const at = <usize>j * F32;
    v128.store(w + at, f32x4.div(exp_f32x4(f32x4.sub(v128.load(w + at), mv)), sv));
  }
  for (; j < Lk; j++) {
    const at = <usize>j * F32;
    store<f32>(w + at, exp_f32(load<f32>(w + at) - rowMax) / sum);
  }
}
