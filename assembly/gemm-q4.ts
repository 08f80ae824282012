// Matrix products with 4-bit weights ("q4"): llama.cpp's q4_0 quantization (blocks of 32 weights
// along K, one half-precision scale d per block, q in [-8, 7] stored as the nibble q + 8,
// w = q * d), float32 activations and sums, then the fused store of gemm_f32.
//
// Glossary: M rows of activations, N output channels (rows of the torch weight W (N, K)), K inputs.
// NB = ceil(K / 32) blocks per channel; the last block is padded with q = 0 (nibble 8).
//
// The rule, exactly as llama.cpp's quantize_row_q4_0_ref: per block, max = the value of largest
// magnitude (the first one on a tie), d = max / -8, id = d != 0 ? 1 / d : 0 (float32), the stored
// scale is d rounded to half; nibble = min(15, trunc(w * id + 8.5)). The largest weight gets
// q = -8 exactly and the opposite side reaches +7 at 7/8 of it: 16 levels where the max/7 rule
// uses 15, so a finer step (max/8) and a lower error for bell-shaped weights.
//
// onnxruntime's MatMulNBits (bits 4, block_size 32) holds the same values: B [N, NB, 16] uint8 with
// zero point 8 (its default), scales [N * NB] (d, as float or half), w = (nibble - 8) * scale. Only
// the order of nibbles differs: MatMulNBits puts k = 2j in byte j's low nibble and 2j + 1 in its
// high one; q4_0 puts k = j and j + 16 in byte j (bench/q4.mjs converts).
//
// Here, weights are repacked in panels of 8 output channels (pack_q4). Three paths, one result:
//   - M < 4 (decoding): tile_q4_1x8, each row alone, the nibbles widened to float32 in registers
//     and multiplied by their block's scale, then one multiply-add per weight;
//   - M = 4: tile_q4_4x8, the same for 4 rows at once;
//   - M > 4: each group of 64 channels dequantized once into the workspace (K x 64 floats, never
//     the whole weight; dequantizePanels) and read by tile_4x8_madd for every block of 4 rows, so
//     the unpacking is paid once per group instead of once per row block: measured at M = 32 and
//     128, N = K = 768 (one noisy run on a shared machine), as fast as gemm_f32 (0.87 vs 0.80 ms,
//     3.3 vs 3.2 ms), where unpacking in the 4 x 8 micro-kernel ran 1.6x slower than gemm_f32.
// Every path computes each output as the same float32 sequence, sum += a * (q * d) in k order
// (q * d is exact), so they give the same bits, and a thread's block of rows does too.
// Float32 activations rather than int8 ones with an integer dot per block: at M > 4 this already
// runs at the float32 kernel's speed, and the weights' own error (4.2 % relative RMS on the
// BERT-base layer) is what the 6 % target spends; int8 activations would add theirs (about 0.7 %
// for q8 on that layer). The int8 variant was not built, so its speed is not measured.
// Both builds give the same bits (for act none/relu): a multiply then an add, never fused.
import { f16_to_f32x4, f32_to_f16 } from "./half";
import { roundUp8 } from "./pack";
import { storeTile_f32, tile_4x8_madd } from "./store";

const F32: usize = 4;
const NC: i32 = 64; // output channels per panel group: their blocks stay in cache across row blocks
const BLOCK: i32 = 32;
const BLOCK_BYTES: usize = 16 + 128; // 8 half scales, then 32 k x 8 channels of nibbles

@inline function blocks(K: i32): i32 {
  return (K + BLOCK - 1) / BLOCK;
}

// bytes of one panel (8 output channels, all of K)
@inline function panelBytes(K: i32): usize {
  return <usize>blocks(K) * BLOCK_BYTES;
}

// bytes of pack_q4's output: N8 / 8 panels of NB blocks of 144 bytes (18 bytes per 32 weights of a
// channel, as q4_0: 4.5 bits a weight)
export function pack_q4_bytes(N: i32, K: i32): usize {
  return (roundUp8(N) >> 3) * panelBytes(K);
}

