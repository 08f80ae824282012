const F32: usize = 4;

// dst = src (rows, cols)^T in panels of 8: panel p holds rows 8p..8p+7 of src as a (cols, 8) block,
// dst + p * cols * 8 floats; rows past `rows` are zero. This is how tile_4x8 reads its b operand:
// eight columns of b, one k after another, contiguous. A torch Linear weight (N, K) is packed with
// rows = N, cols = K; attention keys (Lk, E) with rows = Lk, cols = E. src rows are srcStride apart.
export function pack_f32_t(dst: usize, src: usize, srcStride: i32, rows: i32, cols: i32): void {
  const rows8 = roundUp8(rows);
  const step = <usize>srcStride * F32;
  const panel = <usize>cols * 8 * F32;
  for (let r: usize = 0; r < rows8; r++) {
    const out = dst + (r >> 3) * panel + (r & 7) * F32;
    if (r < <usize>rows) {
      const p = src + r * step;
      for (let c: usize = 0; c < <usize>cols; c++) store<f32>(out + c * 8 * F32, load<f32>(p + c * F32));
    } else {
      for (let c: usize = 0; c < <usize>cols; c++) store<f32>(out + c * 8 * F32, 0);
    }
  }
}

// dst = src (rows, cols)^T in groups of 32 rows, the layout of gemm_f32's weights: group g holds
// rows 32g..32g+31 as a (cols, 32) block, dst + g * cols * 32 floats, rows past `rows` zero; its
// four panels of 8 (what tile_4x8 reads, 128 bytes per k apart) sit side by side, so one row times
// the weight (decoding) reads each group as one stream of memory.
export function pack_f32_w(dst: usize, src: usize, srcStride: i32, rows: i32, cols: i32): void {
  const rows32 = weightRows(rows);
  const step = <usize>srcStride * F32;
  const group = <usize>cols * 32 * F32;
  for (let r: usize = 0; r < rows32; r++) {
    const out = dst + (r >> 5) * group + (r & 31) * F32;
    if (r < <usize>rows) {
      const p = src + r * step;
      for (let c: usize = 0; c < <usize>cols; c++) store<f32>(out + c * 32 * F32, load<f32>(p + c * F32));
    } else {
      for (let c: usize = 0; c < <usize>cols; c++) store<f32>(out + c * 32 * F32, 0);
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
