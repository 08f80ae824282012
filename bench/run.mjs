// npm run bench: this library side by side with onnxruntime-web and TensorFlow.js (wasm) on the
// same inputs, one thread, contenders interleaved, medians after warm-up. Prints a table and
// writes bench/RESULTS.md.
import { readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import * as lib from "../dist/index.js";
import { measurePeak } from "./peak.mjs";
import { ortAttention, ortEncoderLayer, ortEncoderStack, ortFusedMha, setupOrt, setupTf, tfAttention } from "./peers.mjs";
import { quantizedCase } from "./quantized.mjs";
import { randomTensor } from "./harness.mjs";
import { report } from "./report.mjs";

if (process.argv.includes("--report")) {
  // rewrite RESULTS.md from the last run's numbers
  writeFileSync(new URL("./RESULTS.md", import.meta.url), report(JSON.parse(readFileSync(new URL("./results.json", import.meta.url), "utf8"))));
  process.exit(0);
}
const quick = process.argv.includes("--quick");
const threadsArg = process.argv.find((a) => a.startsWith("--threads="));
const threads = threadsArg ? Number(threadsArg.slice(10)) : 1;
const child = process.argv.includes("--json"); // a child run: rows as JSON on stdout
const only = process.argv.find((a) => a.startsWith("--only="))?.slice(7);
const RELAXED_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 19, 1, 17, 0, 65, 0, 253, 15, 65, 0, 253, 15, 65, 0, 253, 15, 253, 133, 2, 11,
]);

await lib.init({ simd: "baseline", threads });
const relaxedSupported = lib.relaxedSimdSupported();
const rlib = await import("../dist/index.js?relaxed");
if (relaxedSupported) await rlib.init({ simd: "relaxed", threads });
// the relaxed build as a second contender, where the runtime has relaxed SIMD
const withRelaxed = (name, fn) => (relaxedSupported ? [{ name: `${name} (relaxed)`, fn }] : []);
await setupOrt(threads);
const tf = threads === 1 ? await setupTf(1) : null; // tfjs-wasm has no threads in Node
const peak = await measurePeak({ relaxed: WebAssembly.validate(RELAXED_PROBE) });
console.error(
  `peak: ${peak.madd.toFixed(1)} GFLOP/s mul+add, ${peak.relaxedMadd?.toFixed(1) ?? "n/a"} relaxed, ${peak.stream.toFixed(1)} GB/s; ${peak.dotI16.toFixed(1)} GOP/s dot_i16x8_s + add, ${peak.dotI8?.toFixed(1) ?? "n/a"} relaxed_dot_i8x16_i7x16 + extadd + add, ${peak.dotI8Fused?.toFixed(1) ?? "n/a"} fused`,
);

// runs every contender in turn, round after round, until each has `runs` timings or its budget is
// spent. With threads, contenders run one after another instead: onnxruntime-web's pool spins
// after each call and would take the cores from whoever runs next.
async function race(contenders, opts) {
  if (threads === 1) return interleaved(contenders, opts);
  const medians = [];
  for (const c of contenders) {
    await new Promise((ok) => setTimeout(ok, 200));
    medians.push(...(await interleaved([c], opts)));
  }
  return medians;
}

async function interleaved(contenders, { runs, budgetMs }) {
  const times = contenders.map(() => []);
  const spent = contenders.map(() => 0);
  for (const c of contenders) await c.fn(); // warm-up
  for (const c of contenders) await c.fn();
  for (let round = 0; round < runs; round++) {
    for (const [i, c] of contenders.entries()) {
      if (round >= 3 && spent[i] > budgetMs) continue;
      const t0 = performance.now();
      await c.fn();
      const ms = performance.now() - t0;
      times[i].push(ms);
      spent[i] += ms;
    }
  }
  return times.map((t) => [...t].sort((a, b) => a - b)[t.length >> 1]);
}

