const F32: usize = 4;

// dst (cols, rows8) = src (rows, cols)^T, rows8 = rows rounded up to 8, the extra columns zero.
// src rows are srcStride elements apart. This is the layout tile_4x8 reads its b operand in:
// a torch Linear weight (N, K) becomes (K, N8); attention keys (Lk, E) become (E, Lk8).
export function pack_f32_t(dst: usize, src: usize, srcStride: i32, rows: i32, cols: i32): void {
  const rows8 = roundUp8(rows);
  const step = <usize>srcStride * F32;
  for (let c: usize = 0; c < <usize>cols; c++) {
    const out = dst + c * rows8 * F32;
    let p = src + c * F32;
    for (let r: usize = 0; r < <usize>rows; r++) {
      store<f32>(out + r * F32, load<f32>(p));
      p += step;
    }
    for (let r = <usize>rows; r < rows8; r++) store<f32>(out + r * F32, 0);
  }
}

@inline export function roundUp8(n: i32): usize {
  return <usize>((n + 7) & ~7);
}

@inline export function roundUp4(n: i32): usize {
  return <usize>((n + 3) & ~3);
}
