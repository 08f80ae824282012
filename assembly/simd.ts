// The SIMD vocabulary every kernel is written in. One source serves both builds: the baseline
// build rounds twice in fma_f32x4 (mul then add, identical in every runtime); the relaxed build
// may fuse it.

@inline export function fma_f32x4(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

@inline export function hmax_f32x4(a: v128): f32 {
  const b = f32x4.max(a, v128.shuffle<f32>(a, a, 2, 3, 0, 1));
  const c = f32x4.max(b, v128.shuffle<f32>(b, b, 1, 0, 3, 2));
  return f32x4.extract_lane(c, 0);
}

// [sum of a0's lanes, of a1's, of a2's, of a3's]: four dot products at once (float32; i32x4 below)
@inline export function sums4_f32x4(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const lo = f32x4.add(v128.shuffle<f32>(a0, a1, 0, 4, 1, 5), v128.shuffle<f32>(a0, a1, 2, 6, 3, 7));
  const hi = f32x4.add(v128.shuffle<f32>(a2, a3, 0, 4, 1, 5), v128.shuffle<f32>(a2, a3, 2, 6, 3, 7));
  return f32x4.add(v128.shuffle<f32>(lo, hi, 0, 1, 4, 5), v128.shuffle<f32>(lo, hi, 2, 3, 6, 7));
}

@inline export function sums4_i32x4(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const lo = i32x4.add(v128.shuffle<i32>(a0, a1, 0, 4, 1, 5), v128.shuffle<i32>(a0, a1, 2, 6, 3, 7));
  const hi = i32x4.add(v128.shuffle<i32>(a2, a3, 0, 4, 1, 5), v128.shuffle<i32>(a2, a3, 2, 6, 3, 7));
  return i32x4.add(v128.shuffle<i32>(lo, hi, 0, 1, 4, 5), v128.shuffle<i32>(lo, hi, 2, 3, 6, 7));
}

@inline export function hsum_f32x4(a: v128): f32 {
  const b = f32x4.add(a, v128.shuffle<f32>(a, a, 2, 3, 0, 1));
  const c = f32x4.add(b, v128.shuffle<f32>(b, b, 1, 0, 3, 2));
  return f32x4.extract_lane(c, 0);
}

// e^x lanewise, computed here rather than imported so that every runtime gives the same bits.
//   x = n*ln2 + r with n = round(x / ln2), |r| <= ln2/2 (Cody-Waite: ln2 = LN2_HI + LN2_LO,
//   LN2_HI = 0x3f318000 = 0.693359375 has 9 significant bits, so n*LN2_HI is exact for |n| <= 128);
//   e^r by its degree-6 Taylor polynomial: truncation error |r|^7/7! < 1.2e-7 relative;
//   2^n is put straight into the exponent bits.
// Lanes with x < ln(2^-126) = -87.33655 (including -Infinity) give +0, so the result is never
// subnormal; x is clamped above at 88 (e^88 = 1.65e38 < FLT_MAX); NaN stays NaN.
// Measured against Math.exp: at most 3 ulp (1.8e-7 relative) over [-87, 0] (test/exp.test.ts).
@inline export function exp_f32x4(x: v128): v128 {
  const LOG2E: f32 = 1.44269504;
  const LN2_HI: f32 = 0.693359375;
  const LN2_LO: f32 = -2.12194440e-4;
  x = f32x4.min(x, f32x4.splat(88.0));
  const n = f32x4.nearest(f32x4.mul(x, f32x4.splat(LOG2E)));
  let r = f32x4.sub(x, f32x4.mul(n, f32x4.splat(LN2_HI)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(LN2_LO)));
  let p = f32x4.splat(<f32>(1.0 / 720.0));
  p = fma_f32x4(p, r, f32x4.splat(<f32>(1.0 / 120.0)));
  p = fma_f32x4(p, r, f32x4.splat(<f32>(1.0 / 24.0)));
  p = fma_f32x4(p, r, f32x4.splat(<f32>(1.0 / 6.0)));
  p = fma_f32x4(p, r, f32x4.splat(0.5));
  p = fma_f32x4(p, r, f32x4.splat(1.0));
  p = fma_f32x4(p, r, f32x4.splat(1.0));
  const pow2n = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23);
  const y = f32x4.mul(p, pow2n);
  return v128.andnot(y, f32x4.lt(x, f32x4.splat(-87.33655)));
}

@inline export function exp_f32(x: f32): f32 {
  return f32x4.extract_lane(exp_f32x4(f32x4.splat(x)), 0);
}

// acc + x . w for int8 weights held as pairs of k (c0k0 c0k1 c1k0 ... c7k0 c7k1): w's low 8 bytes
// (channels 0..3) or high 8 bytes (channels 4..7) widened to int16, against x (one row's pair of k,
// splatted): 8 exact multiply-adds into the 4 channels' int32 sums
@inline export function dotLow_i8(acc: v128, x: v128, w: v128): v128 {
  return i32x4.add(acc, i32x4.dot_i16x8_s(x, i16x8.extend_low_i8x16_s(w)));
}

@inline export function dotHigh_i8(acc: v128, x: v128, w: v128): v128 {
  return i32x4.add(acc, i32x4.dot_i16x8_s(x, i16x8.extend_high_i8x16_s(w)));
}

// eight vectors to 128 consecutive bytes at dst (a 4 x 8 tile of 32-bit lanes, or 32 of a row)
@inline export function store8_v128(dst: usize, a0: v128, a1: v128, a2: v128, a3: v128, a4: v128, a5: v128, a6: v128, a7: v128): void {
  v128.store(dst, a0);
  v128.store(dst, a1, 16);
  v128.store(dst, a2, 32);
  v128.store(dst, a3, 48);
  v128.store(dst, a4, 64);
  v128.store(dst, a5, 80);
  v128.store(dst, a6, 96);
  v128.store(dst, a7, 112);
}