function maxDiff(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const rows = [];
async function bench(name, flops, contenders, opts = { runs: quick ? 5 : 25, budgetMs: quick ? 2000 : 8000 }) {
  if (only && !name.includes(only)) return;
  // every peer must agree with us before its time counts (opts.agree: an error message or null)
  const ours = await contenders[0].fn();
  const live = [];
  for (const c of contenders) {
    try {
      const out = c === contenders[0] ? ours : await c.fn();
      const problem = opts.agree
        ? opts.agree(ours, out)
        : maxDiff(ours, out) < 1e-3
          ? null
          : `disagrees with wasm-attention by ${maxDiff(ours, out)}`;
      if (problem) throw new Error(problem);
      live.push(c);
    } catch (e) {
      rows.push({
        case: name,
        threads,
        contender: c.name,
        "median ms": "failed",
        "GFLOP/s": "",
        "% of peak": "",
        "time / ours": String(e.message ?? e).slice(0, 60),
      });
    }
  }
  const medians = await race(live, opts);
  const oursMs = medians[0];
  live.forEach((c, i) => {
    const gflops = flops / medians[i] / 1e6;
    rows.push({
      case: name,
      threads,
      contender: c.name,
      "median ms": medians[i].toFixed(2),
      "GFLOP/s": flops ? gflops.toFixed(1) : "",
      "% of peak": flops ? `${((100 * gflops) / (opts.peak ?? peak.madd)).toFixed(0)}%` : "",
      "time / ours": (medians[i] / oursMs).toFixed(2),
    });
  });
  console.error(
    rows
      .slice(-contenders.length)
      .map((r) => `${r.case} | ${r.contender}: ${r["median ms"]} ms`)
      .join("\n"),
  );
}

const H = 12;
const d = 64;
const lengths = quick ? [128, 512] : [128, 512, 2048];
for (const L of lengths) {
  for (const causal of [false, true]) {
    const [q, k, v] = [1, 2, 3].map((s) => randomTensor([1, H, L, d], s));
    const shape = { H, Lq: L, Lk: L, d, causal };
    const contenders = [
      { name: "wasm-attention", fn: () => lib.scaledDotProductAttention(q, k, v, { isCausal: causal }).data },
      ...withRelaxed("wasm-attention", () => rlib.scaledDotProductAttention(q, k, v, { isCausal: causal }).data),
      { name: "onnxruntime-web (ops)", fn: await ortAttention(shape).then((f) => () => f(q, k, v)) },
      {
        name: "onnxruntime-web (fused MHA)",
        fn: await ortFusedMha(shape)
          .then((f) => () => f(toBLE(q), toBLE(k), toBLE(v)))
          .then((f) => async () => fromBLE(await f(), L)),
      },
    ];
    if (tf && (L <= 512 || !quick)) contenders.push({ name: "tfjs-wasm", fn: tfAttention(tf, shape).bind(null, q, k, v) });
    await bench(`attention L=${L}${causal ? " causal" : ""}`, (4 * H * L * L * d) / (causal ? 2 : 1), contenders, {
      runs: L >= 2048 ? 7 : quick ? 5 : 25,
      budgetMs: quick ? 2000 : 10000,
    });
  }
}

// decode steps: K and V of 12 heads in cache (Lk = 1024, 6 MB) and not (Lk = 4096, 25 MB)
for (const Lk of quick ? [4096] : [1024, 4096]) {
  const q = randomTensor([1, H, 1, d], 1);
  const [k, v] = [2, 3].map((s) => randomTensor([1, H, Lk, d], s));
  const shape = { H, Lq: 1, Lk, d, causal: false };
  const [rk, rv] = [k, v].map((t) => lib.residentTensor(t.shape, t.data));
  // K and V as a KV cache of dtype f16 / q8 stores them (issue #14's decode-step targets)
  const stored = Object.fromEntries(["f16", "q8"].map((dtype) => [dtype, [k, v].map((t) => lib.residentTensor(t.shape, t.data, { dtype }))]));
  await bench(`decode step Lq=1, Lk=${Lk}`, 4 * H * Lk * d, [
    { name: "wasm-attention", fn: () => lib.scaledDotProductAttention(q, k, v).data },
    { name: "wasm-attention (resident K, V)", fn: () => lib.scaledDotProductAttention(q, rk, rv).data },
    ...["f16", "q8"].map((dtype) => ({
      name: `wasm-attention (resident K, V, ${dtype})`,
      fn: () => lib.scaledDotProductAttention(q, ...stored[dtype]).data,
    })),
    ...withRelaxed("wasm-attention", () => rlib.scaledDotProductAttention(q, k, v).data),
    { name: "onnxruntime-web (ops)", fn: await ortAttention(shape).then((f) => () => f(q, k, v)) },
    ...(tf ? [{ name: "tfjs-wasm", fn: tfAttention(tf, shape).bind(null, q, k, v) }] : []),
  ]);
  rk.dispose();
  rv.dispose();
  for (const t of Object.values(stored).flat()) t.dispose();
}

for (const L of quick ? [128] : [128, 512]) {
  const [E, F] = [768, 3072];
  const layer = new lib.TransformerEncoderLayer({ dModel: E, nhead: H, dimFeedforward: F, activation: "gelu" });
  const dict = Object.fromEntries(
    layer
      .params()
      .map((p, i) => [
        p.key,
        scaled(
          randomTensor(p.shape, 10 + i),
          p.key.startsWith("norm") && p.key.endsWith("weight") ? 0 : 0.05,
          p.key.startsWith("norm") && p.key.endsWith("weight") ? 1 : 0,
        ),
      ]),
  );
  layer.loadStateDict(dict);
  const rlayer = relaxedSupported
    ? new rlib.TransformerEncoderLayer({ dModel: E, nhead: H, dimFeedforward: F, activation: "gelu" }).loadStateDict(dict)
    : null;
  const x = randomTensor([1, L, E], 5);
  const flops = 2 * L * (4 * E * E + 2 * E * F) + 4 * L * L * E;
  await bench(
    `BERT-base encoder layer L=${L}`,
    flops,
    [
      { name: "wasm-attention", fn: () => layer.forward(x).data },
      ...withRelaxed("wasm-attention", () => rlayer.forward(x).data),
      { name: "onnxruntime-web (ops)", fn: await ortEncoderLayer(dict, { L, E, H, F }).then((f) => () => f(x)) },
    ],
    { runs: quick ? 5 : 15, budgetMs: quick ? 3000 : 15000 },
  );
  layer.dispose();
  rlayer?.dispose();
}

// a whole BERT-base encoder (issue #12): 12 post-LN GELU layers, hidden 768, random weights, one
// graph of the same 12 layers on onnxruntime-web's side (the embeddings, a gather, left out of both)
{
  const [L, E, F, N] = [128, 768, 3072, 12];
  const encoder = new lib.TransformerEncoder({ layer: { dModel: E, nhead: H, dimFeedforward: F, activation: "gelu" }, numLayers: N });
  const dicts = encoder.layers.map((layer, l) =>
    Object.fromEntries(
      layer
        .params()
        .map((p, i) => [
          p.key,
          scaled(
            randomTensor(p.shape, 100 * l + i),
            p.key.startsWith("norm") && p.key.endsWith("weight") ? 0 : 0.05,
            p.key.startsWith("norm") && p.key.endsWith("weight") ? 1 : 0,
          ),
        ]),
    ),
  );
  encoder.loadStateDict(Object.fromEntries(dicts.flatMap((d, l) => Object.entries(d).map(([k, t]) => [`layers.${l}.${k}`, t]))));
  const x = randomTensor([1, L, E], 6);
  const flops = N * (2 * L * (4 * E * E + 2 * E * F) + 4 * L * L * E);
  await bench(
    `BERT-base encoder (12 layers) L=${L}`,
    flops,
    [
      { name: "wasm-attention", fn: () => encoder.forward(x).data },
      { name: "onnxruntime-web (ops)", fn: await ortEncoderStack(dicts, { L, E, H, F }).then((f) => () => f(x)) },
    ],
    { runs: quick ? 3 : 9, budgetMs: quick ? 5000 : 30000 },
  );
  encoder.dispose();
}

// q8 and q4 (issue #14): the same layer with int8 and 4-bit (q4_0) weights, against onnxruntime-web's
// graphs of the same weights (bench/quantized.mjs). "GFLOP/s" counts 2 ops per multiply-add,
// integer or float; "% of peak" is against the dot_i16x8_s + add peak: both kernels run it on int8
// activations, in both builds.
for (const weights of ["q8", "q4"]) {
  for (const L of quick ? [128] : [128, 512]) {
    const c = await quantizedCase(weights, { lib, rlib, relaxed: relaxedSupported, L });
    await bench(c.name, c.flops, c.contenders, { runs: quick ? 5 : 15, budgetMs: quick ? 3000 : 15000, agree: c.agree, peak: peak.dotI16 });
    c.dispose();
  }
}

function scenarioResult(r) {
  const mb = (b) => (b / 2 ** 20).toFixed(1);
  if (r.ms !== undefined) return `${r.ms.toFixed(1)} ms`;
  if (r.rssGrowth !== undefined)
    return `RSS grew ${mb(r.rssGrowth)} MB over 10,000 calls after 1,000 warm-up calls, then ${mb(r.rssGrowthAfter)} MB over 10,000 more; live JavaScript heap after a collection ${mb(r.heapGrowth)} MB from the start (WebAssembly memory ${mb(r.wasmBytes)} MB, flat)`;
  return `${mb(r.bytes)} MB above the process baseline${r.wasmBytes ? ` (WebAssembly memory ${mb(r.wasmBytes)} MB)` : ""}${r.failed ? `; failed: ${r.failed}` : ""}`;
}

function scaled(t, scale, offset) {
  for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i] * scale + offset;
  return t;
}

