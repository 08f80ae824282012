// node --experimental-wasm-relaxed-simd test/support/q8-relaxed-child.mjs, run by
// test/gemm-q8.test.ts: the q8 kernels of the baseline build (build/kernels.wasm) and of the
// relaxed build (build/kernels-relaxed.wasm) on the same inputs. Each case runs on its first call
// (V8's baseline compiler, Liftoff) and again after 40 more calls (TurboFan): Node 20's Liftoff
// computes relaxed dot products wrongly, so a kernel that used them would differ between the two. The last line is JSON: whether every output of
// act none / relu is bit-identical between the builds and between the tiers, and the largest
// normwise relative difference of the other activations.
import { readFileSync } from "node:fs";

const load = async (name) => (await WebAssembly.instantiate(readFileSync(new URL(`../../build/${name}.wasm`, import.meta.url)))).instance.exports;
const builds = { baseline: await load("kernels"), relaxed: await load("kernels-relaxed") };
for (const k of Object.values(builds)) k.memory.grow(64 + Math.ceil(k.heap_base() / 65536));

let seed = 987;
const floats = (n, scale) =>
  Float32Array.from({ length: n }, () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return (seed / 2 ** 31 - 1) * scale;
  });
const K4 = (K) => Math.ceil(K / 4) * 4;

// out (M, N) from f32 a, w, bias, residual through quantize_rows_i8 (both), pack_q8, gemm_q8
function run(k, { a, w, bias, residual, M, N, K, act }) {
  let top = Math.ceil(k.heap_base() / 16) * 16;
  const alloc = (n) => {
    const at = top;
    top += Math.ceil(n / 16) * 16 + 16;
    return at;
  };
  const put = (x) => {
    const at = alloc(4 * x.length);
    new Float32Array(k.memory.buffer, at, x.length).set(x);
    return at;
  };
  const [pa, pw, pb, pr] = [put(a), put(w), put(bias), put(residual)];
  const wq = alloc(N * K4(K));
  const ws = alloc(4 * N);
  const packed = alloc(k.pack_q8_bytes(N, K));
  const aq = alloc(M * K4(K));
  const as = alloc(4 * M);
  const out = alloc(4 * M * N);
  const work = alloc(k.gemm_q8_workspace(K));
  k.quantize_rows_i8(wq, ws, pw, N, K);
  k.pack_q8(packed, wq, K4(K), N, K);
  k.quantize_rows_i8(aq, as, pa, M, K);
  k.gemm_q8(out, aq, as, packed, ws, pb, pr, work, M, N, K, act);
  return new Float32Array(k.memory.buffer, out, M * N).slice();
}

const same = (x, y) => x.length === y.length && x.every((v, i) => Object.is(v, y[i]));
let identical = true;
let stable = true;
let worstOther = 0;
let mismatch = null;
let cases = 0;
const shapes = [
  [1, 1, 1],
  [3, 5, 7],
  [4, 8, 4],
  [5, 17, 67],
  [17, 67, 33],
  [67, 130, 768],
];
for (const act of [0, 1, 2, 3, 4]) {
  for (const [M, N, K] of shapes) {
    const c = { a: floats(M * K, 2), w: floats(N * K, 0.05), bias: floats(N, 1), residual: floats(M * N, 1), M, N, K, act };
    const first = { baseline: run(builds.baseline, c), relaxed: run(builds.relaxed, c) };
    for (let i = 0; i < 40; i++) {
      run(builds.relaxed, c);
      run(builds.baseline, c);
    }
    const later = { baseline: run(builds.baseline, c), relaxed: run(builds.relaxed, c) };
    cases++;
    if (!same(first.relaxed, later.relaxed) || !same(first.baseline, later.baseline)) {
      stable = false;
      mismatch ??= `act ${act} M=${M} N=${N} K=${K}: the first call differs from a later one`;
    }
    if (act <= 1) {
      if (!same(later.baseline, later.relaxed)) {
        identical = false;
        mismatch ??= `act ${act} M=${M} N=${N} K=${K}: relaxed differs from baseline`;
      }
    } else {
      // normwise: the largest difference over the largest output
      let d = 0;
      let m = 0;
      for (let i = 0; i < later.baseline.length; i++) {
        d = Math.max(d, Math.abs(later.relaxed[i] - later.baseline[i]));
        m = Math.max(m, Math.abs(later.baseline[i]));
      }
      worstOther = Math.max(worstOther, d / m);
    }
  }
}
console.log(JSON.stringify({ relaxed: Boolean(builds.relaxed.relaxed_simd()), identical, stable, cases, worstOther, mismatch }));
