// bench/RESULTS.md from one run's numbers: the table, then each issue target checked against it.
import { readFileSync, readdirSync } from "node:fs";
import { table } from "./harness.mjs";

// the sections other benchmark scripts write (bench/sections/*.md: decoding, loading memory,
// linear attention), appended in name order
function sections() {
  const dir = new URL("./sections/", import.meta.url);
  let names = [];
  try {
    names = readdirSync(dir)
      .filter((n) => n.endsWith(".md"))
      .sort();
  } catch {
    return "";
  }
  return names.map((n) => `\n${readFileSync(new URL(n, dir), "utf8").trim()}\n`).join("");
}

export function report({ date, machine, peak, rows, scenarioRows, scaling = [], updated }) {
  const ms = (c, threads, contender) => Number(rows.find((r) => r.case === c && r.threads === threads && r.contender === contender)?.["median ms"]);
  const ours = (c, t = 1, v = "wasm-attention") => ms(c, t, v);
  const ort = (c, t = 1) => ms(c, t, "onnxruntime-web (ops)");
  const flops = (L, causal) => (4 * 12 * L * L * 64) / (causal ? 2 : 1);
  const scenario = (name) => scenarioRows.find((r) => r.scenario === name)?.result ?? "not run";
  const mb = (name) => Number(/([\d.]+) MB/.exec(scenario(name))?.[1]);
  const x = (a) => `${a.toFixed(2)}x`;
  const targets = [];
  const target = (what, wanted, got, met, why = "") =>
    targets.push({ target: what, wanted, measured: got, met: met ? "yes" : "no", "what limits it": met ? "" : why });
  // the time needed for a ratio against onnxruntime-web, as a share of the peak
  const needs = (ratio, c, L, causal) => {
    const gflops = flops(L, causal) / (ort(c) / ratio) / 1e6;
    return `${ratio}x needs ${(ort(c) / ratio).toFixed(1)} ms = ${gflops.toFixed(0)} GFLOP/s, ${((100 * gflops) / peak.madd).toFixed(0)}% of the measured one-core mul+add peak; onnxruntime-web already runs at ${((100 * flops(L, causal)) / ort(c) / 1e6 / peak.madd).toFixed(0)}% here (the issue measured it at about 33%)`;
  };
  for (const L of [512, 2048]) {
    const c = `attention L=${L}`;
    target(`${c}: 2x onnxruntime-web`, "2x", x(ort(c) / ours(c)), ort(c) / ours(c) >= 2, needs(2, c, L, false));
    const cc = `${c} causal`;
    target(
      `${cc}: 3.5x onnxruntime-web`,
      "3.5x",
      x(ort(cc) / ours(cc)),
      ort(cc) / ours(cc) >= 3.5,
      needs(3.5, cc, L, true).replace("(the issue", "while causal costs us half of non-causal (the issue"),
    );
    const share = flops(L, false) / ours(c) / 1e6 / peak.madd;
    target(
      `${c}: 70% of the mul+add peak`,
      "70%",
      `${(Math.floor(1000 * share) / 10).toFixed(1)}%`,
      share >= 0.7,
      "the online-softmax passes (exp, max, rescale) and the score tile stores between the two products",
    );
  }
  const d = "decode step Lq=1, Lk=4096";
  const resident = (c) => ours(c, 1, "wasm-attention (resident K, V)");
  const gbs = (c, Lk) => ((2 * 12 * Lk * 64 * 4) / resident(c) / 1e6).toFixed(0);
  const memoryBound = `the resident kernel reads K and V at ${gbs(d, 4096)} GB/s against ${peak.stream.toFixed(0)} GB/s for one plain stream of loads from memory: two streams at once, with arithmetic between the loads and no prefetch instruction in WebAssembly (the peers run between our calls, so K and V come from memory, not cache; the 1024-key case reads at ${gbs("decode step Lq=1, Lk=1024", 1024)} GB/s)`;
  target(
    `${d}, plain tensors: 2x`,
    "2x",
    x(ort(d) / ours(d)),
    ort(d) / ours(d) >= 2,
    `copying 25 MB of K and V into WebAssembly memory costs about ${(ours(d) - resident(d)).toFixed(1)} ms of our ${ours(d).toFixed(2)} ms; then ${memoryBound}`,
  );
  target(
    `${d}, resident K and V: 4x`,
    "4x",
    x(ort(d) / resident(d)),
    ort(d) / resident(d) >= 4,
    `${memoryBound}; two threads reach ${x(ort(d) / ours(d, 2, "wasm-attention (resident K, V)"))}`,
  );
  // issue #14: the same step over K and V stored as a KV cache of dtype q8 / f16 stores them
  for (const [dtype, wanted, limit] of [
    ["q8", 2, "int8 keys on dot_i16x8_s against the query in int16 levels; values summed over pairs of keys on dot_i16x8_s"],
    ["f16", 1.5, "halves widened in 2 SIMD operations (shift, mask; the 2^112 rebias folded into the query and the probabilities)"],
  ]) {
    const stored = ours(d, 1, `wasm-attention (resident K, V, ${dtype})`);
    if (!(stored > 0)) continue;
    target(
      `${d}, ${dtype} cache: ${wanted}x our f32 resident step`,
      `${wanted}x`,
      x(resident(d) / stored),
      resident(d) / stored >= wanted,
      `${limit}; ${(((dtype === "q8" ? 2 * 12 * 4096 * (64 + 4) : 2 * 12 * 4096 * 128) / stored) * 1e-6).toFixed(0)} GB/s of stored rows`,
    );
  }
  for (const L of [128, 512]) {
    const c = `BERT-base encoder layer L=${L}`;
    target(
      `${c}: 1.7x`,
      "1.7x",
      x(ort(c) / ours(c)),
      ort(c) / ours(c) >= 1.7,
      `our layer runs at ${((100 * (2 * L * (4 * 768 * 768 + 2 * 768 * 3072) + 4 * L * L * 768)) / ours(c) / 1e6 / peak.madd).toFixed(0)}% of the mul+add peak, onnxruntime-web at ${((100 * (2 * L * (4 * 768 * 768 + 2 * 768 * 3072) + 4 * L * L * 768)) / ort(c) / 1e6 / peak.madd).toFixed(0)}%: 1.7x would need more than the peak; the relaxed build reaches ${x(ort(c) / ours(c, 1, "wasm-attention (relaxed)"))}`,
    );
  }
  const bert = "BERT-base encoder layer L=512";
  const relaxedGain = ours(bert) / ours(bert, 1, "wasm-attention (relaxed)");
  target(
    "relaxed build: 1.25x baseline on the encoder layer",
    "1.25x",
    x(relaxedGain),
    relaxedGain >= 1.25,
    "matrix products bound by loads rather than by multiply-adds once these are fused",
  );
  const threadsGain = ours(bert) / ours(bert, 2);
  target(
    "two threads: 1.8x one thread, BERT-base layer L=512",
    "1.8x",
    x(threadsGain),
    threadsGain >= 1.8,
    "the layer norms and copies run on one thread; the machine is shared and noisy",
  );
  // issue #14: the layer with quantized weights against onnxruntime-web's graphs of the same weights
  const theirs = (c, v) => ms(c, 1, v);
  const intShare = (L, t) => ((100 * 2 * L * (4 * 768 * 768 + 2 * 768 * 3072)) / t / 1e6 / peak.dotI16).toFixed(0);
  for (const L of [128, 512]) {
    const c = `BERT-base encoder layer q8 L=${L}`;
    const peer = theirs(c, "onnxruntime-web q8 (quantize_dynamic graph)");
    if (!(peer > 0)) continue;
    const limit = (wanted) =>
      `${wanted}x would run the layer's integer products at ${intShare(L, peer / wanted)}% of the measured dot_i16x8_s peak (${peak.dotI16?.toFixed(0)} GOP/s; attention, layer norms and quantization counted as time); ours run at ${intShare(L, ours(c, 1, "wasm-attention q8"))}%, onnxruntime-web's at ${intShare(L, peer)}%. The relaxed build uses the same dot_i16x8_s: relaxed_dot_i8x16_i7x16 takes one 7-bit operand (7-bit activations cost accuracy past the 1% target; splitting an operand doubles the products), and its measured peak without AVX-VNNI code in Node 20 (${peak.dotI8?.toFixed(0)} GOP/s) is ${(peak.dotI8 / peak.dotI16).toFixed(2)}x dot_i16x8_s's`;
    for (const [build, wanted] of [
      ["wasm-attention q8", 1.2],
      ["wasm-attention q8 (relaxed)", 1.6],
    ])
      target(
        `${c}${build.includes("relaxed") ? ", relaxed build" : ""}: ${wanted}x`,
        `${wanted}x`,
        x(peer / ours(c, 1, build)),
        peer / ours(c, 1, build) >= wanted,
        limit(wanted),
      );
    const c4 = `BERT-base encoder layer q4 L=${L}`;
    const peer4 = theirs(c4, "onnxruntime-web q4 (MatMulNBits graph)");
    if (peer4 > 0)
      target(
        `${c4}: 2x onnxruntime-web's MatMulNBits`,
        "2x",
        x(peer4 / ours(c4, 1, "wasm-attention q4")),
        peer4 / ours(c4, 1, "wasm-attention q4") >= 2,
        "",
      );
  }
  target(
    "one head, L=16384, d=64: under 64 MB above baseline",
    "64 MB",
    `${mb("memory: attention L=16384, wasm-attention")} MB`,
    mb("memory: attention L=16384, wasm-attention") < 64,
  );
  target(
    "4-layer encoder at L=4096 fits 128 MB",
    "128 MB",
    `${mb("memory: 4-layer encoder L=4096, wasm-attention")} MB`,
    mb("memory: 4-layer encoder L=4096, wasm-attention") < 128,
  );

  return `# Benchmark results

Written by \`npm run bench\` on ${date}${updated ? ` (cases updated on ${updated})` : ""}: ${machine}.
Measured peak (bench/peak.mjs, one core, best of 9): f32x4 mul+add ${peak.madd.toFixed(1)} GFLOP/s, relaxed_madd ${peak.relaxedMadd?.toFixed(1) ?? "n/a"} GFLOP/s, streaming loads ${peak.stream.toFixed(1)} GB/s.

"wasm-attention" is the baseline SIMD build, "(relaxed)" the relaxed-SIMD build; B = 1, 12 heads, d = 64. Median of many runs after warm-up: one thread interleaves the contenders; two threads run them one after another (onnxruntime-web's pool spins after each call). Peers get the same inputs and their outputs are checked against ours before they are timed. "% of peak" is against the one-core mul+add peak, also for two threads. "time / ours": the contender's median over ours (above 1: we are faster).

## Targets (one thread, baseline build, against onnxruntime-web in the same run unless said)

${table(targets, ["target", "wanted", "measured", "met", "what limits it"])}

## All cases

${table(rows, ["case", "threads", "contender", "median ms", "GFLOP/s", "% of peak", "time / ours"])}

## Cold start and peak memory (one process each; memory is VmHWM above the resident size before the call)

${table(scenarioRows, ["scenario", "result"])}
${scalingSection(scaling)}${sections()}`;
}

