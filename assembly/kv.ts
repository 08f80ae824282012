import { KvFormat } from "../src/enums";
import { quantizeRow_i8 } from "./gemm-q8";
import { f16_to_f32x4, f32_to_f16 } from "./half";
import { fma_f32x4, hmax_f32x4, hsum_f32x4, sums4_f32x4, sums4_i32x4 } from "./simd";

// Keys and values stored as halves or int8 (a KV cache's `format`, KvFormat in src/enums.ts), and
// the attention kernel's reads of them. A row of a cache holds every key/value head of one token:
//   F32: heads * E float32;  F16: heads * E halves;
//   Q8:  heads * E int8, then heads float32 scales (head g's E values are q * scale, |q| <= 127).
// Rows are `row` bytes apart, so a head's keys are E values every `row` bytes and its scales one
// float every `row` bytes: both read with the same stride.
//
// Decoding reads them in place. Q8 keys: the query row is quantized to int16 (QMAX_Q levels, so
// E products of |q| <= QMAX_Q and |k| <= 127 fit an int32) and multiplied on i32x4.dot_i16x8_s;
// a score is then idot * sq * sk. Q8 values: a tile's weights p_j * sv_j are quantized to int16
// against their max (32767 levels) and summed over pairs of keys on dot_i16x8_s. Both roundings
// are relative 2^-16 of the row's max, far below the int8 values' own 2^-8. F16 keys and values
// are widened exactly (half.ts) and multiplied in float32; when they hold no Infinity or NaN
// (F16Finite), in 2 operations: a half sign-extended and shifted left by 13, its three sign
// copies cleared, is the float32 of its value times 2^-112 (normal and subnormal alike), and the
// 2^112 goes into the query and the probabilities instead (exact: powers of two), so the products
// and sums are those of the exact widening, bit for bit.

const F32: usize = 4;
const W_LEVELS: f32 = 32767;
const TWO_112: f32 = 5.192296858534828e33;
const SIGN_EXP_MANT: v128 = i32x4(0x8fffe000, 0x8fffe000, 0x8fffe000, 0x8fffe000);

@inline export function isF16(format: i32): bool {
  return format == KvFormat.F16 || format == KvFormat.F16Finite;
}

// 4 halves at p as float32: exactly (f16_to_f32x4), or, `finite`, as their values times 2^-112
@inline function widen4(p: usize, finite: bool): v128 {
  if (finite) return v128.and(i32x4.shl(v128.load16x4_s(p), 13), SIGN_EXP_MANT);
  return f16_to_f32x4(v128.load16x4_u(p));
}

// bytes of one stored row of `heads` heads of E values
export function kv_row_bytes(heads: i32, E: i32, format: i32): usize {
  const n = <usize>heads * <usize>E;
  if (isF16(format)) return 2 * n;
  if (format == KvFormat.Q8) return n + <usize>heads * F32;
  return n * F32;
}

// dst (rows, row bytes apart) <- src (rows, heads * E) float32 rows srcStride elements apart, stored
// in `format` (F16: rounded to nearest even, |x| >= 65520 to Infinity; Q8: per head as
// quantize_rows_i8 quantizes a row: scale max |x| / 127, NaN in a head gives scale NaN). Returns
// how many halves stored are Infinity or NaN (F16; 0 for the other formats).
export function kv_store_rows(dst: usize, row: i32, src: usize, srcStride: i32, rows: i32, heads: i32, E: i32, format: i32): i32 {
  const n = heads * E;
  let nonFinite = 0;
  for (let r = 0; r < rows; r++) {
    const d = dst + <usize>r * <usize>row;
    const s = src + <usize>r * <usize>srcStride * F32;
    if (format == KvFormat.F32) memory.copy(d, s, <usize>n * F32);
    else if (isF16(format)) {
      for (let i = 0; i < n; i++) {
        const h = f32_to_f16(load<f32>(s + <usize>i * F32));
        if ((h & 0x7c00) == 0x7c00) nonFinite++;
        store<u16>(d + <usize>i * 2, h);
      }
    } else {
      for (let g = 0; g < heads; g++) {
        const scale = quantizeRow_i8(d + <usize>(g * E), s + <usize>(g * E) * F32, E);
        store<f32>(d + <usize>n + <usize>g * F32, scale);
      }
    }
  }
  return nonFinite;
}