// [1, H, L, d] <-> [1, L, H*d], the fused op's layout (the conversion is not timed against it)
function toBLE(t) {
  const [, h, L, dd] = t.shape;
  const out = new Float32Array(t.data.length);
  for (let i = 0; i < h; i++) for (let l = 0; l < L; l++) out.set(t.data.subarray((i * L + l) * dd, (i * L + l + 1) * dd), (l * h + i) * dd);
  return { data: out, shape: t.shape };
}
function fromBLE(data, L) {
  const out = new Float32Array(data.length);
  for (let i = 0; i < H; i++) for (let l = 0; l < L; l++) out.set(data.subarray((l * H + i) * d, (l * H + i + 1) * d), (i * L + l) * d);
  return out;
}

if (child) {
  console.log(JSON.stringify({ rows, peak }));
  process.exit(0);
}
// the same cases on two threads, in a process of their own (onnxruntime-web fixes its thread count once)
if (!threadsArg && !quick) {
  const { execFileSync } = await import("node:child_process");
  const args = [...process.execArgv, new URL(import.meta.url).pathname, "--threads=2", "--json", ...(only ? [`--only=${only}`] : [])];
  const out = execFileSync(process.execPath, args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 24 });
  rows.push(...JSON.parse(out.trim().split("\n").pop()).rows);
}
// cold start and peak memory, each in a fresh process (with --only, those it names)
const scenarioRows = [];
if (!quick && !threadsArg) {
  const { execFileSync } = await import("node:child_process");
  for (const name of [
    "cold start: wasm-attention",
    "cold start: onnxruntime-web",
    "memory: attention L=16384, wasm-attention",
    "memory: attention L=16384, onnxruntime-web",
    "memory: 4-layer encoder L=4096, wasm-attention",
    "rss: 10,000 encoder and attention calls",
  ].filter((n) => !only || n.includes(only))) {
    const r = JSON.parse(
      execFileSync(process.execPath, ["--expose-gc", new URL("./scenarios.mjs", import.meta.url).pathname, name], {
        encoding: "utf8",
        maxBuffer: 1 << 20,
      }).trim(),
    );
    scenarioRows.push({ scenario: name, result: scenarioResult(r) });
    console.error(`${name}: ${scenarioRows.at(-1).result}`);
  }
}
const versions = ["onnxruntime-web", "@tensorflow/tfjs-backend-wasm", "assemblyscript"].map(
  (p) => `${p} ${JSON.parse(readFileSync(new URL(`../node_modules/${p}/package.json`, import.meta.url))).version}`,
);
const machine = `${os.cpus()[0].model}, ${os.cpus().length} cores, Node ${process.version}; ${versions.join(", ")}`;
// sequence-length scaling, each length in a process of its own
let scaling = [];
if (!quick && !threadsArg && !only) {
  const { execFileSync } = await import("node:child_process");
  scaling = JSON.parse(
    execFileSync(process.execPath, [new URL("./scaling.mjs", import.meta.url).pathname], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
      maxBuffer: 1 << 20,
    })
      .trim()
      .split("\n")
      .pop(),
  );
}
let results = { date: new Date().toISOString().slice(0, 10), machine, peak, rows, scenarioRows, scaling };
if (only && !quick) {
  // --only=<case>: the cases it names replace theirs in the last full run's results; the rest are kept
  const last = JSON.parse(readFileSync(new URL("./results.json", import.meta.url), "utf8"));
  results = {
    ...last,
    rows: [...last.rows.filter((r) => !r.case.includes(only)), ...rows],
    scenarioRows: last.scenarioRows.map((r) => scenarioRows.find((s) => s.scenario === r.scenario) ?? r),
    updated: `${results.date}: ${only}`,
  };
}
console.log(report(results));
if (!quick) {
  writeFileSync(new URL("./results.json", import.meta.url), `${JSON.stringify(results, null, 1)}\n`);
  writeFileSync(new URL("./RESULTS.md", import.meta.url), report(results));
}
