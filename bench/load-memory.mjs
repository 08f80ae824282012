// Peak memory of loading a Hugging Face BERT checkpoint into an EncoderModel, from the built
// package (dist/): writes a BERT-base-sized model (random weights) as F32 and as F16 safetensors,
// then loads each in a fresh process and reports the peak resident memory above a baseline taken
// once the file's bytes are read (so the ratio is what loading costs on top of the bytes in hand).
//
//   npm run build && node --expose-gc bench/load-memory.mjs            # 12 layers, hidden 768 (~440 MB F32)
//   node --expose-gc bench/load-memory.mjs --layers 2                  # a quick check
//   options: --layers N --hidden H --vocab V --keep (keep the files) --package path/to/index.js
//
// Targets (issue #12), at full size: peak above baseline <= 1.3x the file for F32, <= 2.3x for F16.
// The peak is the larger of /proc/self/status VmHWM (reset through /proc/self/clear_refs where
// the kernel allows it) and a worker thread sampling process.memoryUsage().rss every 2 ms.
import { spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? fallback : args[i + 1];
};

if (args[0] === "--child") await child(args[1], args[2], args[3]);
else await parent();

async function parent() {
  if (typeof globalThis.gc !== "function") throw new Error("run with node --expose-gc");
  const layers = Number(option("layers", 12));
  const hidden = Number(option("hidden", 768));
  const vocab = Number(option("vocab", 30522));
  const pkg = option("package", fileURLToPath(new URL("../dist/index.js", import.meta.url)));
  const config = {
    architectures: ["BertModel"],
    model_type: "bert",
    vocab_size: vocab,
    hidden_size: hidden,
    num_hidden_layers: layers,
    num_attention_heads: hidden / 64,
    intermediate_size: 4 * hidden,
    hidden_act: "gelu",
    max_position_embeddings: 512,
    type_vocab_size: 2,
    layer_norm_eps: 1e-12,
    pad_token_id: 0,
    position_embedding_type: "absolute",
    torch_dtype: "float32",
  };
  const dir = mkdtempSync(join(tmpdir(), "wa-load-memory-"));
  try {
    writeFileSync(join(dir, "config.json"), JSON.stringify(config));
    console.log(`BERT: ${layers} layers, hidden ${hidden}, vocab ${vocab}; package ${pkg}`);
    console.log("| weights | file | peak RSS above baseline | ratio | target | WebAssembly memory | load time |");
    console.log("| --- | --- | --- | --- | --- | --- | --- |");
    for (const [dtype, target] of [
      ["F32", 1.3],
      ["F16", 2.3],
    ]) {
      const file = join(dir, `model-${dtype}.safetensors`);
      const bytes = writeCheckpoint(file, config, dtype);
      const run = spawnSync(process.execPath, ["--expose-gc", fileURLToPath(import.meta.url), "--child", file, join(dir, "config.json"), pkg], {
        encoding: "utf8",
        maxBuffer: 1 << 20,
      });
      if (run.status !== 0) throw new Error(`the ${dtype} load failed:\n${run.stderr}`);
      const r = JSON.parse(run.stdout.trim().split("\n").pop());
      const ratio = r.peakAbove / bytes;
      console.log(
        `| ${dtype} | ${mb(bytes)} | ${mb(r.peakAbove)} (${r.source}) | ${ratio.toFixed(2)}x | <= ${target}x ${ratio <= target ? "met" : "MISSED"} | ${mb(r.wasmBytes)} | ${(r.ms / 1000).toFixed(2)} s |`,
      );
      if (!args.includes("--keep")) rmSync(file);
    }
  } finally {
    if (!args.includes("--keep")) rmSync(dir, { recursive: true, force: true });
  }
}

function mb(n) {
  return `${(n / 2 ** 20).toFixed(1)} MB`;
}