// dst = W (N, K) float32, rows srcStride floats apart, quantized (the q4_0 rule above) and laid out
// the way tile_q4_4x8 reads it: panel p (channels 8p..8p+7) at dst + p * NB * 144; its block b at
// + b * 144: the 8 channels' scales (halves, 16 bytes), then per group of 4 k (k0..k0+3) 16 bytes:
//   byte j (0..7):   channel j's nibble of k0 (low) and of k0 + 1 (high)
//   byte 8 + j:      channel j's nibble of k0 + 2 (low) and of k0 + 3 (high)
// so that one load, a mask and a shift give k0, k0 + 2 (low nibbles) and k0 + 1, k0 + 3 (high).
// Channels past N: scale 0 and nibbles 8; k past K: nibble 8 (q = 0).
export function pack_q4(dst: usize, src: usize, srcStride: i32, N: i32, K: i32): void {
  const NB = blocks(K);
  const N8 = <i32>roundUp8(N);
  const panel = panelBytes(K);
  for (let n = 0; n < N8; n++) {
    const row = src + <usize>n * <usize>srcStride * F32;
    const j = <usize>(n & 7);
    for (let b = 0; b < NB; b++) {
      const blk = dst + <usize>(n >> 3) * panel + <usize>b * BLOCK_BYTES;
      const k0 = b * BLOCK;
      const kn = n < N ? min(BLOCK, K - k0) : 0; // weights of this block that exist
      // 1. the value of largest magnitude, d = max / -8, the stored scale d as half
      let amax: f32 = 0;
      let max: f32 = 0;
      for (let i = 0; i < kn; i++) {
        const v = load<f32>(row + <usize>(k0 + i) * F32);
        if (amax < Mathf.abs(v)) {
          amax = Mathf.abs(v);
          max = v;
        }
      }
      const d = max / -8;
      const id: f32 = d != 0 ? 1 / d : 0;
      store<u16>(blk + j * 2, f32_to_f16(d));
      // 2. the nibbles: min(15, trunc(w * id + 8.5)); padding 8
      for (let i = 0; i < BLOCK; i++) {
        let q: i32 = 8;
        if (i < kn) q = min(15, <i32>i32x4.extract_lane(i32x4.trunc_sat_f32x4_s(f32x4.splat(load<f32>(row + <usize>(k0 + i) * F32) * id + 8.5)), 0));
        const at = blk + 16 + <usize>(i >> 2) * 16 + j + <usize>((i & 2) << 2); // i & 2: the second 8 bytes
        const high = (i & 1) != 0;
        store<u8>(at, high ? (load<u8>(at) & 0x0f) | <u8>(q << 4) : (load<u8>(at) & 0xf0) | <u8>q);
      }
    }
  }
}

// bytes of scratch gemm_q4 needs for inner dimension K: the 4 x 8 float32 tile; the last K % 4
// activations of 4 rows padded with zeros to 4 (the micro-kernel reads activations 4 k at a time
// and never past K); one group of up to 8 panels dequantized to float32 (K4 x 64 floats)
export function gemm_q4_workspace(K: i32): usize {
  return 4 * 8 * F32 + 4 * 4 * F32 + <usize>((K + 3) & ~3) * 64 * F32;
}

