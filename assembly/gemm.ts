import { activate_f32x4 } from "./activation";
import { fma_f32x4 } from "./simd";

const F32: usize = 4;
const NC: i32 = 64; // columns of w per panel: K x 64 floats of w stay in cache across row blocks

// dst (4, 8), rows dstRow bytes apart = rows a0..a3 (K) . b (K, 8), b contiguous (a pack_f32_t panel).
// The register micro-kernel of every matrix product here: 8 accumulators, per k two loads of b,
// four splats of a and eight multiply-adds.
@inline export function tile_4x8(dst: usize, dstRow: usize, a0: usize, a1: usize, a2: usize, a3: usize, b: usize, K: i32): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  const end = <usize>K * F32;
  for (let k: usize = 0; k < end; k += F32) {
    const b0 = v128.load(b);
    const b1 = v128.load(b, 16);
    let x = v128.load32_splat(a0 + k);
    c00 = fma_f32x4(x, b0, c00);
    c01 = fma_f32x4(x, b1, c01);
    x = v128.load32_splat(a1 + k);
    c10 = fma_f32x4(x, b0, c10);
    c11 = fma_f32x4(x, b1, c11);
    x = v128.load32_splat(a2 + k);
    c20 = fma_f32x4(x, b0, c20);
    c21 = fma_f32x4(x, b1, c21);
    x = v128.load32_splat(a3 + k);
    c30 = fma_f32x4(x, b0, c30);
    c31 = fma_f32x4(x, b1, c31);
    b += 32;
  }
  v128.store(dst, c00);
  v128.store(dst, c01, 16);
  v128.store(dst + dstRow, c10);
  v128.store(dst + dstRow, c11, 16);
  v128.store(dst + 2 * dstRow, c20);
  v128.store(dst + 2 * dstRow, c21, 16);
  v128.store(dst + 3 * dstRow, c30);
  v128.store(dst + 3 * dstRow, c31, 16);
}

// bytes of scratch gemm_f32 needs
export function gemm_f32_workspace(): usize {
  return 4 * 8 * F32;
}

// out (M, N) = act(a (M, K) . W^T + bias (N)) + residual (M, N)
//   w:        W (N, K), a torch Linear weight, packed by pack_f32_t (panels of 8 rows of W)
//   bias, residual: 0 for none; residual may be out itself (x = x + f(x))
//   act:      ACT_* from activation.ts
//   work:     gemm_f32_workspace() bytes
// Rows past M repeat the last row and are not stored; columns past N are zeros of w, not stored.
export function gemm_f32(out: usize, a: usize, w: usize, bias: usize, residual: usize, work: usize, M: i32, N: i32, K: i32, act: i32): void {
  const aRow = <usize>K * F32;
  const panel = <usize>K * 8 * F32;
  for (let jc = 0; jc < N; jc += NC) {
    const jEnd = min(N, jc + NC);
    for (let r0 = 0; r0 < M; r0 += 4) {
      const rows = min(4, M - r0);
      const a0 = a + <usize>r0 * aRow;
      const a1 = rows > 1 ? a0 + aRow : a0;
      const a2 = rows > 2 ? a1 + aRow : a1;
      const a3 = rows > 3 ? a2 + aRow : a2;
      for (let c = jc; c < jEnd; c += 8) {
        tile_4x8(work, 8 * F32, a0, a1, a2, a3, w + <usize>(c >> 3) * panel, K);
        storeTile(out, work, bias, residual, r0, rows, c, min(8, N - c), N, act);
      }
    }
  }
}

// out[r0.., c..] = act(tile + bias) + residual for rows x cols of the 4 x 8 tile
@inline function storeTile(out: usize, tile: usize, bias: usize, residual: usize, r0: i32, rows: i32, c: i32, cols: i32, N: i32, act: i32): void {
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