// element e of a stored head row at p (its scale at sp when Q8), as float32
@inline export function kvLoad(p: usize, sp: usize, e: i32, format: i32): f32 {
  if (isF16(format)) return f32x4.extract_lane(f16_to_f32x4(i32x4.splat(<i32>load<u16>(p + <usize>e * 2))), 0);
  if (format == KvFormat.Q8) return <f32>load<i8>(p + <usize>e) * load<f32>(sp);
  return load<f32>(p + <usize>e * F32);
}

// bytes of one stored value
@inline export function kvElem(format: i32): usize {
  return isF16(format) ? 2 : format == KvFormat.Q8 ? 1 : 4;
}

// the int16 levels of a quantized query row: E products of |q| <= levels and |k| <= 127 sum within an int32
@inline function queryLevels(E: i32): f32 {
  return <f32>min(32767, 2147483647 / (127 * E));
}

// 8 float32 at p times inv, rounded to nearest (ties to even), as 8 int16 (|x * inv| <= 32767)
@inline function toI16x8(p: usize, inv: v128): v128 {
  const a = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p), inv)));
  return i16x8.narrow_i32x4_s(a, i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 16), inv))));
}

// qi (E) int16 = q (E) float32 quantized to queryLevels(E) symmetric levels, E a multiple of 8;
// returns the scale (max |q| / levels: NaN when q holds NaN, Infinity for an infinite q: the
// row's scores are then NaN or infinite, as in float32)
@inline export function quantizeQuery_i16(qi: usize, q: usize, E: i32): f32 {
  let mx = f32x4.splat(0);
  for (let e: usize = 0; e < <usize>E; e += 4) mx = f32x4.max(mx, f32x4.abs(v128.load(q + e * F32)));
  const max = hmax_f32x4(mx);
  const levels = queryLevels(E);
  const inv = f32x4.splat(max > 0 && max < Infinity ? levels / max : 0);
  for (let e: usize = 0; e < <usize>E; e += 8) v128.store(qi + e * 2, toI16x8(q + e * F32, inv));
  return max / levels;
}

// pass 1 on Q8 keys in place: s[r, j] = idot(qi row r, k row t0 + j) * sq[r] * sk[t0 + j], four keys
// at a time; E a multiple of 16. qi rows are E int16 apart; k and its scales kRow bytes apart.
@inline export function scoreRowsQ8(s: usize, sRow: usize, qi: usize, sq: usize, k: usize, ks: usize, kRow: usize, rows: i32, t0: i32, cols: i32, E: i32): void {
  const qRow = <usize>E * 2;
  for (let r = 0; r < rows; r++) {
    const qr = qi + <usize>r * qRow;
    const scaleQ = f32x4.splat(load<f32>(sq + <usize>r * F32));
    const srow = s + <usize>r * sRow;
    let j = 0;
    for (; j + 4 <= cols; j += 4) {
      const k0 = k + <usize>(t0 + j) * kRow;
      const k1 = k0 + kRow;
      const k2 = k1 + kRow;
      const k3 = k2 + kRow;
      let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
      for (let e: usize = 0; e < <usize>E; e += 16) {
        const x0 = v128.load(qr + e * 2);
        const x1 = v128.load(qr + e * 2, 16);
        let b = v128.load(k0 + e);
        a0 = i32x4.add(a0, i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(b), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(b), x1)));
        b = v128.load(k1 + e);
        a1 = i32x4.add(a1, i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(b), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(b), x1)));
        b = v128.load(k2 + e);
        a2 = i32x4.add(a2, i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(b), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(b), x1)));
        b = v128.load(k3 + e);
        a3 = i32x4.add(a3, i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(b), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(b), x1)));
      }
      const dots = sums4_i32x4(a0, a1, a2, a3);
      const sk = ks + <usize>(t0 + j) * kRow;
      const scales = f32x4.replace_lane(
        f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(load<f32>(sk)), 1, load<f32>(sk + kRow)), 2, load<f32>(sk + 2 * kRow)),
        3,
        load<f32>(sk + 3 * kRow),
      );
      v128.store(srow + <usize>j * F32, f32x4.mul(f32x4.convert_i32x4_s(dots), f32x4.mul(scales, scaleQ)));
    }
    for (; j < cols; j++) {
      const kj = k + <usize>(t0 + j) * kRow;
      let a = i32x4.splat(0);
      for (let e: usize = 0; e < <usize>E; e += 16) {
        const b = v128.load(kj + e);
        a = i32x4.add(a, i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(b), v128.load(qr + e * 2)));
        a = i32x4.add(a, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(b), v128.load(qr + e * 2, 16)));
      }
      const dot = i32x4.extract_lane(a, 0) + i32x4.extract_lane(a, 1) + i32x4.extract_lane(a, 2) + i32x4.extract_lane(a, 3);
      store<f32>(srow + <usize>j * F32, <f32>dot * (load<f32>(ks + <usize>(t0 + j) * kRow) * f32x4.extract_lane(scaleQ, 0)));
    }
  }
}