// HF's names and shapes of BertModel (with its pooler and position_ids buffer, as checkpoints have them)
function tensors({ vocab_size: V, hidden_size: E, num_hidden_layers: N, intermediate_size: F, max_position_embeddings: P, type_vocab_size: T }) {
  const out = [
    ["embeddings.position_ids", [1, P], "I64"],
    ["embeddings.word_embeddings.weight", [V, E]],
    ["embeddings.position_embeddings.weight", [P, E]],
    ["embeddings.token_type_embeddings.weight", [T, E]],
    ["embeddings.LayerNorm.weight", [E]],
    ["embeddings.LayerNorm.bias", [E]],
  ];
  for (let i = 0; i < N; i++) {
    const l = `encoder.layer.${i}.`;
    for (const n of ["query", "key", "value"]) out.push([`${l}attention.self.${n}.weight`, [E, E]], [`${l}attention.self.${n}.bias`, [E]]);
    out.push(
      [`${l}attention.output.dense.weight`, [E, E]],
      [`${l}attention.output.dense.bias`, [E]],
      [`${l}attention.output.LayerNorm.weight`, [E]],
      [`${l}attention.output.LayerNorm.bias`, [E]],
      [`${l}intermediate.dense.weight`, [F, E]],
      [`${l}intermediate.dense.bias`, [F]],
      [`${l}output.dense.weight`, [E, F]],
      [`${l}output.dense.bias`, [E]],
      [`${l}output.LayerNorm.weight`, [E]],
      [`${l}output.LayerNorm.bias`, [E]],
    );
  }
  out.push(["pooler.dense.weight", [E, E]], ["pooler.dense.bias", [E]]);
  return out;
}

// writes the checkpoint a chunk at a time (never the whole model in memory); returns its size
function writeCheckpoint(file, config, dtype) {
  const width = { F32: 4, F16: 2, I64: 8 };
  const header = { __metadata__: { format: "pt" } };
  let at = 0;
  const list = tensors(config).map(([name, shape, type = dtype]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: type, shape, data_offsets: [at, at + n * width[type]] };
    at += n * width[type];
    return { name, n, type };
  });
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const fd = openSync(file, "w");
  try {
    const head = Buffer.alloc(8 + json.length);
    head.writeBigUInt64LE(BigInt(json.length), 0);
    head.write(json, 8, "latin1");
    writeSync(fd, head);
    let seed = 12345;
    // in [-0.05, 0.05)
    const random = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed / 2 ** 32 - 0.5) * 0.1;
    };
    for (const { n, type } of list) {
      for (let done = 0; done < n; done += 1 << 20) {
        const m = Math.min(1 << 20, n - done);
        let chunk;
        if (type === "I64") chunk = BigInt64Array.from({ length: m }, (_, i) => BigInt(done + i));
        else if (type === "F32") chunk = Float32Array.from({ length: m }, random);
        else chunk = Uint16Array.from({ length: m }, () => half(random()));
        writeSync(fd, new Uint8Array(chunk.buffer));
      }
    }
  } finally {
    closeSync(fd);
  }
  return 8 + json.length + at;
}

// f32 -> f16 bits, rounded toward zero (|x| < 1 here)
function half(x) {
  const sign = x < 0 ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a < 2 ** -14) return sign | Math.floor(a / 2 ** -24);
  const e = Math.floor(Math.log2(a));
  return sign | ((e + 15) << 10) | Math.floor((a / 2 ** e - 1) * 1024);
}

async function child(file, configFile, pkg) {
  const lib = await import(pathToFileURL(pkg).href);
  await lib.init();
  const config = JSON.parse(readFileSync(configFile, "utf8"));
  const bytes = readFileSync(file);
  // a sampler on another thread: the load is one synchronous call
  const peak = new Int32Array(new SharedArrayBuffer(8)); // [peak RSS in KiB, stop]
  const sampler = new Worker(
    `const { workerData: p } = require("node:worker_threads");
     const tick = () => { Atomics.store(p, 0, Math.max(Atomics.load(p, 0), Math.round(process.memoryUsage().rss / 1024))); if (!Atomics.load(p, 1)) setTimeout(tick, 2); };
     tick();`,
    { eval: true, workerData: peak },
  );
  await new Promise((resolve) => setTimeout(resolve, 50));
  globalThis.gc();
  globalThis.gc();
  const baseline = process.memoryUsage().rss;
  Atomics.store(peak, 0, Math.round(baseline / 1024));
  const cleared = (() => {
    try {
      writeFileSync("/proc/self/clear_refs", "5"); // resets VmHWM to the current RSS
      return true;
    } catch {
      return false;
    }
  })();
  const t0 = performance.now();
  const model = lib.EncoderModel.fromConfig(config).loadStateDict(lib.loadSafetensors(bytes));
  const ms = performance.now() - t0;
  await new Promise((resolve) => setTimeout(resolve, 20));
  Atomics.store(peak, 1, 1);
  await sampler.terminate();
  const hwm = cleared ? Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))[1]) * 1024 : 0;
  const sampled = Atomics.load(peak, 0) * 1024;
  const top = Math.max(hwm, sampled);
  console.log(
    JSON.stringify({
      baseline,
      peakAbove: top - baseline,
      source: hwm >= sampled ? "VmHWM" : "sampled",
      hwm,
      sampled,
      ms,
      wasmBytes: lib.memoryStats().bufferBytes,
      file: bytes.length,
    }),
  );
  model.dispose();
}
