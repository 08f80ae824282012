const F32: usize = 4;

// dst = src (rows, cols)^T in panels of 8: panel p holds rows 8p..8p+7 of src as a (cols, 8) block,
// dst + p * cols * 8 floats; rows past `rows` are zero. This is how tile_4x8 reads its b operand:
// eight columns of b, one k after another, contiguous. Attention keys (Lk, E) are packed with
// rows = Lk, cols = E. src rows are srcStride apart.
export function pack_f32_t(dst: usize, src: usize, srcStride: i32, rows: i32, cols: i32): void {
  packLanes(dst, src, srcStride, rows, cols, 8);
}

// dst = src (rows, cols)^T in groups of 32 rows, the layout of gemm_f32's weights: group g holds
// rows 32g..32g+31 as a (cols, 32) block, dst + g * cols * 32 floats, rows past `rows` zero; its
// four panels of 8 (what tile_4x8 reads, 128 bytes per k apart) sit side by side, so one row times
// the weight (decoding) reads each group as one stream of memory. A torch Linear weight (N, K) is
// packed with rows = N, cols = K.
export function pack_f32_w(dst: usize, src: usize, srcStride: i32, rows: i32, cols: i32): void {
  packLanes(dst, src, srcStride, rows, cols, 32);
}

// the two layouts above: blocks of `lanes` rows (a power of two), each (cols, lanes)
@inline function packLanes(dst: usize, src: usize, srcStride: i32, rows: i32, cols: i32, lanes: i32): void {
  const padded = <usize>((rows + lanes - 1) & ~(lanes - 1));
  const step = <usize>srcStride * F32;
  const block = <usize>cols * <usize>lanes * F32;
  const k = <usize>lanes * F32;
  for (let r: usize = 0; r < padded; r++) {
    const out = dst + (r / <usize>lanes) * block + (r & <usize>(lanes - 1)) * F32;
    if (r < <usize>rows) {
      const p = src + r * step;
      for (let c: usize = 0; c < <usize>cols; c++) store<f32>(out + c * k, load<f32>(p + c * F32));
    } else {
      for (let c: usize = 0; c < <usize>cols; c++) store<f32>(out + c * k, 0);
    }
  }
}

// rows of pack_f32_w's output: rows rounded up to 32
@inline export function weightRows(rows: i32): usize {
  return <usize>((rows + 31) & ~31);
}

// bytes of pack_f32_t's output
@inline export function packedBytes(rows: i32, cols: i32): usize {
  return roundUp8(rows) * <usize>cols * F32;
}

@inline export function roundUp8(n: i32): usize {
  return <usize>((n + 7) & ~7);
}

@inline export function roundUp4(n: i32): usize {
  return <usize>((n + 3) & ~3);
}