// 4 values of a key row at element e as float32: stored as float32 (T = f32), or halves (T = u16:
// widen4, `finite` as there)
@inline function load4<T>(p: usize, e: usize, finite: bool): v128 {
  if (sizeof<T>() == 2) return widen4(p + e * 2, finite);
  return v128.load(p + e * F32);
}

// one value of a key row, for the tails of E % 4 (float32 keys only: halves come in multiples of 4)
@inline function load1<T>(p: usize, e: usize): f32 {
  if (sizeof<T>() == 2) return kvLoad(p, 0, <i32>e, KvFormat.F16);
  return load<f32>(p + e * F32);
}

// pass 1 with the keys read in place, stored as T (f32, or u16 halves): s[r, j] = q row (r0 + r) .
// k row (t0 + j), four keys at a time, summed across lanes at the end; columns cols..cols8 are left
// for maskScores to fill. q rows qRow bytes apart, k rows kRow bytes apart; halves need E a
// multiple of 4, and with `finite` (no Infinity or NaN) are widened to 2^-112 of their values
// against q rows times 2^112 (scaleQuery_f16).
@inline export function scoreRows<T>(
  s: usize, sRow: usize, q: usize, qRow: usize, k: usize, kRow: usize, r0: i32, rows: i32, t0: i32, cols: i32, E: i32, finite: bool,
): void {
  const E4 = <usize>(E & ~3);
  for (let r = 0; r < rows; r++) {
    const qr = q + <usize>(r0 + r) * qRow;
    const srow = s + <usize>r * sRow;
    let j = 0;
    for (; j + 4 <= cols; j += 4) {
      const k0 = k + <usize>(t0 + j) * kRow;
      const k1 = k0 + kRow;
      const k2 = k1 + kRow;
      const k3 = k2 + kRow;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let e: usize = 0; e < E4; e += 4) {
        const x = v128.load(qr + e * F32);
        a0 = fma_f32x4(x, load4<T>(k0, e, finite), a0);
        a1 = fma_f32x4(x, load4<T>(k1, e, finite), a1);
        a2 = fma_f32x4(x, load4<T>(k2, e, finite), a2);
        a3 = fma_f32x4(x, load4<T>(k3, e, finite), a3);
      }
      let dots = sums4_f32x4(a0, a1, a2, a3);
      for (let e = E4; e < <usize>E; e++) {
        const x = f32x4.splat(load<f32>(qr + e * F32));
        const ks = f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(load1<T>(k0, e)), 1, load1<T>(k1, e)), 2, load1<T>(k2, e)), 3, load1<T>(k3, e));
        dots = fma_f32x4(x, ks, dots);
      }
      v128.store(srow + <usize>j * F32, dots);
    }
    for (; j < cols; j++) {
      const kj = k + <usize>(t0 + j) * kRow;
      let a = f32x4.splat(0);
      for (let e: usize = 0; e < E4; e += 4) a = fma_f32x4(v128.load(qr + e * F32), load4<T>(kj, e, finite), a);
      let dot = hsum_f32x4(a);
      for (let e = E4; e < <usize>E; e++) dot += load<f32>(qr + e * F32) * load1<T>(kj, e);
      store<f32>(srow + <usize>j * F32, dot);
    }
  }
}

