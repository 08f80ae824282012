// node --experimental-wasm-relaxed-simd test/support/quantized-relaxed-child.mjs, run by
// test/gemm-quantized.test.ts: gemm_q8, gemm_f16 and gemm_q4 of the baseline build
// (build/kernels.wasm) and of the relaxed build (build/kernels-relaxed.wasm) on the same inputs.
// Each case runs on its first call (V8's baseline compiler, Liftoff) and again after 40 more calls
// (TurboFan): Node 20's Liftoff computes relaxed dot products wrongly, so a kernel that used them
// would differ between the two. The last line is JSON: per format, whether every output of act
// none / relu is bit-identical between the builds and between the tiers, and the largest normwise
// relative difference of the other activations.
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

// out (M, N) from f32 a, w, bias, residual through pack_<format> and gemm_<format>; q8 and q4 take
// int8 activations, per row (quantize_rows_i8), as the host runs them; q8 its weights too
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
  const [aq, as] = [alloc(M * K4(K)), alloc(4 * M)];
  if (format !== "f16") k.quantize_rows_i8(aq, as, pa, M, K);
  if (format === "q8") {
    const [wq, ws] = [alloc(N * K4(K)), alloc(4 * N)];
    k.quantize_rows_i8(wq, ws, pw, N, K);
    k.pack_q8(packed, wq, K4(K), N, K);
    k.gemm_q8(out, aq, as, packed, ws, pb, pr, work, M, N, K, act);
  } else if (format === "f16") {
    k.pack_f16(packed, pw, K, N, K, 0);
    k.gemm_f16(out, pa, packed, pb, pr, work, M, N, K, act);
  } else {
    k.pack_q4(packed, pw, K, N, K);
    k.gemm_q4(out, aq, as, packed, pb, pr, work, M, N, K, act);
  }
  return new Float32Array(k.memory.buffer, out, M * N).slice();
}

const same = (x, y) => x.length === y.length && x.every((v, i) => Object.is(v, y[i]));
// tails of each format: K 3, 4, 5 (q8's rows padded to K4), N 7, 8, 9 (panels of 8), K 32, 33 (q4's blocks of 32)
const shapes = [
  [1, 1, 1],
  [3, 5, 7],
  [3, 7, 5],
  [4, 8, 4],
  [4, 8, 32],
  [5, 17, 67],
  [17, 67, 33],
  [67, 130, 768],
];
const formats = {};
for (const format of ["q8", "f16", "q4"]) {
  const r = { identical: true, stable: true, cases: 0, worstOther: 0, mismatch: null };
  for (const act of [0, 1, 2, 3, 4]) {
    for (const [M, N, K] of shapes) {
      const c = { a: floats(M * K, 2), w: floats(N * K, 0.05), bias: floats(N, 1), residual: floats(M * N, 1), M, N, K, act };
      const first = { baseline: run(builds.baseline, format, c), relaxed: run(builds.relaxed, format, c) };
      for (let i = 0; i < 40; i++) {
        run(builds.relaxed, format, c);
        run(builds.baseline, format, c);
      }
      const later = { baseline: run(builds.baseline, format, c), relaxed: run(builds.relaxed, format, c) };
      r.cases++;
      const where = `${format} act ${act} M=${M} N=${N} K=${K}`;
      if (!same(first.relaxed, later.relaxed) || !same(first.baseline, later.baseline)) {
        r.stable = false;
        r.mismatch ??= `${where}: the first call differs from a later one`;
      }
      if (act <= 1) {
        if (!same(later.baseline, later.relaxed)) {
          r.identical = false;
          r.mismatch ??= `${where}: relaxed differs from baseline`;
        }
      } else {
        // normwise: the largest difference over the largest output
        let d = 0;
        let m = 0;
        for (let i = 0; i < later.baseline.length; i++) {
          d = Math.max(d, Math.abs(later.relaxed[i] - later.baseline[i]));
          m = Math.max(m, Math.abs(later.baseline[i]));
        }
        r.worstOther = Math.max(r.worstOther, d / m);
      }
    }
  }
  formats[format] = r;
}
console.log(JSON.stringify({ relaxed: Boolean(builds.relaxed.relaxed_simd()), formats }));
