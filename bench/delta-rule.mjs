// Gated delta rule prefill, one head, dk = dv = 128, on the baseline build (dist/): the chunked form
// (linearAttention, chunks of 64) against the recurrent one (LinearAttentionState.step, token by
// token inside) and against our dense causal attention (scaledDotProductAttention, flash); the chunked
// form's GFLOP/s against the one-core mul+add peak of bench/results.json; and the decode step's cost
// after a prefix of L tokens (flat in L: the state is dk x dv whatever L).
//   node bench/delta-rule.mjs                 L = 4k, 16k, 64k (dense at 64k alone takes about a minute)
//   node bench/delta-rule.mjs 256 1024        other lengths
//   node bench/delta-rule.mjs --no-dense ...  without dense attention
import { readFileSync } from "node:fs";
import * as lib from "../dist/index.js";
import { randomTensor, table } from "./harness.mjs";

const args = process.argv.slice(2);
const dense = !args.includes("--no-dense");
const lengths = args.filter((a) => /^\d+$/.test(a)).map(Number);
const LENGTHS = lengths.length ? lengths : [4096, 16384, 65536];
const [dk, dv, C] = [128, 128, 64];
const peak = JSON.parse(readFileSync(new URL("./results.json", import.meta.url), "utf8")).peak.madd;

await lib.init({ simd: "baseline" });

// median and minimum of `runs` timings (ms) after `warm` untimed runs
function time(f, runs, warm = 1) {
  for (let i = 0; i < warm; i++) f();
  const ts = Array.from({ length: runs }, () => {
    const t0 = performance.now();
    f();
    return performance.now() - t0;
  }).sort((a, b) => a - b);
  return { median: ts[ts.length >> 1], min: ts[0] };
}

// the floating-point work of the chunked form, counted from its matrix products: per chunk of n
// tokens, K K^T, Q K^T, T diag(beta) V, T diag(beta Gamma) K (n x n by dk or dv), W S0, Q S0, K^T U
// (n x dk by dv) and P U; the UT inverse (n^3 / 3) and the elementwise passes are left out
function chunkedFlops(L) {
  let flops = 0;
  for (let c0 = 0; c0 < L; c0 += C) {
    const n = Math.min(C, L - c0);
    flops += 2 * n * n * (3 * dk + 2 * dv) + 6 * n * dk * dv;
  }
  return flops;
}

// one row of the table: the three prefills at length L, then a decode step after them
function measure(L, warm) {
  const q = randomTensor([1, 1, L, dk], 1);
  const k = randomTensor([1, 1, L, dk], 2);
  for (let t = 0; t < L; t++) {
    const row = k.data.subarray(t * dk, (t + 1) * dk); // L2-normalised keys, as the delta rules want
    const norm = Math.hypot(...row);
    for (let d = 0; d < dk; d++) row[d] /= norm;
  }
  const v = randomTensor([1, 1, L, dv], 3);
  const decay = lib.tensor(
    Float32Array.from({ length: L }, (_, t) => -0.02 - (0.05 * ((t * 7919) % 13)) / 13),
    [1, 1, L],
  );
  const beta = lib.tensor(
    Float32Array.from({ length: L }, (_, t) => 0.2 + (0.6 * ((t * 104729) % 17)) / 17),
    [1, 1, L],
  );
  const long = L >= 16384;

  let state;
  const chunked = time(
    () => (state = lib.linearAttention(q, k, v, { rule: "gated_delta", decay, beta, chunkSize: C, returnState: true }).state),
    long ? 3 : 5,
    warm,
  );
  // token by token inside: steps of 1000 tokens, below the state's chunk size
  const stepper = new lib.LinearAttentionState([1, 1], dk, dv, { rule: "gated_delta", chunkSize: 1024 });
  const recurrent = time(
    () => {
      stepper.reset();
      for (let a = 0; a < L; a += 1000) {
        const b = Math.min(L, a + 1000);
        const rows = (t, D) => lib.tensor(t.data.subarray(a * D, b * D), [1, 1, b - a, D]);
        const gate = (t) => lib.tensor(t.data.subarray(a, b), [1, 1, b - a]);
        stepper.step(rows(q, dk), rows(k, dk), rows(v, dv), { decay: gate(decay), beta: gate(beta) });
      }
    },
    long ? 1 : 3,
    long ? 0 : warm,
  );
  stepper.dispose();
  const sdpa = dense ? time(() => lib.scaledDotProductAttention(q, k, v, { isCausal: true }), long ? 1 : 3, long ? 0 : warm) : null;

  // decode: the token after the prefix, from the prefix's state
  const decoder = new lib.LinearAttentionState([1, 1], dk, dv, { rule: "gated_delta" });
  decoder.setState(state);
  const one = (t, D) => lib.tensor(t.data.slice(0, D), [1, 1, 1, D]);
  const gate = (t) => lib.tensor(t.data.slice(0, 1), [1, 1, 1]);
  const step = time(() => decoder.step(one(q, dk), one(k, dk), one(v, dv), { decay: gate(decay), beta: gate(beta) }), 300, 20 * warm);
  decoder.dispose();

  const gflops = chunkedFlops(L) / chunked.median / 1e6;
  return {
    L,
    "chunked ms (min)": `${chunked.median.toFixed(1)} (${chunked.min.toFixed(1)})`,
    "chunked GFLOP/s": gflops.toFixed(1),
    "% of peak": `${((100 * gflops) / peak).toFixed(0)}%`,
    "recurrent ms": recurrent.median.toFixed(1),
    "recurrent / chunked": `${(recurrent.median / chunked.median).toFixed(2)}x`,
    "dense causal ms": sdpa ? sdpa.median.toFixed(1) : "-",
    "dense / chunked": sdpa ? `${(sdpa.median / chunked.median).toFixed(1)}x` : "-",
    "decode step us (min)": `${(1000 * step.median).toFixed(1)} (${(1000 * step.min).toFixed(1)})`,
  };
}

measure(512, 3); // V8 tiers the kernels up before anything is timed
const rows = [];
for (const L of LENGTHS) {
  rows.push(measure(L, 1));
  console.error(`L = ${L} done`);
}

console.log(
  `Gated delta rule prefill, one head, dk = dv = ${dk}, chunks of ${C}, baseline SIMD build, one thread; peak ${peak.toFixed(1)} GFLOP/s (bench/results.json)\n`,
);
console.log(table(rows, Object.keys(rows[0])));