// out (M, N) = act(a (M, K) . W^T + bias (N)) + residual (M, N), W the dequantized q4 weights
//   w:        pack_q4's output for W (N, K); a run of its panels for a block of channels
//   bias, residual: 0 for none; residual may be out itself (x = x + f(x))
//   act:      Act (src/enums.ts), applied as in gemm_f32
//   work:     gemm_q4_workspace(K) bytes
// Rows past M repeat the last row and are not stored; channels past N are zeros, not stored.
// With one block of rows (M <= 4: decoding) each weight is used once and is unpacked in the
// micro-kernel; with more, each group of 64 channels is dequantized once into `work` (K x 64
// floats, never the whole weight) and every block of 4 rows reads it there: the same floats
// (q * d is exact in float32), the same operations in the same order (tile_4x8_madd), so the same
// bits either way.
export function gemm_q4(out: usize, a: usize, w: usize, bias: usize, residual: usize, work: usize, M: i32, N: i32, K: i32, act: i32): void {
  const aRow = <usize>K * F32;
  const panel = panelBytes(K);
  const tail = work + 4 * 8 * F32;
  const wide = tail + 4 * 4 * F32;
  const full = K >> 2; // groups of 4 k inside K
  for (let jc = 0; jc < N; jc += NC) {
    const jEnd = min(N, jc + NC);
    if (M > 4) dequantizePanels(wide, w + <usize>(jc >> 3) * panel, (jEnd - jc + 7) >> 3, K);
    for (let r0 = 0; r0 < M; r0 += 4) {
      const rows = min(4, M - r0);
      const a0 = a + <usize>r0 * aRow;
      const a1 = rows > 1 ? a0 + aRow : a0;
      const a2 = rows > 2 ? a1 + aRow : a1;
      const a3 = rows > 3 ? a2 + aRow : a2;
      if (M <= 4 && (K & 3) != 0) {
        for (let i = 0; i < 4; i++) {
          const k = full * 4 + i;
          store<f32>(tail + <usize>i * F32, k < K ? load<f32>(a0 + <usize>k * F32) : 0);
          store<f32>(tail + <usize>i * F32, k < K ? load<f32>(a1 + <usize>k * F32) : 0, 16);
          store<f32>(tail + <usize>i * F32, k < K ? load<f32>(a2 + <usize>k * F32) : 0, 32);
          store<f32>(tail + <usize>i * F32, k < K ? load<f32>(a3 + <usize>k * F32) : 0, 48);
        }
      }
      if (M < 4) {
        // fewer than 4 rows (decoding: one): each row alone, not computed four times over
        for (let r = 0; r < rows; r++) {
          for (let c = jc; c < jEnd; c += 8) {
            tile_q4_1x8(work, a0 + <usize>r * aRow, tail + <usize>r * 16, w + <usize>(c >> 3) * panel, K);
            storeTile_f32(out, work, bias, residual, r0 + r, 1, c, min(8, N - c), N, act);
          }
        }
        continue;
      }
      for (let c = jc; c < jEnd; c += 8) {
        if (M > 4) tile_4x8_madd(work, a0, a1, a2, a3, wide + <usize>((c - jc) >> 3) * <usize>((K + 3) & ~3) * 32, K);
        else tile_q4_4x8(work, a0, a1, a2, a3, tail, w + <usize>(c >> 3) * panel, K);
        storeTile_f32(out, work, bias, residual, r0, rows, c, min(8, N - c), N, act);
      }
    }
  }
}

// dst = `panels` consecutive pack_q4 panels from src, dequantized: per k 8 float32 q * d (pack_f32_t's
// layout), K4 = K rounded up to 4 of them (the padding is zeros); the values tile_q4_4x8 makes
@inline function dequantizePanels(dst: usize, src: usize, panels: i32, K: i32): void {
  const groups = (K + 3) >> 2;
  const mask = i8x16.splat(0x0f);
  const eight = i8x16.splat(8);
  for (let p = 0; p < panels; p++) {
    let b = src + <usize>p * panelBytes(K);
    let d = dst + <usize>p * <usize>groups * 128;
    let s0 = f32x4.splat(0), s1 = f32x4.splat(0);
    for (let g = 0; g < groups; g++) {
      if ((g & 7) == 0) {
        const s = v128.load(b);
        s0 = f16_to_f32x4(i32x4.extend_low_i16x8_u(s));
        s1 = f16_to_f32x4(i32x4.extend_high_i16x8_u(s));
        b += 16;
      }
      const v = v128.load(b);
      b += 16;
      const lo = i8x16.sub(v128.and(v, mask), eight); // k0, k0 + 2
      const hi = i8x16.sub(i8x16.shr_u(v, 4), eight); // k0 + 1, k0 + 3
      let h = i16x8.extend_low_i8x16_s(lo);
      v128.store(d, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h)), s0));
      v128.store(d, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h)), s1), 16);
      h = i16x8.extend_low_i8x16_s(hi);
      v128.store(d, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h)), s0), 32);
      v128.store(d, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h)), s1), 48);
      h = i16x8.extend_high_i8x16_s(lo);
      v128.store(d, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h)), s0), 64);
      v128.store(d, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h)), s1), 80);
      h = i16x8.extend_high_i8x16_s(hi);
      v128.store(d, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h)), s0), 96);
      v128.store(d, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h)), s1), 112);
      d += 128;
    }
  }
}

