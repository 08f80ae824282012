// Matrix products with half-precision weights ("f16"): weights held as IEEE binary16 (2 bytes a
// weight), widened to float32 in the micro-kernel, float32 activations and sums, then the fused
// store of gemm_f32 (bias, activation, residual).
//
// Glossary: M rows of activations, N output channels (rows of the torch weight W (N, K)), K inputs.
// N8 = N rounded up to 8 (the padding channels are zeros).
//
// Both builds give the same bits (for act none/relu): the multiply-adds are a multiply then an add
// in both (not fma_f32x4, which the relaxed build fuses), and the widening is exact.
//
// Three paths, one result: M < 4, each row alone with the halves
// widened in registers (tile_f16_1x8); M = 4, four rows (tile_4x8_madd on the halves); M > 4, each group of 64
// channels widened once into the workspace and read by tile_4x8_madd for every block of 4 rows
// (widening in the 4 x 8 micro-kernel, about 20 integer and float operations per 8 weights next
// to 16 multiply-adds, ran 2.6x slower than gemm_f32 at M = 32, N = K = 768; widening once per
// group runs at gemm_f32's speed, one noisy measurement on a shared machine).
import { f16_to_f32x4, f32_to_f16 } from "./half";
import { roundUp8 } from "./pack";
import { storeTile_f32, tile_4x8_madd } from "./store";

const F32: usize = 4;
const NC: i32 = 64; // output channels per panel group: K x 64 halves stay in cache across row blocks

// the element types pack_f16 reads
const SRC_F32: i32 = 0;
const SRC_F16: i32 = 1; // half bit patterns, copied as they are
const SRC_BF16: i32 = 2; // bfloat16 bit patterns: widened exactly, then rounded to half

// bytes of pack_f16's output: N8 panels of K x 8 halves
export function pack_f16_bytes(N: i32, K: i32): usize {
  return roundUp8(N) * <usize>K * 2;
}

// dst = W (N, K) as halves, in panels of 8 output channels the way tile_4x8_madd<u16> reads them: panel p
// (channels 8p..8p+7) at dst + p * K * 16, per k 16 bytes (c0 c1 ... c7, one v128 load).
//   src:  W's rows srcStride elements apart, of type srcType: 0 float32 (rounded to nearest half,
//         ties to even), 1 half (copied), 2 bfloat16 (widened, then rounded to half)
// Channels past N are zeros. A file's F16 tensor is packed from its own bytes, with no float32 copy.
export function pack_f16(dst: usize, src: usize, srcStride: i32, N: i32, K: i32, srcType: i32): void {
  const N8 = <i32>roundUp8(N);
  const panel = <usize>K * 16;
  const size: usize = srcType == SRC_F32 ? 4 : 2;
  for (let n = 0; n < N8; n++) {
    const out = dst + <usize>(n >> 3) * panel + <usize>(n & 7) * 2;
    const row = src + <usize>n * <usize>srcStride * size;
    for (let k = 0; k < K; k++) {
      let h: u16 = 0;
      if (n < N) {
        if (srcType == SRC_F16) h = load<u16>(row + <usize>k * 2);
        else if (srcType == SRC_BF16) h = f32_to_f16(reinterpret<f32>(<u32>load<u16>(row + <usize>k * 2) << 16));
        else h = f32_to_f16(load<f32>(row + <usize>k * 4));
      }
      store<u16>(out + <usize>k * 16, h);
    }
  }
}

// bytes of scratch gemm_f16 needs for inner dimension K: the 4 x 8 float32 tile, then one group of
// up to 8 panels widened to float32 (K x 64 floats)
export function gemm_f16_workspace(K: i32): usize {
  return 4 * 8 * F32 + <usize>K * 64 * F32;
}

// out (M, N) = act(a (M, K) . W^T + bias (N)) + residual (M, N)
//   w:        pack_f16's output for W (N, K); a run of its panels for a block of channels
//   bias, residual: 0 for none; residual may be out itself (x = x + f(x))
//   act:      Act (src/enums.ts), applied as in gemm_f32
//   work:     gemm_f16_workspace(K) bytes
// Rows past M repeat the last row and are not stored; channels past N are zeros of w, not stored.
// With one block of rows (M <= 4: decoding) each weight is used once and is widened in the
// micro-kernel; with more, each group of 64 channels is widened once into `work` (K x 64 floats,
// never the whole weight) and every block of 4 rows reads it there: the same floats, the same
// operations in the same order (tile_4x8_madd), so the same bits either way.
export function gemm_f16(out: usize, a: usize, w: usize, bias: usize, residual: usize, work: usize, M: i32, N: i32, K: i32, act: i32): void {
  const aRow = <usize>K * F32;
  const panel = <usize>K * 16;
  const wide = work + 4 * 8 * F32;
  for (let jc = 0; jc < N; jc += NC) {
    const jEnd = min(N, jc + NC);
    if (M > 4) widenPanels(wide, w + <usize>(jc >> 3) * panel, (jEnd - jc + 7) >> 3, K);
    for (let r0 = 0; r0 < M; r0 += 4) {
      const rows = min(4, M - r0);
      const a0 = a + <usize>r0 * aRow;
      const a1 = rows > 1 ? a0 + aRow : a0;
      const a2 = rows > 2 ? a1 + aRow : a1;
      const a3 = rows > 3 ? a2 + aRow : a2;
      if (M < 4) {
        // fewer than 4 rows (decoding: one): each row alone, not computed four times over
        for (let r = 0; r < rows; r++) {
          for (let c = jc; c < jEnd; c += 8) {
            tile_f16_1x8(work, a0 + <usize>r * aRow, w + <usize>(c >> 3) * panel, K);
            storeTile_f32(out, work, bias, residual, r0 + r, 1, c, min(8, N - c), N, act);
          }
        }
        continue;
      }
      for (let c = jc; c < jEnd; c += 8) {
        if (M > 4) tile_4x8_madd<f32>(work, a0, a1, a2, a3, wide + <usize>((c - jc) >> 3) * <usize>K * 32, K);
        else tile_4x8_madd<u16>(work, a0, a1, a2, a3, w + <usize>(c >> 3) * panel, K);
        storeTile_f32(out, work, bias, residual, r0, rows, c, min(8, N - c), N, act);
      }
    }
  }
}

// dst = `panels` consecutive pack_f16 panels from src, widened: per k 8 float32 (pack_f32_t's layout)
@inline function widenPanels(dst: usize, src: usize, panels: i32, K: i32): void {
  const n = <usize>panels * <usize>K; // 8 halves each
  for (let i: usize = 0; i < n; i++) {
    const h = v128.load(src + i * 16);
    v128.store(dst + i * 32, f16_to_f32x4(i32x4.extend_low_i16x8_u(h)));
    v128.store(dst + i * 32, f16_to_f32x4(i32x4.extend_high_i16x8_u(h)), 16);
  }
}

// dst (1, 8) = row a (K) . b (K, 8) halves: tile_4x8_madd<u16> for one row, the same operations per element
@inline function tile_f16_1x8(dst: usize, a: usize, b: usize, K: i32): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0);
  const end = <usize>K * F32;
  for (let k: usize = 0; k < end; k += F32) {
    const h = v128.load(b);
    const x = v128.load32_splat(a + k);
    c0 = f32x4.add(f32x4.mul(x, f16_to_f32x4(i32x4.extend_low_i16x8_u(h))), c0);
    c1 = f32x4.add(f32x4.mul(x, f16_to_f32x4(i32x4.extend_high_i16x8_u(h))), c1);
    b += 16;
  }
  v128.store(dst, c0);
  v128.store(dst, c1, 16);
}
