// The machine's WASM SIMD limits, for the benchmark's "% of peak" column (compiled by bench/peak.mjs).

import { fma_f32x4 } from "../assembly/simd";

// 12 independent f32x4 multiply-add chains (V8 keeps 12-14 v128 values in registers), with the
// kernels' own fma_f32x4: mul + add in the baseline build, relaxed_madd in the relaxed one.
// Returns a checksum so the loop is not removed; flops = n * 12 * 4 * 2
export function peak_madd(n: i32): f32 {
  const a = f32x4.splat(0.999);
  const b = f32x4.splat(0.001);
  let c0 = f32x4.splat(1), c1 = f32x4.splat(2), c2 = f32x4.splat(3), c3 = f32x4.splat(4);
  let c4 = f32x4.splat(5), c5 = f32x4.splat(6), c6 = f32x4.splat(7), c7 = f32x4.splat(8);
  let c8 = f32x4.splat(9), c9 = f32x4.splat(10), c10 = f32x4.splat(11), c11 = f32x4.splat(12);
  for (let i = 0; i < n; i++) {
    c0 = fma_f32x4(c0, a, b); c1 = fma_f32x4(c1, a, b); c2 = fma_f32x4(c2, a, b); c3 = fma_f32x4(c3, a, b);
    c4 = fma_f32x4(c4, a, b); c5 = fma_f32x4(c5, a, b); c6 = fma_f32x4(c6, a, b); c7 = fma_f32x4(c7, a, b);
    c8 = fma_f32x4(c8, a, b); c9 = fma_f32x4(c9, a, b); c10 = fma_f32x4(c10, a, b); c11 = fma_f32x4(c11, a, b);
  }
  const s = f32x4.add(f32x4.add(f32x4.add(c0, c1), f32x4.add(c2, c3)), f32x4.add(f32x4.add(f32x4.add(c4, c5), f32x4.add(c6, c7)), f32x4.add(f32x4.add(c8, c9), f32x4.add(c10, c11))));
  return f32x4.extract_lane(s, 0);
}

// streams `bytes` bytes from ptr with v128 loads; returns a checksum
export function peak_stream(ptr: usize, bytes: usize): f32 {
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  for (let p = ptr; p < ptr + bytes; p += 64) {
    s0 = f32x4.add(s0, v128.load(p));
    s1 = f32x4.add(s1, v128.load(p, 16));
    s2 = f32x4.add(s2, v128.load(p, 32));
    s3 = f32x4.add(s3, v128.load(p, 48));
  }
  return f32x4.extract_lane(f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3)), 0);
}