// dst (1, 8) = row a (K) . the dequantized panel b: tile_q4_4x8 for one row (its last K % 4
// activations from `tail`), the same operations per element
@inline function tile_q4_1x8(dst: usize, a: usize, tail: usize, b: usize, K: i32): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0);
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0);
  const groups = (K + 3) >> 2;
  const full = K >> 2;
  const mask = i8x16.splat(0x0f);
  const eight = i8x16.splat(8);
  for (let g = 0; g < groups; g++) {
    if ((g & 7) == 0) {
      const s = v128.load(b);
      s0 = f16_to_f32x4(i32x4.extend_low_i16x8_u(s));
      s1 = f16_to_f32x4(i32x4.extend_high_i16x8_u(s));
      b += 16;
    }
    const p = g < full ? a + <usize>g * 16 : tail;
    const v = v128.load(b);
    b += 16;
    const lo = i8x16.sub(v128.and(v, mask), eight);
    const hi = i8x16.sub(i8x16.shr_u(v, 4), eight);
    let h = i16x8.extend_low_i8x16_s(lo); // k0
    let x = v128.load32_splat(p);
    c0 = f32x4.add(f32x4.mul(x, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h)), s0)), c0);
    c1 = f32x4.add(f32x4.mul(x, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h)), s1)), c1);
    h = i16x8.extend_low_i8x16_s(hi); // k0 + 1
    x = v128.load32_splat(p, 4);
    c0 = f32x4.add(f32x4.mul(x, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h)), s0)), c0);
    c1 = f32x4.add(f32x4.mul(x, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h)), s1)), c1);
    h = i16x8.extend_high_i8x16_s(lo); // k0 + 2
    x = v128.load32_splat(p, 8);
    c0 = f32x4.add(f32x4.mul(x, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h)), s0)), c0);
    c1 = f32x4.add(f32x4.mul(x, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h)), s1)), c1);
    h = i16x8.extend_high_i8x16_s(hi); // k0 + 3
    x = v128.load32_splat(p, 12);
    c0 = f32x4.add(f32x4.mul(x, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h)), s0)), c0);
    c1 = f32x4.add(f32x4.mul(x, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h)), s1)), c1);
  }
  v128.store(dst, c0);
  v128.store(dst, c1, 16);
}

