const F32: usize = 4;

// out (n) = mean over c of x (count, n): the average of count equal-sized slices
export function mean_f32(out: usize, x: usize, count: i32, n: i32): void {
  const stride = <usize>n * F32;
  const cnt = <f32>count;
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const at = <usize>j * F32;
    let acc = f32x4.splat(0);
    for (let c: usize = 0; c < <usize>count; c++) acc = f32x4.add(acc, v128.load(x + c * stride + at));
    v128.store(out + at, f32x4.div(acc, f32x4.splat(cnt)));
  }
  for (; j < n; j++) {
    const at = <usize>j * F32;
    let acc: f32 = 0;
    for (let c: usize = 0; c < <usize>count; c++) acc += load<f32>(x + c * stride + at);
    store<f32>(out + at, acc / cnt);
  }
}
