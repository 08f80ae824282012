// The 4x8 integer micro-kernel of the int8 products (gemm_q8, gemm_q4): rows a0..a3 of int16
// activations against one panel of 8 output channels held as int16 pairs of k (per pair 32 bytes:
// channels 0..3 then 4..7, k and k + 1 side by side), i32x4.dot_i16x8_s + add, 8 multiply-adds each.
// Per pair of k: two loads of b, a 32-bit splat (2 x i16) of each row, eight dot + add.
//
// T = i32 (q8): one block of `pairs` pairs of k; dst (4, 8) receives the int32 sums, exact.
// T = f32 (q4): `blocks` blocks of `pairs` pairs each with 8 float32 scales at sc (one per channel,
// 32 bytes a block); per block the exact int32 sums become f += f32(sum) * d, and dst (4, 8)
// receives f times each row's scale (at s0..s3).
import { store8_v128 } from "./simd";

@inline export function tile_i16_4x8<T>(
  dst: usize, a0: usize, a1: usize, a2: usize, a3: usize, s0: usize, s1: usize, s2: usize, s3: usize, b: usize, sc: usize, blocks: i32, pairs: i32,
): void {
  let f00 = f32x4.splat(0), f01 = f32x4.splat(0), f10 = f32x4.splat(0), f11 = f32x4.splat(0);
  let f20 = f32x4.splat(0), f21 = f32x4.splat(0), f30 = f32x4.splat(0), f31 = f32x4.splat(0);
  let c00 = i32x4.splat(0), c01 = i32x4.splat(0), c10 = i32x4.splat(0), c11 = i32x4.splat(0);
  let c20 = i32x4.splat(0), c21 = i32x4.splat(0), c30 = i32x4.splat(0), c31 = i32x4.splat(0);
  let k: usize = 0; // byte offset in the int16 rows
  for (let blk = 0; blk < blocks; blk++) {
    if (isFloat<T>()) {
      c00 = i32x4.splat(0), c01 = i32x4.splat(0), c10 = i32x4.splat(0), c11 = i32x4.splat(0);
      c20 = i32x4.splat(0), c21 = i32x4.splat(0), c30 = i32x4.splat(0), c31 = i32x4.splat(0);
    }
    for (let q = 0; q < pairs; q++) {
      const w0 = v128.load(b);
      const w1 = v128.load(b, 16);
      b += 32;
      let x = v128.load32_splat(a0 + k);
      c00 = i32x4.add(c00, i32x4.dot_i16x8_s(x, w0));
      c01 = i32x4.add(c01, i32x4.dot_i16x8_s(x, w1));
      x = v128.load32_splat(a1 + k);
      c10 = i32x4.add(c10, i32x4.dot_i16x8_s(x, w0));
      c11 = i32x4.add(c11, i32x4.dot_i16x8_s(x, w1));
      x = v128.load32_splat(a2 + k);
      c20 = i32x4.add(c20, i32x4.dot_i16x8_s(x, w0));
      c21 = i32x4.add(c21, i32x4.dot_i16x8_s(x, w1));
      x = v128.load32_splat(a3 + k);
      c30 = i32x4.add(c30, i32x4.dot_i16x8_s(x, w0));
      c31 = i32x4.add(c31, i32x4.dot_i16x8_s(x, w1));
      k += 4;
    }
    if (isFloat<T>()) {
      const d0 = v128.load(sc);
      const d1 = v128.load(sc, 16);
      sc += 32;
      f00 = f32x4.add(f00, f32x4.mul(f32x4.convert_i32x4_s(c00), d0));
      f01 = f32x4.add(f01, f32x4.mul(f32x4.convert_i32x4_s(c01), d1));
      f10 = f32x4.add(f10, f32x4.mul(f32x4.convert_i32x4_s(c10), d0));
      f11 = f32x4.add(f11, f32x4.mul(f32x4.convert_i32x4_s(c11), d1));
      f20 = f32x4.add(f20, f32x4.mul(f32x4.convert_i32x4_s(c20), d0));
      f21 = f32x4.add(f21, f32x4.mul(f32x4.convert_i32x4_s(c21), d1));
      f30 = f32x4.add(f30, f32x4.mul(f32x4.convert_i32x4_s(c30), d0));
      f31 = f32x4.add(f31, f32x4.mul(f32x4.convert_i32x4_s(c31), d1));
    }
  }
  if (isFloat<T>()) {
    let sa = v128.load32_splat(s0);
    c00 = f32x4.mul(f00, sa), c01 = f32x4.mul(f01, sa);
    sa = v128.load32_splat(s1);
    c10 = f32x4.mul(f10, sa), c11 = f32x4.mul(f11, sa);
    sa = v128.load32_splat(s2);
    c20 = f32x4.mul(f20, sa), c21 = f32x4.mul(f21, sa);
    sa = v128.load32_splat(s3);
    c30 = f32x4.mul(f30, sa), c31 = f32x4.mul(f31, sa);
  }
  store8_v128(dst, c00, c01, c10, c11, c20, c21, c30, c31);
}
