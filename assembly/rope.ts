const F32: usize = 4;

// Rotary position embedding (RoPE), in place, one pass over every row of every head.
//   x: nRows rows, rowStride elements apart; a row holds nHeads heads of headDim at h * headDim
//   and sits at position pos0 + r % L (rows of one sequence are consecutive)
//   the first rotaryDim dims of each head rotate in pairs by angle pos * theta^(-2i / rotaryDim):
//   interleaved (GPT-J, LLaMA): pairs (2i, 2i + 1); else (GPT-NeoX): pairs (i, i + rotaryDim / 2)
// Angles, cosines and sines are computed in f64 with AssemblyScript's own Math (the same bits in
// every runtime), once per row and pair, and applied to every head of the row.
export function rope_f32(x: usize, nRows: i32, L: i32, rowStride: i32, nHeads: i32, headDim: i32, rotaryDim: i32, pos0: i32, theta: f64, interleaved: bool): void {
  const half = rotaryDim >> 1;
  for (let r = 0; r < nRows; r++) {
    const pos = <f64>(pos0 + r % L);
    const row = x + <usize>r * <usize>rowStride * F32;
    for (let i = 0; i < half; i++) {
      const angle = pos * Math.pow(theta, -2.0 * <f64>i / <f64>rotaryDim);
      const c = <f32>Math.cos(angle);
      const s = <f32>Math.sin(angle);
      const a = interleaved ? 2 * i : i;
      const b = interleaved ? 2 * i + 1 : i + half;
      for (let h = 0; h < nHeads; h++) {
        const head = row + <usize>h * <usize>headDim * F32;
        const x0 = load<f32>(head + <usize>a * F32);
        const x1 = load<f32>(head + <usize>b * F32);
        store<f32>(head + <usize>a * F32, x0 * c - x1 * s);
        store<f32>(head + <usize>b * F32, x1 * c + x0 * s);
      }
    }
  }
}

// The rotation table of RoPE with any frequencies (Hugging Face's rope_scaling types): for
// positions from..to - 1, cos and sin (to - from, half) of angle = f32(pos * invFreq[i]), times
// `scaling` (YaRN's attention factor; 1 otherwise). The angle is a float32 product, as Hugging
// Face computes it; cos and sin of it in f64 with AssemblyScript's Math, rounded once.
export function rope_table_f32(cos: usize, sin: usize, from: i32, to: i32, half: i32, invFreq: usize, scaling: f32): void {
  for (let p = from; p < to; p++) {
    const row = <usize>(p - from) * <usize>half * F32;
    for (let i = 0; i < half; i++) {
      const angle = <f64>(<f32>p * load<f32>(invFreq + <usize>i * F32));
      store<f32>(cos + row + <usize>i * F32, <f32>Math.cos(angle) * scaling);
      store<f32>(sin + row + <usize>i * F32, <f32>Math.sin(angle) * scaling);
    }
  }
}

// RoPE in place from a table made by rope_table_f32 (rows of `half` cos and sin per position):
//   x: nRows rows, rowStride elements apart, each nHeads heads of headDim at h * headDim;
//   row r is at position positions[r] (i32) when positions != 0, else pos0 + r % L;
//   pairs as rope_f32 (interleaved or halves); the first 2 * half dims of each head rotate.
export function rope_f32_table(x: usize, nRows: i32, L: i32, rowStride: i32, nHeads: i32, headDim: i32, half: i32, positions: usize, pos0: i32, cos: usize, sin: usize, interleaved: bool): void {
  for (let r = 0; r < nRows; r++) {
    const pos = positions ? load<i32>(positions + <usize>r * 4) : pos0 + r % L;
    const row = x + <usize>r * <usize>rowStride * F32;
    const t = <usize>pos * <usize>half * F32;
    for (let i = 0; i < half; i++) {
      const c = load<f32>(cos + t + <usize>i * F32);
      const s = load<f32>(sin + t + <usize>i * F32);
      const a = interleaved ? 2 * i : i;
      const b = interleaved ? 2 * i + 1 : i + half;
      for (let h = 0; h < nHeads; h++) {
        const head = row + <usize>h * <usize>headDim * F32;
        const x0 = load<f32>(head + <usize>a * F32);
        const x1 = load<f32>(head + <usize>b * F32);
        store<f32>(head + <usize>a * F32, x0 * c - x1 * s);
        store<f32>(head + <usize>b * F32, x1 * c + x0 * s);
      }
    }
  }
}
