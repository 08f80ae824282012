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

// ---- integer peaks (issue #14): gemm_q8's instruction and the relaxed alternatives, 12 independent chains,
// each product taking its own accumulator as an operand so that nothing is hoisted out of the loop
// (the sums wrap; that costs nothing). Ops count 2 per multiply-add, like FLOPs, so GOP/s compares
// with GFLOP/s directly.

// baseline: i32x4.dot_i16x8_s + i32x4.add, 8 multiply-adds each: ops = n * 12 * 16
export function peak_dot_i16(n: i32): i32 {
  const b = i16x8.splat(-2);
  let c0 = i32x4.splat(1), c1 = i32x4.splat(2), c2 = i32x4.splat(3), c3 = i32x4.splat(4);
  let c4 = i32x4.splat(5), c5 = i32x4.splat(6), c6 = i32x4.splat(7), c7 = i32x4.splat(8);
  let c8 = i32x4.splat(9), c9 = i32x4.splat(10), c10 = i32x4.splat(11), c11 = i32x4.splat(12);
  for (let i = 0; i < n; i++) {
    c0 = i32x4.add(c0, i32x4.dot_i16x8_s(c0, b)); c1 = i32x4.add(c1, i32x4.dot_i16x8_s(c1, b));
    c2 = i32x4.add(c2, i32x4.dot_i16x8_s(c2, b)); c3 = i32x4.add(c3, i32x4.dot_i16x8_s(c3, b));
    c4 = i32x4.add(c4, i32x4.dot_i16x8_s(c4, b)); c5 = i32x4.add(c5, i32x4.dot_i16x8_s(c5, b));
    c6 = i32x4.add(c6, i32x4.dot_i16x8_s(c6, b)); c7 = i32x4.add(c7, i32x4.dot_i16x8_s(c7, b));
    c8 = i32x4.add(c8, i32x4.dot_i16x8_s(c8, b)); c9 = i32x4.add(c9, i32x4.dot_i16x8_s(c9, b));
    c10 = i32x4.add(c10, i32x4.dot_i16x8_s(c10, b)); c11 = i32x4.add(c11, i32x4.dot_i16x8_s(c11, b));
  }
  return sumLanes(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11);
}

// relaxed build: i32x4.relaxed_dot_i8x16_i7x16_add_s, 16 multiply-adds each: ops = n * 12 * 32.
// (Node 20's baseline compiler, Liftoff, computes this instruction wrongly; the peak runs in
// TurboFan, after the warm-up call.) 0 in the baseline build.
export function peak_dot_i8_fused(n: i32): i32 {
  if (!ASC_FEATURE_RELAXED_SIMD) return 0;
  const b = i8x16.splat(5);
  let c0 = i32x4.splat(1), c1 = i32x4.splat(2), c2 = i32x4.splat(3), c3 = i32x4.splat(4);
  let c4 = i32x4.splat(5), c5 = i32x4.splat(6), c6 = i32x4.splat(7), c7 = i32x4.splat(8);
  let c8 = i32x4.splat(9), c9 = i32x4.splat(10), c10 = i32x4.splat(11), c11 = i32x4.splat(12);
  for (let i = 0; i < n; i++) {
    c0 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c0, b, c0); c1 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c1, b, c1);
    c2 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c2, b, c2); c3 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c3, b, c3);
    c4 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c4, b, c4); c5 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c5, b, c5);
    c6 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c6, b, c6); c7 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c7, b, c7);
    c8 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c8, b, c8); c9 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c9, b, c9);
    c10 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c10, b, c10); c11 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c11, b, c11);
  }
  return sumLanes(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11);
}

// relaxed build: i16x8.relaxed_dot_i8x16_i7x16_s, i32x4.extadd_pairwise_i16x8_s, i32x4.add (the
// fused instruction split in three, which Liftoff gets right): ops = n * 12 * 32. 0 in the baseline
// build. gemm_q8 runs neither (see assembly/gemm-q8.ts); these say what a relaxed kernel could reach.
export function peak_dot_i8(n: i32): i32 {
  if (!ASC_FEATURE_RELAXED_SIMD) return 0;
  const b = i8x16.splat(5);
  let c0 = i32x4.splat(1), c1 = i32x4.splat(2), c2 = i32x4.splat(3), c3 = i32x4.splat(4);
  let c4 = i32x4.splat(5), c5 = i32x4.splat(6), c6 = i32x4.splat(7), c7 = i32x4.splat(8);
  let c8 = i32x4.splat(9), c9 = i32x4.splat(10), c10 = i32x4.splat(11), c11 = i32x4.splat(12);
  for (let i = 0; i < n; i++) {
    c0 = dot_i8_add(c0, b, c0); c1 = dot_i8_add(c1, b, c1); c2 = dot_i8_add(c2, b, c2); c3 = dot_i8_add(c3, b, c3);
    c4 = dot_i8_add(c4, b, c4); c5 = dot_i8_add(c5, b, c5); c6 = dot_i8_add(c6, b, c6); c7 = dot_i8_add(c7, b, c7);
    c8 = dot_i8_add(c8, b, c8); c9 = dot_i8_add(c9, b, c9); c10 = dot_i8_add(c10, b, c10); c11 = dot_i8_add(c11, b, c11);
  }
  return sumLanes(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11);
}

@inline function dot_i8_add(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i32x4.add(c, i32x4.extadd_pairwise_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(a, b)));
  return c;
}

@inline function sumLanes(c0: v128, c1: v128, c2: v128, c3: v128, c4: v128, c5: v128, c6: v128, c7: v128, c8: v128, c9: v128, c10: v128, c11: v128): i32 {
  const s = i32x4.add(i32x4.add(i32x4.add(c0, c1), i32x4.add(c2, c3)), i32x4.add(i32x4.add(i32x4.add(c4, c5), i32x4.add(c6, c7)), i32x4.add(i32x4.add(c8, c9), i32x4.add(c10, c11))));
  return i32x4.extract_lane(s, 0);
}