// sequence-length scaling: time, time per token and peak memory per method and L, then the checks
function scalingSection(scaling) {
  if (!scaling.length) return "";
  const rows = scaling.map((r) => ({
    method: r.method,
    L: r.L,
    ms: r.ms.toFixed(1),
    "us / token": ((1000 * r.ms) / r.L).toFixed(2),
    "peak MB": (r.peakBytes / 2 ** 20).toFixed(1),
    "peak bytes / token": Math.round(r.peakBytes / r.L),
  }));
  const perToken = (m, L) => {
    const r = scaling.find((x) => x.method === m && x.L === L);
    return r && r.ms / r.L;
  };
  const checks = ["window 256", "linear", "block-sparse (BigBird)"].map((m) => {
    const a = perToken(m, 4096);
    const b = perToken(m, 65536);
    const growth = b / a;
    return { method: m, "time per token, 64k over 4k": `${growth.toFixed(2)}x`, "flat within 20%": growth <= 1.2 ? "yes" : "no" };
  });
  return `
## Sequence-length scaling (\`node bench/scaling.mjs\`: one head, d = 64, causal, one thread; each L in a process of its own)

${table(rows, ["method", "L", "ms", "us / token", "peak MB", "peak bytes / token"])}

Dense attention grows as L^2; the others should stay flat per token:

${table(checks, ["method", "time per token, 64k over 4k", "flat within 20%"])}

The issue asks the window and linear attention to stay flat. BigBird's per-token time may grow slightly: its global block of queries attends to every key (O(L) work for those rows); the kernel walks each query block's list of allowed key blocks, so nothing else depends on L.

Peak memory above the process baseline grows linearly with L for every method (about 2 KB per token at 64k: the inputs, the output and the keys' transposed copy, no L x L buffer).
`;
}
