// Integer matrix products for int8 weights ("q8"): weights quantized once at load, one scale per
// output channel; activations quantized per row on every call; int32 sums, exact; then the same
// fused store as gemm_f32 (scale, bias, activation, residual).
//
// Glossary: M rows of activations, N output channels (rows of the torch weight W (N, K)), K inputs.
// K4 = K rounded up to 4, N8 = N rounded up to 8: the padding the kernels read, all zeros.
//
// One kernel for both builds: i32x4.dot_i16x8_s on int8 widened to int16 (weights once per group
// of 64 channels, into the workspace, or in registers for fewer than 4 rows; activations once per
// block of 4 rows). Its sums are exact integers, so both builds
// give the same bits (for act none/relu; gelu and silu go through exp_f32x4, whose multiply-adds
// the relaxed build may fuse). The relaxed build does not use i32x4.relaxed_dot_i8x16_i7x16_add_s:
//   - its second operand must lie in [0, 127] (x86 reads it unsigned, Arm signed), so one side
//     would be 7-bit: activations in [-63, 63] (+64 to make them unsigned) put a BERT-base layer at
//     1.15% relative RMS from f32, past the 1% target; 8-bit activations give 0.7%;
//   - splitting an 8-bit operand in two 7-bit halves doubles the products;
//   - measured in Node 20 (V8 11.3, no AVX-VNNI code): a 4x8 kernel on relaxed_dot + extadd + add
//     ran at the speed of this one (about 80 GOP/s both, M = 128, K = 768), and the fused
//     instruction is computed wrongly by V8 11.3's baseline compiler, Liftoff (it returns twice the
//     products and drops the accumulator) until TurboFan takes over.
// bench/peak.mjs measures both instructions.
import { storeTile_f32 } from "./store";
import { dotHigh_i8, dotLow_i8, hmax_f32x4 } from "./simd";
import { roundUp4, roundUp8 } from "./pack";
import { tile_i16_4x8 } from "./tile-i16";

const F32: usize = 4;
const I32: usize = 4;
const NC: i32 = 64; // output channels per panel: K4 x 64 bytes of weights stay in cache across row blocks

const QMAX: f32 = 127; // symmetric int8: q in [-127, 127] (pre-quantized weights may also hold -128)
// rows whose max |x| is below this quantize to zeros: 127 / max would overflow f32 (2^-100 keeps
// 127 / max <= 127 * 2^100 and max / 127 >= 2^-107, normal)
const TINY: f32 = 7.888609052210118e-31; // 2^-100

// out_q (M, K4) int8 and out_scales (M) f32 = x (M, K) quantized per row, symmetric:
//   scale = max|x_row| / 127,  q = nearest(x * fl(127 / max|x_row|)) (ties to even), |q| <= 127;
// columns K..K4 of out_q are zero. Activations (the form gemm_q8 takes) and weights (then packed by
// pack_q8 with srcStride = K4) alike. A row with NaN gets scale NaN (its outputs are NaN); a row
// whose max |x| is below 2^-100 gets zeros.
export function quantize_rows_i8(outQ: usize, outScales: usize, x: usize, M: i32, K: i32): void {
  const K4 = roundUp4(K);
  for (let m = 0; m < M; m++) {
    const dst = outQ + <usize>m * K4;
    store<f32>(outScales + <usize>m * F32, quantizeRow_i8(dst, x + <usize>m * <usize>K * F32, K));
    for (let k = K; k < <i32>K4; k++) store<i8>(dst + <usize>k, 0);
  }
}

// dst (K) int8 = row (K) f32 quantized as quantize_rows_i8 does; returns the scale (max |x| / 127)
@inline export function quantizeRow_i8(dst: usize, row: usize, K: i32): f32 {
  // pass 1: max |x|
  let mx = f32x4.splat(0);
  let k = 0;
  for (; k + 4 <= K; k += 4) mx = f32x4.max(mx, f32x4.abs(v128.load(row + <usize>k * F32)));
  let max = hmax_f32x4(mx);
  for (; k < K; k++) max = Mathf.max(max, Mathf.abs(load<f32>(row + <usize>k * F32)));
  // pass 2: q = nearest(x * inv), 16 at a time narrowed i32 -> i16 -> i8 (never saturating)
  const vinv = f32x4.splat(max >= TINY ? QMAX / max : 0); // NaN max: not >= TINY, q = 0
  k = 0;
  for (; k + 16 <= K; k += 16) {
    const p = row + <usize>k * F32;
    const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p), vinv)));
    const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 16), vinv)));
    const q2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 32), vinv)));
    const q3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 48), vinv)));
    v128.store(dst + <usize>k, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3)));
  }
  for (; k < K; k++) {
    const x = f32x4.splat(load<f32>(row + <usize>k * F32));
    store<i8>(dst + <usize>k, <i8>i32x4.extract_lane(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(x, vinv))), 0));
  }
  return max / QMAX;
}