// acc + p v, where with `safe` a p of exactly 0 adds 0 whatever v holds (not 0 x NaN)
@inline export function pv(p: v128, v: v128, acc: v128, safe: bool): v128 {
  if (safe) return fma_f32x4(p, v128.and(v, f32x4.ne(p, f32x4.splat(0))), acc);
  return fma_f32x4(p, v, acc);
}

// qs (E) = q (E) * 2^112, for scoreRows<u16> over finite keys; false (qs not usable) when some |q|
// is 2^16 or more, or NaN, where the product could overflow
@inline export function scaleQuery_f16(qs: usize, q: usize, E: i32): bool {
  const big = f32x4.splat(65536);
  const two = f32x4.splat(TWO_112);
  let fits = true;
  for (let e: usize = 0; e < <usize>E; e += 4) {
    const x = v128.load(q + e * F32);
    if (!i32x4.all_true(f32x4.lt(f32x4.abs(x), big))) fits = false;
    v128.store(qs + e * F32, f32x4.mul(x, two));
  }
  return fits;
}

// pass 4 on F16 values in place for one query row: o (Ev) += p (cols) . v (cols, Ev) widened, 16
// columns at a time; Ev a multiple of 4; v rows vRow bytes apart. `finite`: values without
// Infinity or NaN, widened to 2^-112 of their values, against p times 2^112 (p <= 1: exact)
@inline export function accumulatePV1F16(o: usize, p: usize, v: usize, vRow: usize, cols: i32, Ev: i32, safe: bool, finite: bool): void {
  const pScale = f32x4.splat(finite ? TWO_112 : 1);
  let c: usize = 0;
  for (; c + 16 <= <usize>Ev; c += 16) {
    const op = o + c * F32;
    let a0 = v128.load(op), a1 = v128.load(op, 16), a2 = v128.load(op, 32), a3 = v128.load(op, 48);
    let vp = v + c * 2;
    for (let j = 0; j < cols; j++) {
      const x = finite ? f32x4.mul(v128.load32_splat(p + <usize>j * F32), pScale) : v128.load32_splat(p + <usize>j * F32);
      a0 = pv(x, widen4(vp, finite), a0, safe);
      a1 = pv(x, widen4(vp + 8, finite), a1, safe);
      a2 = pv(x, widen4(vp + 16, finite), a2, safe);
      a3 = pv(x, widen4(vp + 24, finite), a3, safe);
      vp += vRow;
    }
    v128.store(op, a0);
    v128.store(op, a1, 16);
    v128.store(op, a2, 32);
    v128.store(op, a3, 48);
  }
  for (; c < <usize>Ev; c += 4) {
    const op = o + c * F32;
    let a = v128.load(op);
    let vp = v + c * 2;
    for (let j = 0; j < cols; j++) {
      const x = finite ? f32x4.mul(v128.load32_splat(p + <usize>j * F32), pScale) : v128.load32_splat(p + <usize>j * F32);
      a = pv(x, widen4(vp, finite), a, safe);
      vp += vRow;
    }
    v128.store(op, a);
  }
}