// dst (4, 8) = rows a0..a3 (K) . the dequantized panel b (8 channels): per group of 4 k one load
// of 32 nibbles; mask and shift, minus 8, widened to i32 and converted: the 8 channels' q of each k
// as two f32x4, times the block's scales (read and widened every 8 groups); then per k four splats
// of a and eight multiply-adds. Past the last whole group of 4 k, the rows are read from `tail`.
@inline function tile_q4_4x8(dst: usize, a0: usize, a1: usize, a2: usize, a3: usize, tail: usize, b: usize, K: i32): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0);
  const groups = (K + 3) >> 2;
  const full = K >> 2;
  const mask = i8x16.splat(0x0f);
  const eight = i8x16.splat(8);
  for (let g = 0; g < groups; g++) {
    if ((g & 7) == 0) {
      const s = v128.load(b); // 8 half scales
      s0 = f16_to_f32x4(i32x4.extend_low_i16x8_u(s));
      s1 = f16_to_f32x4(i32x4.extend_high_i16x8_u(s));
      b += 16;
    }
    let p0 = a0 + <usize>g * 16, p1 = a1 + <usize>g * 16, p2 = a2 + <usize>g * 16, p3 = a3 + <usize>g * 16;
    if (g >= full) {
      p0 = tail;
      p1 = tail + 16;
      p2 = tail + 32;
      p3 = tail + 48;
    }
    const v = v128.load(b);
    b += 16;
    const lo = i8x16.sub(v128.and(v, mask), eight); // k0 (bytes 0..7), k0 + 2 (bytes 8..15)
    const hi = i8x16.sub(i8x16.shr_u(v, 4), eight); // k0 + 1, k0 + 3
    // k0
    let h = i16x8.extend_low_i8x16_s(lo);
    let w0 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h)), s0);
    let w1 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h)), s1);
    let x = v128.load32_splat(p0);
    c00 = f32x4.add(f32x4.mul(x, w0), c00);
    c01 = f32x4.add(f32x4.mul(x, w1), c01);
    x = v128.load32_splat(p1);
    c10 = f32x4.add(f32x4.mul(x, w0), c10);
    c11 = f32x4.add(f32x4.mul(x, w1), c11);
    x = v128.load32_splat(p2);
    c20 = f32x4.add(f32x4.mul(x, w0), c20);
    c21 = f32x4.add(f32x4.mul(x, w1), c21);
    x = v128.load32_splat(p3);
    c30 = f32x4.add(f32x4.mul(x, w0), c30);
    c31 = f32x4.add(f32x4.mul(x, w1), c31);
    // k0 + 1
    h = i16x8.extend_low_i8x16_s(hi);
    w0 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h)), s0);
    w1 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h)), s1);
    x = v128.load32_splat(p0, 4);
    c00 = f32x4.add(f32x4.mul(x, w0), c00);
    c01 = f32x4.add(f32x4.mul(x, w1), c01);
    x = v128.load32_splat(p1, 4);
    c10 = f32x4.add(f32x4.mul(x, w0), c10);
    c11 = f32x4.add(f32x4.mul(x, w1), c11);
    x = v128.load32_splat(p2, 4);
    c20 = f32x4.add(f32x4.mul(x, w0), c20);
    c21 = f32x4.add(f32x4.mul(x, w1), c21);
    x = v128.load32_splat(p3, 4);
    c30 = f32x4.add(f32x4.mul(x, w0), c30);
    c31 = f32x4.add(f32x4.mul(x, w1), c31);
    // k0 + 2
    h = i16x8.extend_high_i8x16_s(lo);
    w0 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h)), s0);
    w1 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h)), s1);
    x = v128.load32_splat(p0, 8);
    c00 = f32x4.add(f32x4.mul(x, w0), c00);
    c01 = f32x4.add(f32x4.mul(x, w1), c01);
    x = v128.load32_splat(p1, 8);
    c10 = f32x4.add(f32x4.mul(x, w0), c10);
    c11 = f32x4.add(f32x4.mul(x, w1), c11);
    x = v128.load32_splat(p2, 8);
    c20 = f32x4.add(f32x4.mul(x, w0), c20);
    c21 = f32x4.add(f32x4.mul(x, w1), c21);
    x = v128.load32_splat(p3, 8);
    c30 = f32x4.add(f32x4.mul(x, w0), c30);
    c31 = f32x4.add(f32x4.mul(x, w1), c31);
    // k0 + 3
    h = i16x8.extend_high_i8x16_s(hi);
    w0 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h)), s0);
    w1 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h)), s1);
    x = v128.load32_splat(p0, 12);
    c00 = f32x4.add(f32x4.mul(x, w0), c00);
    c01 = f32x4.add(f32x4.mul(x, w1), c01);
    x = v128.load32_splat(p1, 12);
    c10 = f32x4.add(f32x4.mul(x, w0), c10);
    c11 = f32x4.add(f32x4.mul(x, w1), c11);
    x = v128.load32_splat(p2, 12);
    c20 = f32x4.add(f32x4.mul(x, w0), c20);
    c21 = f32x4.add(f32x4.mul(x, w1), c21);
    x = v128.load32_splat(p3, 12);
    c30 = f32x4.add(f32x4.mul(x, w0), c30);
    c31 = f32x4.add(f32x4.mul(x, w1), c31);
  }
  v128.store(dst, c00);
  v128.store(dst, c01, 16);
  v128.store(dst, c10, 32);
  v128.store(dst, c11, 48);
  v128.store(dst, c20, 64);
  v128.store(dst, c21, 80);
  v128.store(dst, c30, 96);
  v128.store(dst, c31, 112);
}
