const F32: usize = 4;

// out (n) = a (n) * b (n), element by element; out may be a or b (a gated MLP: act(gate) * up)
export function mul_f32(out: usize, a: usize, b: usize, n: i32): void {
  const n4 = n & ~3;
  for (let j = 0; j < n4; j += 4) {
    const at = <usize>j * F32;
    v128.store(out + at, f32x4.mul(v128.load(a + at), v128.load(b + at)));
  }
  for (let j = n4; j < n; j++) {
    const at = <usize>j * F32;
    store<f32>(out + at, load<f32>(a + at) * load<f32>(b + at));
  }
}
