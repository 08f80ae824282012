// node --experimental-wasm-relaxed-simd test/support/relaxed-child.mjs <library>, run by
// test/simd.test.ts through test/support/child.ts (<library> is a bundle of src/): whether relaxed
// SIMD is detected, what "auto" picks, and the relaxed build against the baseline build on the same
// inputs. The last line is JSON: the detection, the builds loaded and the largest relative difference.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const library = pathToFileURL(process.argv[2]).href;
const [auto, baseline, relaxed] = await Promise.all(["auto", "baseline", "relaxed"].map((simd) => import(`${library}?${simd}`)));
await auto.init({ simd: "auto" });
await baseline.init({ simd: "baseline" });
await relaxed.init({ simd: "relaxed" });

let seed = 12345;
const floats = (n) =>
  Float32Array.from({ length: n }, () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 2 ** 31 - 1;
  });
// the largest |relaxed - baseline| over the largest |baseline| of each output: a normwise relative difference
let worst = 0;
const compare = (a, b) => {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  worst = Math.max(worst, d / m);
};

for (const [Lq, Lk, E] of [
  [1, 300, 64],
  [37, 70, 33],
  [128, 128, 64],
]) {
  const q = { data: floats(2 * Lq * E), shape: [2, Lq, E] };
  const k = { data: floats(2 * Lk * E), shape: [2, Lk, E] };
  for (const isCausal of [false, true])
    compare(relaxed.scaledDotProductAttention(q, k, k, { isCausal }).data, baseline.scaledDotProductAttention(q, k, k, { isCausal }).data);
}
const options = { layer: { dModel: 64, nhead: 4, dimFeedforward: 256, activation: "gelu" }, numLayers: 2, norm: true };
const [a, b] = [new relaxed.TransformerEncoder(options), new baseline.TransformerEncoder(options)];
const dict = Object.fromEntries(
  a.params().map((p) => [p.key, { data: floats(p.shape.reduce((x, y) => x * y, 1)).map((x) => x * 0.2), shape: p.shape }]),
);
a.loadStateDict(dict);
b.loadStateDict(dict);
const x = { data: floats(3 * 50 * 64), shape: [3, 50, 64] };
compare(a.forward(x).data, b.forward(x).data);
console.log(
  JSON.stringify({
    detected: auto.relaxedSimdSupported(),
    validates: WebAssembly.validate(readFileSync(new URL("../../build/kernels-relaxed.wasm", import.meta.url))),
    auto: auto.runtimeInfo().simd,
    relaxed: relaxed.runtimeInfo().simd,
    baseline: baseline.runtimeInfo().simd,
    worst,
  }),
);
