import { hsum_f32x4 } from "./simd";

const F32: usize = 4;

// out (M, N) = x / sqrt(mean(x^2) + eps) * (offset + weight (N)), per row of x (M, N)
//   Llama's RMSNorm with offset 0, Gemma's (1 + weight) form with offset 1; out may be x.
//   The sum of squares is one pass of four lanes, added across lanes at the end.
export function rmsnorm_f32(out: usize, x: usize, weight: usize, M: i32, N: i32, eps: f32, offset: f32): void {
  const n4 = N & ~3;
  const off = f32x4.splat(offset);
  for (let r: usize = 0; r < <usize>M; r++) {
    const xr = x + r * <usize>N * F32;
    const orow = out + r * <usize>N * F32;
    // pass 1: mean of squares
    let acc = f32x4.splat(0);
    for (let j = 0; j < n4; j += 4) {
      const v = v128.load(xr + <usize>j * F32);
      acc = f32x4.add(acc, f32x4.mul(v, v));
    }
    let sq = hsum_f32x4(acc);
    for (let j = n4; j < N; j++) {
      const v = load<f32>(xr + <usize>j * F32);
      sq += v * v;
    }
    const rstd = <f32>1 / Mathf.sqrt(sq / <f32>N + eps);
    // pass 2: normalise, then scale (in that order, as Hugging Face does)
    const rv = f32x4.splat(rstd);
    for (let j = 0; j < n4; j += 4) {
      const at = <usize>j * F32;
      v128.store(orow + at, f32x4.mul(f32x4.mul(v128.load(xr + at), rv), f32x4.add(off, v128.load(weight + at))));
    }
    for (let j = n4; j < N; j++) {
      const at = <usize>j * F32;
      store<f32>(orow + at, load<f32>(xr + at) * rstd * (offset + load<f32>(weight + at)));
    }
  }
}