// pass 4 on Q8 values in place for one query row: o (Ev) += sum_j p_j sv_j v_j over the tile's
// cols keys, the weights w_j = p_j sv_j (0 where p_j is 0) quantized to int16 against their max and
// paired (w_j, w_j+1) in `pairs` (cols / 2 i32) for dot_i16x8_s over two keys' interleaved bytes;
// Ev a multiple of 16; v and its scales vRow bytes apart; p holds cols rounded up to 8 (zeros
// past cols), and is overwritten. A NaN or infinite weight (a value scale of NaN) makes the row
// NaN, as its product would in float32.
@inline export function accumulatePV1Q8(o: usize, p: usize, v: usize, vs: usize, vRow: usize, cols: i32, Ev: i32, pairs: usize): void {
  if (Ev == 0) return; // no values, and no scales stored after them to read
  let wmax: f32 = 0;
  for (let j = 0; j < cols; j++) {
    const pj = load<f32>(p + <usize>j * F32);
    const w = pj == 0 ? <f32>0 : pj * load<f32>(vs + <usize>j * vRow);
    store<f32>(p + <usize>j * F32, w);
    wmax = max(wmax, w);
  }
  if (wmax == 0) return;
  if (!(wmax < Infinity)) {
    for (let c: usize = 0; c < <usize>Ev; c++) store<f32>(o + c * F32, NaN);
    return;
  }
  // int16 weights, consecutive: the i32 at pairs + 2j holds (w_j, w_j+1) for even j
  const inv = f32x4.splat(W_LEVELS / wmax);
  for (let j: usize = 0; j < <usize>cols; j += 8) v128.store(pairs + j * 2, toI16x8(p + j * F32, inv));
  const ws = f32x4.splat(wmax / W_LEVELS);
  let c: usize = 0;
  for (; c < <usize>Ev; c += 16) {
    let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
    let vp = v + c;
    for (let j = 0; j < cols; j += 2) {
      const w = v128.load32_splat(pairs + <usize>j * 2);
      const x = v128.load(vp);
      const y = j + 1 < cols ? v128.load(vp + vRow) : x; // an odd last key pairs with itself, weight 0
      const lo = v128.shuffle<i8>(x, y, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      const hi = v128.shuffle<i8>(x, y, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
      a0 = i32x4.add(a0, i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(lo), w));
      a1 = i32x4.add(a1, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(lo), w));
      a2 = i32x4.add(a2, i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(hi), w));
      a3 = i32x4.add(a3, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(hi), w));
      vp += 2 * vRow;
    }
    const op = o + c * F32;
    v128.store(op, fma_f32x4(f32x4.convert_i32x4_s(a0), ws, v128.load(op)));
    v128.store(op, fma_f32x4(f32x4.convert_i32x4_s(a1), ws, v128.load(op, 16)), 16);
    v128.store(op, fma_f32x4(f32x4.convert_i32x4_s(a2), ws, v128.load(op, 32)), 32);
    v128.store(op, fma_f32x4(f32x4.convert_i32x4_s(a3), ws, v128.load(op, 48)), 48);
  }
}

// dst = keys (Lk, E) of a stored head, widened to float32 and packed as pack_f32_t packs them
// (panels of 8 keys; zero keys up to Lk rounded to 8); rows and scales row bytes apart
export function kv_pack_t(dst: usize, k: usize, ks: usize, row: i32, Lk: i32, E: i32, format: i32): void {
  const rows8 = (Lk + 7) & ~7;
  const panel = <usize>E * 8 * F32;
  for (let r = 0; r < rows8; r++) {
    const out = dst + <usize>(r >> 3) * panel + <usize>(r & 7) * F32;
    const p = k + <usize>r * <usize>row;
    const sp = ks + <usize>r * <usize>row;
    for (let e = 0; e < E; e++) store<f32>(out + <usize>e * 8 * F32, r < Lk ? kvLoad(p, sp, e, format) : 0);
  }
}

// dst (Lk, ev4) float32 = values (Lk, Ev) of a stored head widened, zero columns up to ev4
export function kv_widen(dst: usize, ev4: i32, v: usize, vs: usize, row: i32, Lk: i32, Ev: i32, format: i32): void {
  for (let j = 0; j < Lk; j++) {
    const p = v + <usize>j * <usize>row;
    const sp = vs + <usize>j * <usize>row;
    const d = dst + <usize>j * <usize>ev4 * F32;
    for (let e = 0; e < ev4; e++) store<f32>(d + <usize>e * F32, e < Ev ? kvLoad(p, sp, e, format) : 0);
  }
}
