import { fma_f32x4, store8_v128 } from "./simd";
import { storeTile_f32 } from "./store";

const F32: usize = 4;
const NC: i32 = 64; // columns of w per panel: K x 64 floats of w stay in cache across row blocks

// dst (4, 8), rows dstRow bytes apart = rows a0..a3 (K) . b (K, 8), 8 floats per k, bRow bytes
// apart (32: a pack_f32_t panel; 128: a panel of a pack_f32_w group). The register micro-kernel
// of every matrix product here: 8 accumulators, per k two loads of b, four splats of a and eight
// multiply-adds.
@inline export function tile_4x8(dst: usize, dstRow: usize, a0: usize, a1: usize, a2: usize, a3: usize, b: usize, bRow: usize, K: i32): void {
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
    b += bRow;
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

// dst (1, 32) = row a (K) . a pack_f32_w group of b (K, 32): the one-row micro-kernel, eight
// accumulators for the group's four panels, so a row is not computed four times over as in
// tile_4x8 with repeated rows, and the group is read as one stream (128 bytes per k: four panels
// K * 32 bytes apart, read side by side, held a Linear 576 -> 1536 at 15 GB/s where one stream
// reached 22). Each element is the same sequence of fma_f32x4 over k as in tile_4x8: the same bits.
@inline function row_1x32(dst: usize, a: usize, b: usize, K: i32): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  const end = <usize>K * F32;
  for (let k: usize = 0, o = b; k < end; k += F32, o += 128) {
    const x = v128.load32_splat(a + k);
    c00 = fma_f32x4(x, v128.load(o), c00);
    c01 = fma_f32x4(x, v128.load(o, 16), c01);
    c10 = fma_f32x4(x, v128.load(o, 32), c10);
    c11 = fma_f32x4(x, v128.load(o, 48), c11);
    c20 = fma_f32x4(x, v128.load(o, 64), c20);
    c21 = fma_f32x4(x, v128.load(o, 80), c21);
    c30 = fma_f32x4(x, v128.load(o, 96), c30);
    c31 = fma_f32x4(x, v128.load(o, 112), c31);
  }
  store8_v128(dst, c00, c01, c10, c11, c20, c21, c30, c31);
}

// bytes of scratch gemm_f32 needs
export function gemm_f32_workspace(): usize {
  return 4 * 8 * F32;
}

// out (M, N) = act(a (M, K) . W^T + bias (N)) + residual (M, N)
//   w:        W (N, K), a torch Linear weight, packed by pack_f32_w (groups of 32 rows of W)
//   bias, residual: 0 for none; residual may be out itself (x = x + f(x))
//   act:      ACT_* from activation.ts
//   work:     gemm_f32_workspace() bytes
// Rows past M repeat the last row and are not stored; columns past N are zeros of w, not stored.
export function gemm_f32(out: usize, a: usize, w: usize, bias: usize, residual: usize, work: usize, M: i32, N: i32, K: i32, act: i32): void {
  const aRow = <usize>K * F32;
  const group = <usize>K * 32 * F32;
  for (let jc = 0; jc < N; jc += NC) {
    const jEnd = min(N, jc + NC);
    for (let r0 = 0; r0 < M; r0 += 4) {
      const rows = min(4, M - r0);
      const a0 = a + <usize>r0 * aRow;
      const a1 = rows > 1 ? a0 + aRow : a0;
      const a2 = rows > 2 ? a1 + aRow : a1;
      const a3 = rows > 3 ? a2 + aRow : a2;
      if (rows < 4) {
        // fewer than 4 rows (decoding: one): each row alone, four panels at a time
        for (let r = 0; r < rows; r++) {
          const ar = a0 + <usize>r * aRow;
          for (let c = jc; c < jEnd; c += 32) {
            const panels = min(4, (jEnd - c + 7) >> 3);
            row_1x32(work, ar, w + <usize>(c >> 5) * group, K);
            for (let p = 0; p < panels; p++) {
              const cp = c + 8 * p;
              storeTile_f32(out, work + <usize>p * 8 * F32, bias, residual, r0 + r, 1, cp, min(8, N - cp), N, act);
            }
          }
        }
        continue;
      }
      for (let c = jc; c < jEnd; c += 8) {
        tile_4x8(work, 8 * F32, a0, a1, a2, a3, w + <usize>(c >> 5) * group + <usize>((c >> 3) & 3) * 32, 128, K);
        storeTile_f32(out, work, bias, residual, r0, rows, c, min(8, N - c), N, act);
      }
    }
  }
}

