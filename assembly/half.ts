// IEEE binary16 ("half") <-> float32, exact where the value is representable. wasm SIMD has no f16
// lanes, so a half is widened with integer operations on its bit pattern.

// float32 -> half bits, rounded to nearest, ties to even: overflow (|x| >= 65520) to +-Infinity,
// below 2^-14 to a subnormal or +-0; NaN stays NaN (quiet, the top 10 payload bits kept)
export function f32_to_f16(x: f32): u16 {
  const b = reinterpret<u32>(x);
  const sign = (b >> 16) & 0x8000;
  const a = b & 0x7fffffff;
  if (a > 0x7f800000) return <u16>(sign | 0x7e00 | ((a >> 13) & 0x3ff)); // NaN
  if (a >= 0x477ff000) return <u16>(sign | 0x7c00); // >= 65520 (65504 + half an ulp, ties to even: up), and Infinity
  if (a < 0x38800000) {
    // |x| < 2^-14: a subnormal half, round(|x| * 2^24) units of 2^-24 (scaling by 2^24 is exact;
    // 1024 units is the smallest normal, 0x0400, which is also its bit pattern)
    return <u16>(sign | <u32>nearest(reinterpret<f32>(a) * 16777216.0));
  }
  // normal: rebias the exponent (127 - 15 = 112, 112 << 23 = 0x38000000) and round 23 -> 10
  // mantissa bits; a carry moves into the exponent, which is the right rounding
  let h = (a - 0x38000000) >> 13;
  const rest = a & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1) != 0)) h++;
  return <u16>(sign | h);
}

// 4 halves (the low 16 bits of each i32 lane) -> 4 float32, exact for normals, subnormals, +-0,
// +-Infinity and NaN (payload kept):
//   (h & 0x7fff) << 13 is the half's exponent and mantissa in a float32's places with the exponent
//   still biased by 15: times 2^112 rebiases it exactly (subnormal halves become float32 subnormals
//   times 2^112, normal and exact); Infinity and NaN land on 65536 * (1.m) >= 65536 (the largest
//   finite half is 65504), which get their exponent set to all ones; then the sign.
@inline export function f16_to_f32x4(h: v128): v128 {
  const em = v128.and(h, i32x4.splat(0x7fff));
  let f = f32x4.mul(i32x4.shl(em, 13), f32x4.splat(5.192296858534828e33)); // 2^112
  f = v128.or(f, v128.and(f32x4.ge(f, f32x4.splat(65536)), i32x4.splat(0x7f800000)));
  return v128.or(f, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

// n halves at src -> n float32 at dst (for tests and for reading a weight back)
export function f16_to_f32_n(dst: usize, src: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(dst + <usize>i * 4, f16_to_f32x4(v128.load16x4_u(src + <usize>i * 2)));
  for (; i < n; i++) store<f32>(dst + <usize>i * 4, f32x4.extract_lane(f16_to_f32x4(i32x4.splat(<i32>load<u16>(src + <usize>i * 2))), 0));
}
