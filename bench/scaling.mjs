// Sequence-length scaling, one head, d = 64, causal: dense flash attention, a sliding window of 256,
// block-sparse (BigBird: blocks of 64, 1 each side, 1 global, 1 random) and linear attention,
// at L = 1k, 4k, 16k, 64k. Each (method, L) runs in a process of its own, for its memory peak.
//   node bench/scaling.mjs            -> JSON rows on stdout
//   node bench/scaling.mjs METHOD L   -> one measurement (the child)
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

const METHODS = ["dense (flash)", "window 256", "block-sparse (BigBird)", "linear"];
const LENGTHS = [1024, 4096, 16384, 65536];

async function measure(method, L) {
  const lib = await import("../dist/index.js");
  await lib.init({ simd: "baseline" });
  const d = 64;
  const x = (s) =>
    lib.tensor(
      Float32Array.from({ length: L * d }, (_, i) => Math.sin(i * 0.37 + s) * 0.5),
      [1, L, d],
    );
  const [q, k, v] = [x(1), x(2), x(3)];
  const layout = method.startsWith("block")
    ? lib.blockSparseLayout(L, L, 64, { pattern: "bigbird", window: 1, global: 1, random: 1, seed: 1 })
    : null;
  const run = {
    "dense (flash)": () => lib.scaledDotProductAttention(q, k, v, { isCausal: true }),
    "window 256": () => lib.scaledDotProductAttention(q, k, v, { window: [256, 0] }),
    "block-sparse (BigBird)": () => lib.scaledDotProductAttention(q, k, v, { blockSparse: { layout, blockSize: 64 } }),
    linear: () => lib.linearAttention(q, k, v, { causal: true }),
  }[method];
  const hwm = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))[1]) * 1024;
  const base = process.memoryUsage().rss;
  run();
  const runs = method.startsWith("dense") && L >= 16384 ? 1 : 5;
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    run();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { method, L, ms: times[times.length >> 1], peakBytes: hwm() - base };
}

if (process.argv[2]) {
  console.log(JSON.stringify(await measure(process.argv[2], Number(process.argv[3]))));
} else {
  const rows = [];
  for (const method of METHODS) {
    for (const L of LENGTHS) {
      const r = JSON.parse(
        execFileSync(process.execPath, [new URL(import.meta.url).pathname, method, String(L)], { encoding: "utf8", maxBuffer: 1 << 20 }).trim(),
      );
      console.error(`${method} L=${L}: ${r.ms.toFixed(1)} ms, ${(r.peakBytes / 2 ** 20).toFixed(1)} MB`);
      rows.push(r);
    }
  }
  console.log(JSON.stringify(rows));
}
