import { hsum_f32x4 } from "./simd";

const F32: usize = 4;

// out (M, N) = (x - mean) / sqrt(var + eps) * gamma (N) + beta (N), per row of x (M, N)
//   mean and the biased variance in two passes (no cancellation); out may be x; gamma/beta 0: none
export function layernorm_f32(out: usize, x: usize, gamma: usize, beta: usize, M: i32, N: i32, eps: f32): void {
  const n4 = N & ~3;
  for (let r: usize = 0; r < <usize>M; r++) {
    const xr = x + r * <usize>N * F32;
    const orow = out + r * <usize>N * F32;
    // pass 1: mean
    let acc = f32x4.splat(0);
    for (let j = 0; j < n4; j += 4) acc = f32x4.add(acc, v128.load(xr + <usize>j * F32));
    let sum = hsum_f32x4(acc);
    for (let j = n4; j < N; j++) sum += load<f32>(xr + <usize>j * F32);
    const mean = sum / <f32>N;
    // pass 2: variance
    const mv = f32x4.splat(mean);
    acc = f32x4.splat(0);
    for (let j = 0; j < n4; j += 4) {
      const d = f32x4.sub(v128.load(xr + <usize>j * F32), mv);
      acc = f32x4.add(acc, f32x4.mul(d, d));
    }
    let sq = hsum_f32x4(acc);
    for (let j = n4; j < N; j++) {
      const d = load<f32>(xr + <usize>j * F32) - mean;
      sq += d * d;
    }
    const rstd = <f32>1 / Mathf.sqrt(sq / <f32>N + eps);
    // pass 3: normalise, scale, shift
    const rv = f32x4.splat(rstd);
    for (let j = 0; j < n4; j += 4) {
      const at = <usize>j * F32;
      let y = f32x4.mul(f32x4.sub(v128.load(xr + at), mv), rv);
      if (gamma) y = f32x4.mul(y, v128.load(gamma + at));
      if (beta) y = f32x4.add(y, v128.load(beta + at));
      v128.store(orow + at, y);
    }
    for (let j = n4; j < N; j++) {
      const at = <usize>j * F32;
      let y = (load<f32>(xr + at) - mean) * rstd;
      if (gamma) y *= load<f32>(gamma + at);
      if (beta) y += load<f32>(beta + at);
      store<f32>(orow + at, y);
    }
  }
}