// bytes of pack_q8's output: N8 panels of K4 x 8 bytes
export function pack_q8_bytes(N: i32, K: i32): usize {
  return roundUp8(N) * roundUp4(K);
}

// dst = int8 weights src (N, K), rows srcStride bytes apart, in panels of 8 output channels, the way
// the micro-kernel reads them: panel p (channels 8p..8p+7) at dst + p * K4 * 8, per pair of k 16 bytes
//   c0k0 c0k1 c1k0 c1k1 ... c7k0 c7k1
// (one v128 load: 8 channels x 2 k, the pairs dot_i16x8_s sums). Channels past N and k past K are zeros.
export function pack_q8(dst: usize, src: usize, srcStride: i32, N: i32, K: i32): void {
  const K4 = <i32>roundUp4(K);
  const N8 = <i32>roundUp8(N);
  const panel = <usize>K4 * 8;
  for (let n = 0; n < N8; n++) {
    const out = dst + <usize>(n >> 3) * panel + <usize>(n & 7) * 2;
    for (let k = 0; k < K4; k++) {
      const v: i8 = n < N && k < K ? load<i8>(src + <usize>n * <usize>srcStride + <usize>k) : 0;
      store<i8>(out + <usize>(k >> 1) * 16 + <usize>(k & 1), v);
    }
  }
}

// bytes of scratch gemm_q8 needs for inner dimension K: the 4 x 8 int32 tile, 4 rows of
// activations widened to int16, and one group of up to 8 panels widened to int16 (K4 x 16 bytes each)
export function gemm_q8_workspace(K: i32): usize {
  return 4 * 8 * I32 + 4 * roundUp4(K) * 2 + (NC >> 3) * roundUp4(K) * 16;
}

// out (M, N) = act((aq (M, K4) . Wq^T) * aScales[m] * wScales[n] + bias (N)) + residual (M, N)
//   aq, aScales: quantize_rows_i8's output for the activations a (M, K)
//   wq:          pack_q8's output for W (N, K); wScales (N) f32, one per output channel
//   bias, residual: 0 for none; residual may be out itself (x = x + f(x))
//   act:         Act (src/enums.ts), applied as in gemm_f32
//   work:        gemm_q8_workspace(K) bytes
// The sums are int32, exact (|sum| <= K4 * 127 * 128 < 2^31 for K < 132,000); rows past M repeat
// the last row and are not stored; channels past N are zeros of wq, not stored.
export function gemm_q8(out: usize, aq: usize, aScales: usize, wq: usize, wScales: usize, bias: usize, residual: usize, work: usize, M: i32, N: i32, K: i32, act: i32): void {
  const K4 = roundUp4(K);
  const panel = K4 * 8;
  const tile = work;
  const rowsAt = work + 4 * 8 * I32;
  const pairs = rowsAt + 4 * K4 * 2; // the group's panels widened, K4 x 16 bytes each
  const step = K4 * 2; // bytes between widened rows
  for (let jc = 0; jc < N; jc += NC) {
    const jEnd = min(N, jc + NC);
    if (M >= 4) widenPanels(pairs, wq + <usize>(jc >> 3) * panel, (jEnd - jc + 7) >> 3, K4);
    for (let r0 = 0; r0 < M; r0 += 4) {
      const rows = min(4, M - r0);
      widenRows(rowsAt, aq + <usize>r0 * K4, rows, K4);
      if (M < 4) {
        // fewer than 4 rows (decoding: one): each row alone on the int8 panels, each weight read
        // once per row (widening the group would not pay)
        for (let r = 0; r < rows; r++) {
          for (let c = jc; c < jEnd; c += 8) {
            tile_q8_1x8(tile, rowsAt + <usize>r * step, wq + <usize>(c >> 3) * panel, K4);
            storeTile(out, tile, aScales, wScales, bias, residual, r0 + r, 1, c, min(8, N - c), N, act);
          }
        }
        continue;
      }
      const a0 = rowsAt;
      const a1 = rows > 1 ? a0 + step : a0;
      const a2 = rows > 2 ? a1 + step : a1;
      const a3 = rows > 3 ? a2 + step : a2;
      for (let c = jc; c < jEnd; c += 8) {
        tile_i16_4x8<i32>(tile, a0, a1, a2, a3, 0, 0, 0, 0, pairs + <usize>((c - jc) >> 3) * K4 * 16, 0, 1, K4 >> 1);
        storeTile(out, tile, aScales, wScales, bias, residual, r0, rows, c, min(8, N - c), N, act);
      }
    }
  }
}

