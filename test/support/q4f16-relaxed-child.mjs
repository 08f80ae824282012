// node --experimental-wasm-relaxed-simd test/support/q4f16-relaxed-child.mjs, run by
// test/gemm-q4-f16.test.ts: gemm_f16 and gemm_q4 of the baseline build (build/kernels.wasm) and of
// the relaxed build (build/kernels-relaxed.wasm) on the same inputs, each case on its first call
// (Liftoff) and after 40 more (TurboFan). The last line is JSON: whether every output of act
// none / relu is bit-identical between the builds and between the tiers, and the largest
// normwise relative difference of the other activations.
import { readFileSync } from "node:fs";

const load = async (name) => (await WebAssembly.instantiate(readFileSync(new URL(`../../build/${name}.wasm`, import.meta.url)))).instance.exports;
const builds = { baseline: await load("kernels"), relaxed: await load("kernels-relaxed") };
for (const k of Object.values(builds)) k.memory.grow(64 + Math.ceil(k.heap_base() / 65536));

let seed = 4242;
const next = () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 2 ** 31 - 1;
};
const floats = (n, scale) => Float32Array.from({ length: n }, () => next() * scale);

// out (M, N) from f32 a, w, bias, residual through pack_<format> and gemm_<format>
function run(k, format, { a, w, bias, residual, M, N, K, act }) {
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
  const packed = alloc(k[`pack_${format}_bytes`](N, K));
  const out = alloc(4 * M * N);
  const work = alloc(k[`gemm_${format}_workspace`](K));
  if (format === "f16") k.pack_f16(packed, pw, K, N, K, 0);
  else k.pack_q4(packed, pw, K, N, K);
  if (format === "f16") k.gemm_f16(out, pa, packed, pb, pr, work, M, N, K, act);
  else {
    // int8 activations, per row (quantize_rows_i8), as the host runs it
    const [aq, as] = [alloc(M * Math.ceil(K / 4) * 4), alloc(4 * M)];
    k.quantize_rows_i8(aq, as, pa, M, K);
    k.gemm_q4(out, aq, as, packed, pb, pr, work, M, N, K, act);
  }
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
  [3, 7, 5],
  [4, 8, 32],
  [5, 17, 67],
  [17, 67, 33],
  [67, 130, 768],
];
for (const format of ["f16", "q4"]) {
  for (const act of [0, 1, 2, 3, 4]) {
    for (const [M, N, K] of shapes) {
      const c = { a: floats(M * K, 2), w: floats(N * K, 0.05), bias: floats(N, 1), residual: floats(M * N, 1), M, N, K, act };
      const first = { baseline: run(builds.baseline, format, c), relaxed: run(builds.relaxed, format, c) };
      for (let i = 0; i < 40; i++) {
        run(builds.relaxed, format, c);
        run(builds.baseline, format, c);
      }
      const later = { baseline: run(builds.baseline, format, c), relaxed: run(builds.relaxed, format, c) };
      cases++;
      const where = `${format} act ${act} M=${M} N=${N} K=${K}`;
      if (!same(first.relaxed, later.relaxed) || !same(first.baseline, later.baseline)) {
        stable = false;
        mismatch ??= `${where}: the first call differs from a later one`;
      }
      if (act <= 1) {
        if (!same(later.baseline, later.relaxed)) {
          identical = false;
          mismatch ??= `${where}: relaxed differs from baseline`;
        }
      } else {
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
}
console.log(JSON.stringify({ relaxed: Boolean(builds.relaxed.relaxed_simd()), identical, stable, cases, worstOther, mismatch }));
