// One scenario per process, so memory peaks and cold starts are measured from a clean start:
//   node bench/scenarios.mjs NAME  ->  prints one JSON line
// peak memory is the process's high-water mark (VmHWM) above its resident size before the work.
import { readFileSync } from "node:fs";

const t0 = performance.now();
const name = process.argv[2];
const hwm = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))[1]) * 1024;
const rss = () => process.memoryUsage().rss;
const random = (n) => {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 12.9898) * 0.5;
  return a;
};

const scenarios = {
  // import + init + the first call of 12-head attention at L = 128
  async "cold start: wasm-attention"() {
    const lib = await import("../dist/index.js");
    await lib.init();
    const q = lib.tensor(random(12 * 128 * 64), [1, 12, 128, 64]);
    lib.scaledDotProductAttention(q, q, q);
    return { ms: performance.now() - t0 };
  },
  async "cold start: onnxruntime-web"() {
    const { setupOrt, ortAttention } = await import("./peers.mjs");
    await setupOrt(1);
    const run = await ortAttention({ H: 12, Lq: 128, Lk: 128, d: 64, causal: false });
    const q = { data: random(12 * 128 * 64), shape: [1, 12, 128, 64] };
    await run(q, q, q);
    return { ms: performance.now() - t0 };
  },
  // one head, L = 16384, d = 64: q, k, v and the output are 16 MB
  async "memory: attention L=16384, wasm-attention"() {
    const lib = await import("../dist/index.js");
    await lib.init();
    const [q, k, v] = [1, 2, 3].map(() => lib.tensor(random(16384 * 64), [1, 16384, 64]));
    const base = rss();
    lib.scaledDotProductAttention(q, k, v);
    return { bytes: hwm() - base };
  },
  async "memory: attention L=16384, onnxruntime-web"() {
    const { setupOrt, ortAttention } = await import("./peers.mjs");
    await setupOrt(1);
    const run = await ortAttention({ H: 1, Lq: 16384, Lk: 16384, d: 64, causal: false });
    const [q, k, v] = [1, 2, 3].map(() => ({ data: random(16384 * 64), shape: [1, 1, 16384, 64] }));
    const base = rss();
    try {
      await run(q, k, v);
    } catch (e) {
      return { bytes: hwm() - base, failed: String(e.message ?? e).slice(0, 80) };
    }
    return { bytes: hwm() - base };
  },
  // 4 layers, d = 256, 4 heads, FFN 1024, L = 4096: weights 12.6 MB, input 4 MB
  async "memory: 4-layer encoder L=4096, wasm-attention"() {
    const lib = await import("../dist/index.js");
    await lib.init();
    const enc = new lib.TransformerEncoder({ layer: { dModel: 256, nhead: 4, dimFeedforward: 1024 }, numLayers: 4 });
    enc.loadStateDict(Object.fromEntries(enc.params().map((p) => [p.key, lib.tensor(random(p.shape.reduce((a, b) => a * b, 1)), p.shape)])));
    const x = lib.tensor(random(4096 * 256), [1, 4096, 256]);
    const base = rss();
    enc.forward(x, { isCausal: true });
    return { bytes: hwm() - base, wasmBytes: lib.memoryStats().bufferBytes };
  },
  // process RSS over 10,000 calls of an encoder and of attention: what the soak test cannot see
  async "rss: 10,000 encoder and attention calls"() {
    const lib = await import("../dist/index.js");
    await lib.init();
    const enc = new lib.TransformerEncoder({ layer: { dModel: 64, nhead: 4, dimFeedforward: 256 }, numLayers: 2 });
    enc.loadStateDict(Object.fromEntries(enc.params().map((p) => [p.key, lib.tensor(random(p.shape.reduce((a, b) => a * b, 1)), p.shape)])));
    const x = lib.tensor(random(2 * 32 * 64), [2, 32, 64]);
    const run = (n) => {
      for (let i = 0; i < n; i++) {
        enc.forward(x, { isCausal: true });
        lib.scaledDotProductAttention(x, x, x, { returnWeights: i % 2 === 0 });
      }
    };
    const settle = () => {
      globalThis.gc?.();
      return { rss: rss(), heap: process.memoryUsage().heapUsed };
    };
    run(1000);
    const base = settle();
    run(10_000);
    const mid = settle();
    // a second 10,000: V8 grows its young generation once under this allocation rate, then stays
    run(10_000);
    const end = settle();
    return {
      rssGrowth: mid.rss - base.rss,
      rssGrowthAfter: end.rss - mid.rss,
      heapGrowth: end.heap - base.heap,
      wasmBytes: lib.memoryStats().bufferBytes,
    };
  },
};

if (!scenarios[name]) throw new Error(`unknown scenario ${name}; known: ${Object.keys(scenarios).join(", ")}`);
console.log(JSON.stringify({ name, ...(await scenarios[name]()) }));
process.exit(0);