// `panels` consecutive pack_q8 panels at src -> dst, each widened to int16 (K4 x 16 bytes): per
// pair of k, channels 0..3 then 4..7 as i16x8 (the pairs dot_i16x8_s sums). One group at a time,
// reused by every block of 4 rows: the micro-kernel then loads int16 and does not widen.
@inline function widenPanels(dst: usize, src: usize, panels: i32, K4: usize): void {
  const end = src + <usize>panels * K4 * 8;
  for (; src < end; src += 16) {
    const w = v128.load(src);
    v128.store(dst, i16x8.extend_low_i8x16_s(w));
    v128.store(dst, i16x8.extend_high_i8x16_s(w), 16);
    dst += 32;
  }
}

// rows (rows, K4) int8 at src -> dst (rows, K4) int16, the form the micro-kernel splats
@inline function widenRows(dst: usize, src: usize, rows: i32, K4: usize): void {
  for (let r = 0; r < rows; r++) {
    const s = src + <usize>r * K4;
    const d = dst + <usize>r * K4 * 2;
    let k: usize = 0;
    for (; k + 8 <= K4; k += 8) v128.store(d + k * 2, v128.load8x8_s(s + k));
    for (; k < K4; k++) store<i16>(d + k * 2, <i16>load<i8>(s + k));
  }
}

// dst (1, 8) int32 = row a (K4 int16) . b (a pack_q8 panel, int8, widened here): two pairs of k
// per step into two sets of sums (integer sums: the order does not change them)
@inline function tile_q8_1x8(dst: usize, a: usize, b: usize, K4: usize): void {
  let c0 = i32x4.splat(0), c1 = i32x4.splat(0), d0 = i32x4.splat(0), d1 = i32x4.splat(0);
  const end = K4 * 2;
  for (let k: usize = 0; k < end; k += 8) {
    const w = v128.load(b);
    const v = v128.load(b, 16);
    const x = v128.load32_splat(a + k);
    const y = v128.load32_splat(a + k, 4);
    c0 = dotLow_i8(c0, x, w);
    c1 = dotHigh_i8(c1, x, w);
    d0 = dotLow_i8(d0, y, v);
    d1 = dotHigh_i8(d1, y, v);
    b += 32;
  }
  v128.store(dst, i32x4.add(c0, d0));
  v128.store(dst, i32x4.add(c1, d1), 16);
}

// out[r0.., c..] = act(f32(sum) * (aScale * wScale) + bias) + residual for rows x cols of the
// tile: the int32 sums become float32 in place (the same operations for 8 channels and for the
// last cols < 8), then storeTile_f32 applies bias, activation and residual as for every format
@inline function storeTile(out: usize, tile: usize, aScales: usize, wScales: usize, bias: usize, residual: usize, r0: i32, rows: i32, c: i32, cols: i32, N: i32, act: i32): void {
  for (let r = 0; r < rows; r++) {
    const t = tile + <usize>r * 8 * I32;
    const sa = load<f32>(aScales + <usize>(r0 + r) * F32);
    if (cols == 8) {
      const vsa = f32x4.splat(sa);
      v128.store(t, f32x4.mul(f32x4.convert_i32x4_s(v128.load(t)), f32x4.mul(vsa, v128.load(wScales + <usize>c * F32))));
      v128.store(t, f32x4.mul(f32x4.convert_i32x4_s(v128.load(t, 16)), f32x4.mul(vsa, v128.load(wScales + <usize>c * F32, 16))), 16);
    } else {
      for (let j = 0; j < cols; j++) {
        const at = t + <usize>j * I32;
        store<f32>(at, <f32>load<i32>(at) * (sa * load<f32>(wScales + <usize>(c + j) * F32)));
      }
    }
  }
  storeTile_f32(out, tile, bias, residual, r0, rows, c, cols, N, act);
}
