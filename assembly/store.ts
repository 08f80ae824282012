// The fused store of the matrix products (gemm_f32, gemm_f16, gemm_q4, gemm_q8): one function, so every
// format applies bias, activation and residual with the same operations in the same order.
import { activate_f32x4 } from "./activation";
import { f16_to_f32x4 } from "./half";
import { store8_v128 } from "./simd";

const F32: usize = 4;

// out[r0.., c..] = act(tile + bias) + residual for rows x cols of the 4 x 8 tile (rows 32 bytes
// apart); bias, residual: 0 for none; the vector path (8 columns) and the scalar one (the last
// cols < 8) do the same operations
@inline export function storeTile_f32(out: usize, tile: usize, bias: usize, residual: usize, r0: i32, rows: i32, c: i32, cols: i32, N: i32, act: i32): void {
  for (let r = 0; r < rows; r++) {
    const at = (<usize>(r0 + r) * <usize>N + <usize>c) * F32;
    const t = tile + <usize>r * 8 * F32;
    if (cols == 8) {
      let x0 = v128.load(t);
      let x1 = v128.load(t, 16);
      if (bias) {
        x0 = f32x4.add(x0, v128.load(bias + <usize>c * F32));
        x1 = f32x4.add(x1, v128.load(bias + <usize>c * F32, 16));
      }
      x0 = activate_f32x4(x0, act);
      x1 = activate_f32x4(x1, act);
      if (residual) {
        x0 = f32x4.add(x0, v128.load(residual + at));
        x1 = f32x4.add(x1, v128.load(residual + at, 16));
      }
      v128.store(out + at, x0);
      v128.store(out + at, x1, 16);
    } else {
      for (let j = 0; j < cols; j++) {
        let x = load<f32>(t + <usize>j * F32);
        if (bias) x += load<f32>(bias + <usize>(c + j) * F32);
        x = f32x4.extract_lane(activate_f32x4(f32x4.splat(x), act), 0);
        if (residual) x += load<f32>(residual + at + <usize>j * F32);
        store<f32>(out + at + <usize>j * F32, x);
      }
    }
  }
}

// dst (4, 8) = rows a0..a3 (K) . b (K, 8), b contiguous, 8 values per k: float32 (T = f32) or
// halves widened exactly in registers (T = u16, a pack_f16 panel). tile_4x8 of gemm.ts with a
// multiply then an add instead of fma_f32x4, so both builds give the same bits, and a panel of
// halves gives the same bits as the same panel widened once into float32 (gemm_f16 does both).
@inline export function tile_4x8_madd<T>(dst: usize, a0: usize, a1: usize, a2: usize, a3: usize, b: usize, K: i32): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  const end = <usize>K * F32;
  for (let k: usize = 0; k < end; k += F32) {
    let b0: v128, b1: v128;
    if (sizeof<T>() == 2) {
      const h = v128.load(b);
      b0 = f16_to_f32x4(i32x4.extend_low_i16x8_u(h));
      b1 = f16_to_f32x4(i32x4.extend_high_i16x8_u(h));
    } else {
      b0 = v128.load(b);
      b1 = v128.load(b, 16);
    }
    let x = v128.load32_splat(a0 + k);
    c00 = f32x4.add(f32x4.mul(x, b0), c00);
    c01 = f32x4.add(f32x4.mul(x, b1), c01);
    x = v128.load32_splat(a1 + k);
    c10 = f32x4.add(f32x4.mul(x, b0), c10);
    c11 = f32x4.add(f32x4.mul(x, b1), c11);
    x = v128.load32_splat(a2 + k);
    c20 = f32x4.add(f32x4.mul(x, b0), c20);
    c21 = f32x4.add(f32x4.mul(x, b1), c21);
    x = v128.load32_splat(a3 + k);
    c30 = f32x4.add(f32x4.mul(x, b0), c30);
    c31 = f32x4.add(f32x4.mul(x, b1), c31);
    b += 8 * sizeof<T>();
  }
  store8_v128(dst, c00, c01, c10, c11, c20, c21, c30, c31);
}
