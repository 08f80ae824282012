import { exp_f32, exp_f32x4 } from "./simd";

// out (n) = e^x (n), with the kernels' own exp (see simd.ts for its error bound)
export function exp_f32_n(out: usize, x: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const at = <usize>i << 2;
    v128.store(out + at, exp_f32x4(v128.load(x + at)));
  }
  for (; i < n; i++) {
    const at = <usize>i << 2;
    store<f32>(out + at, exp_f32(load<f32>(x + at)));
  }
}
