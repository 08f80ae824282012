// Decoding with a Llama-style model (issue #13): tokens per second of our CausalLM against
// onnxruntime-web running the same model as an ONNX graph with its GroupQueryAttention contrib op
// (rotary inside, past/present key-values: what transformers.js runs), the same random weights.
//
//   npm run build && node bench/decoder.mjs [--threads=2] [--quick] [--only=30M] [--weights=q8]
//
// --weights=q8: both models with int8 weights, the same int8 values and per-channel scales: ours
// loaded with { weights: "q8" } (the tied table too), theirs as the graph onnxruntime's
// quantize_dynamic writes for every MatMul, the LM head included (DynamicQuantizeLinear of the
// input, MatMulInteger, the scales' product): what transformers.js's "q8" decoders hold.
//
// For each model: the prefill of a 128-token prompt, then decode steps at context 128 and at
// context 1024 (the cache filled to that length first). Median of many steps after warm-up, one
// contender after the other (onnxruntime-web's pool spins after each call). Ours computes the
// prompt's logits at its last position only; the graph slices its hidden states the same way, so
// both do the same work. Prints markdown.
import { readFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import * as ort from "onnxruntime-web";
import * as lib from "../dist/index.js";
import { randomTensor, table } from "./harness.mjs";
import { model } from "./onnx.mjs";
import { q8MatMul, q8Weight } from "./peers.mjs";

const threads = Number(process.argv.find((a) => a.startsWith("--threads="))?.slice(10) ?? 1);
const quick = process.argv.includes("--quick");
const only = process.argv.find((a) => a.startsWith("--only="))?.slice(7);
const format = process.argv.find((a) => a.startsWith("--weights="))?.slice(10) ?? "f32";
if (format !== "f32" && format !== "q8") throw new Error(`--weights: expected f32 or q8, got ${format}`);
// logits of the two contenders agree to this, relative to the largest (q8: the peer quantizes
// activations per tensor to uint8, we quantize them per row to int8)
const AGREE = format === "q8" ? 0.05 : 1e-3;
const PROMPT = 128;
const CONTEXTS = quick ? [128] : [128, 1024];
const STEPS = quick ? 8 : 32;

const MODELS = {
  // SmolLM-135M's shape
  "135M": { hidden_size: 576, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, intermediate_size: 1536, vocab_size: 49152 },
  "30M": { hidden_size: 384, num_hidden_layers: 12, num_attention_heads: 6, num_key_value_heads: 2, intermediate_size: 1024, vocab_size: 32000 },
};

await lib.init({ simd: "baseline", threads });
ort.env.wasm.numThreads = threads;
ort.env.logLevel = "error";

const rows = [];
const profiles = [];
for (const [name, shape] of Object.entries(MODELS)) {
  if (only && !name.includes(only)) continue;
  const config = {
    model_type: "llama",
    architectures: ["LlamaForCausalLM"],
    hidden_act: "silu",
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    max_position_embeddings: 2048,
    tie_word_embeddings: true,
    attention_bias: false,
    mlp_bias: false,
    ...shape,
  };
  const dict = weights(config);
  const ours = lib.CausalLM.fromConfig(config).loadStateDict(dict, "", format === "q8" ? { weights: "q8" } : {});
  const theirs = await ortModel(config, dict, format);
  const prompt = Int32Array.from({ length: PROMPT }, (_, i) => (i * 7919) % config.vocab_size);
  // the two agree before anything is timed
  const a = ours.forward(prompt, { lastOnly: true }).data;
  const b = (await theirs.prefill(prompt)).logits;
  const diff = maxRelative(a, b);
  if (diff > AGREE) throw new Error(`${name}: onnxruntime-web's logits differ from ours by ${diff} (relative to the largest)`);
  const params = paramCount(config);
  // the prompt
  const prefill = {
    ours: await median(async () => ours.forward(prompt, { lastOnly: true }), quick ? 3 : 7),
    theirs: await median(async () => theirs.prefill(prompt), quick ? 3 : 7),
  };
  rows.push(row(name, params, `prefill ${PROMPT} tokens`, prefill, (ms) => `${((PROMPT * 1000) / ms).toFixed(0)} tokens/s`));
  for (const context of CONTEXTS) {
    // our cache and onnxruntime-web's present key-values, filled to `context` tokens
    const cache = ours.createCache();
    ours.forward(
      Int32Array.from({ length: context }, (_, i) => (i * 31) % config.vocab_size),
      { cache, lastOnly: true },
    );
    let past = await theirs.prefill(Int32Array.from({ length: context }, (_, i) => (i * 31) % config.vocab_size));
    const step = {
      ours: await median(async () => {
        ours.forward(Int32Array.of(5), { cache, lastOnly: true });
        cache.truncate(context); // every step at the same context
      }, STEPS),
      theirs: await median(async () => theirs.step(5, past), STEPS),
    };
    if (context === CONTEXTS[CONTEXTS.length - 1])
      profiles.push([
        `${name}, decode at context ${context}`,
        await profile(() => {
          ours.forward(Int32Array.of(5), { cache, lastOnly: true });
          cache.truncate(context);
        }, STEPS),
      ]);
    cache.dispose();
    past = null;
    rows.push(row(name, params, `decode at context ${context}`, step, (ms) => `${(1000 / ms).toFixed(1)} tokens/s`));
  }
  ours.dispose();
}
console.log(
  `Decoding, ${format} weights, ${threads} thread${threads > 1 ? "s" : ""}, baseline SIMD build; medians; "ours / theirs" above 1 means we are faster.\n`,
);
console.log(table(rows, ["model", "case", "wasm-attention ms", "onnxruntime-web ms", "ours", "theirs", "speed-up"]));
for (const [what, shares] of profiles) {
  console.log(`\nWhere our time goes per token, ${what} (V8's sampling profiler, self time; kernels are the wasm functions):\n`);
  console.log(table(shares, ["function", "share"]));
}

// function index -> export name, from the kernel binary's export section (the profiler names wasm
// functions by index: the build carries no name section)
function kernelNames() {
  const bytes = readFileSync(new URL("../dist/kernels.wasm", import.meta.url));
  let at = 8;
  const u32 = () => {
    let v = 0,
      shift = 0,
      b;
    do {
      b = bytes[at++];
      v |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    return v >>> 0;
  };
  const names = new Map();
  while (at < bytes.length) {
    const id = bytes[at++];
    const size = u32();
    const end = at + size;
    if (id === 7) {
      for (let n = u32(); n > 0; n--) {
        const len = u32();
        const name = new TextDecoder().decode(bytes.subarray(at, at + len));
        at += len;
        const kind = bytes[at++];
        const index = u32();
        if (kind === 0) names.set(index, name);
      }
    }
    at = end;
  }
  return names;
}

// self time per function over `runs` calls of fn, from the inspector's CPU profile: the kernels by
// their export names, the rest of JavaScript together with the garbage collector
async function profile(fn, runs) {
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 100 });
  await session.post("Profiler.start");
  for (let i = 0; i < runs; i++) fn();
  const { profile: p } = await session.post("Profiler.stop");
  session.disconnect();
  const exported = kernelNames();
  const self = new Map();
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const dt = new Map();
  p.samples.forEach((id, i) => dt.set(id, (dt.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  let total = 0;
  for (const [id, t] of dt) {
    const n = byId.get(id);
    const index = /^wasm-function\[(\d+)\]$/.exec(n.callFrame.functionName)?.[1];
    const fname = n.callFrame.functionName;
    const name =
      fname === "(idle)" || fname === "(program)"
        ? null
        : index !== undefined
          ? `kernel ${exported.get(Number(index)) ?? `wasm-function[${index}]`}`
          : fname === "(garbage collector)"
            ? "garbage collector"
            : "JavaScript (the host and onnxruntime-web's glue)";
    if (!name) continue;
    self.set(name, (self.get(name) ?? 0) + t);
    total += t;
  }
  return [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 10)
    .map(([f, t]) => ({ function: f, share: `${((100 * t) / total).toFixed(1)}%` }));
}

function row(model, params, name, t, rate) {
  return {
    model: `${model} (${(params / 1e6).toFixed(0)}M params)`,
    case: name,
    "wasm-attention ms": t.ours.toFixed(2),
    "onnxruntime-web ms": t.theirs.toFixed(2),
    ours: rate(t.ours),
    theirs: rate(t.theirs),
    "speed-up": `${(t.theirs / t.ours).toFixed(2)}x`,
  };
}

async function median(fn, runs) {
  await fn();
  await fn();
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return times.sort((x, y) => x - y)[times.length >> 1];
}

function maxRelative(a, b) {
  let d = 0,
    m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(a[i]));
  }
  return d / m;
}

function paramCount(c) {
  const hd = c.hidden_size / c.num_attention_heads;
  const attn = c.hidden_size * hd * (2 * c.num_attention_heads + 2 * c.num_key_value_heads);
  return c.vocab_size * c.hidden_size + c.num_hidden_layers * (attn + 3 * c.hidden_size * c.intermediate_size + 2 * c.hidden_size) + c.hidden_size;
}

// a Hugging Face LlamaForCausalLM state dict of random weights (~N(0, 0.02) projections, norms near 1)
function weights(c) {
  const H = c.hidden_size,
    I = c.intermediate_size,
    hd = H / c.num_attention_heads;
  const nq = c.num_attention_heads * hd,
    nkv = c.num_key_value_heads * hd;
  let seed = 1;
  const w = (shape, s = 0.02) => {
    const t = randomTensor(shape, seed++);
    for (let i = 0; i < t.data.length; i++) t.data[i] *= s * 1.7;
    return t;
  };
  const ones = (n) => ({ data: Float32Array.from({ length: n }, (_, i) => 1 + 0.05 * Math.sin(i)), shape: [n] });
  const d = { "model.embed_tokens.weight": w([c.vocab_size, H], 0.5), "model.norm.weight": ones(H) };
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    Object.assign(d, {
      [`${p}self_attn.q_proj.weight`]: w([nq, H]),
      [`${p}self_attn.k_proj.weight`]: w([nkv, H]),
      [`${p}self_attn.v_proj.weight`]: w([nkv, H]),
      [`${p}self_attn.o_proj.weight`]: w([H, nq]),
      [`${p}mlp.gate_proj.weight`]: w([I, H]),
      [`${p}mlp.up_proj.weight`]: w([I, H]),
      [`${p}mlp.down_proj.weight`]: w([H, I]),
      [`${p}input_layernorm.weight`]: ones(H),
      [`${p}post_attention_layernorm.weight`]: ones(H),
    });
  }
  return d;
}

// the table [rows, cols] that q8Weight's int8 [cols, rows] and per-row scales hold: the rows our
// q8 embedding table gives (the Gather of a q8 model reads the same values as its tied head)
function dequantized([[, [cols, rows], q], [, , scales]]) {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r * cols + c] = Math.fround(q[c * rows + r] * scales[r]);
  return out;
}

// torch Linear weight [out, in] -> MatMul's [in, out]
function transpose({ data, shape: [rows, cols] }) {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return out;
}

/**
 * The model as one ONNX graph: Gather, then per layer SimplifiedLayerNormalization, the q/k/v
 * MatMuls, GroupQueryAttention (do_rotary with cos/sin caches, past/present), the output MatMul and
 * residual, the SiLU-gated MLP; the final norm on the last position and the tied LM head.
 * `format` "q8": every MatMul as quantize_dynamic writes it (see the top of this file).
 */
async function ortModel(c, d, format) {
  const H = c.hidden_size,
    hd = H / c.num_attention_heads,
    kvH = c.num_key_value_heads;
  const half = hd / 2;
  const inv = Float32Array.from({ length: half }, (_, i) => 1 / c.rope_theta ** ((2 * i) / hd));
  const cos = new Float32Array(c.max_position_embeddings * half),
    sin = new Float32Array(c.max_position_embeddings * half);
  for (let p = 0; p < c.max_position_embeddings; p++) {
    for (let i = 0; i < half; i++) {
      const a = Math.fround(p * inv[i]);
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  }
  // a torch Linear weight [out, in] as MatMul's [in, out] initializer(s)
  const weight = (name, t) => (format === "q8" ? q8Weight(name, t.data, t.shape[0], t.shape[1]) : [[name, [t.shape[1], t.shape[0]], transpose(t)]]);
  const q8 = q8MatMul(); // one input feeds q, k and v: quantized once
  const matmul = (x, w, out) => (format === "q8" ? q8(x, w, out) : [{ op: "MatMul", inputs: [x, w], outputs: [out] }]);
  const head = weight("lm_head", d["model.embed_tokens.weight"]);
  const init = [
    ["embed", [c.vocab_size, H], format === "q8" ? dequantized(head) : d["model.embed_tokens.weight"].data],
    ...head,
    ["final_norm", [H], d["model.norm.weight"].data],
    ["cos_cache", [c.max_position_embeddings, half], cos],
    ["sin_cache", [c.max_position_embeddings, half], sin],
    ["last", [1], [-1], "int64"],
    ["end", [1], [2 ** 31 - 1], "int64"],
    ["axis1", [1], [1], "int64"],
  ];
  const nodes = [{ op: "Gather", inputs: ["embed", "input_ids"], outputs: ["h0"], attrs: { axis: 0 } }];
  const inputs = [
    ["input_ids", [1, "S"], "int64"],
    ["seqlens_k", [1], "int32"],
    ["total_sequence_length", [], "int32"],
  ];
  const outputs = [["logits", [1, 1, c.vocab_size]]];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    const x = `h${i}`,
      y = `h${i + 1}`;
    const w = (name) => weight(`${name}_${i}`, d[p + name]);
    init.push(
      ...w("self_attn.q_proj.weight"),
      ...w("self_attn.k_proj.weight"),
      ...w("self_attn.v_proj.weight"),
      ...w("self_attn.o_proj.weight"),
      ...w("mlp.gate_proj.weight"),
      ...w("mlp.up_proj.weight"),
      ...w("mlp.down_proj.weight"),
      [`ln1_${i}`, [H], d[`${p}input_layernorm.weight`].data],
      [`ln2_${i}`, [H], d[`${p}post_attention_layernorm.weight`].data],
    );
    inputs.push([`past_key_${i}`, [1, kvH, "P", hd]], [`past_value_${i}`, [1, kvH, "P", hd]]);
    outputs.push([`present_key_${i}`, [1, kvH, "T", hd]], [`present_value_${i}`, [1, kvH, "T", hd]]);
    nodes.push(
      { op: "SimplifiedLayerNormalization", inputs: [x, `ln1_${i}`], outputs: [`n1_${i}`], attrs: { axis: -1, epsilon: c.rms_norm_eps } },
      ...matmul(`n1_${i}`, `self_attn.q_proj.weight_${i}`, `q_${i}`),
      ...matmul(`n1_${i}`, `self_attn.k_proj.weight_${i}`, `k_${i}`),
      ...matmul(`n1_${i}`, `self_attn.v_proj.weight_${i}`, `v_${i}`),
      {
        op: "GroupQueryAttention",
        domain: "com.microsoft",
        inputs: [`q_${i}`, `k_${i}`, `v_${i}`, `past_key_${i}`, `past_value_${i}`, "seqlens_k", "total_sequence_length", "cos_cache", "sin_cache"],
        outputs: [`a_${i}`, `present_key_${i}`, `present_value_${i}`],
        attrs: { num_heads: c.num_attention_heads, kv_num_heads: kvH, do_rotary: 1, rotary_interleaved: 0 },
      },
      ...matmul(`a_${i}`, `self_attn.o_proj.weight_${i}`, `o_${i}`),
      { op: "Add", inputs: [x, `o_${i}`], outputs: [`r_${i}`] },
      { op: "SimplifiedLayerNormalization", inputs: [`r_${i}`, `ln2_${i}`], outputs: [`n2_${i}`], attrs: { axis: -1, epsilon: c.rms_norm_eps } },
      ...matmul(`n2_${i}`, `mlp.gate_proj.weight_${i}`, `g_${i}`),
      { op: "Sigmoid", inputs: [`g_${i}`], outputs: [`gs_${i}`] },
      { op: "Mul", inputs: [`g_${i}`, `gs_${i}`], outputs: [`silu_${i}`] },
      ...matmul(`n2_${i}`, `mlp.up_proj.weight_${i}`, `u_${i}`),
      { op: "Mul", inputs: [`silu_${i}`, `u_${i}`], outputs: [`m_${i}`] },
      ...matmul(`m_${i}`, `mlp.down_proj.weight_${i}`, `f_${i}`),
      { op: "Add", inputs: [`r_${i}`, `f_${i}`], outputs: [y] },
    );
  }
  const top = `h${c.num_hidden_layers}`;
  nodes.push(
    { op: "Slice", inputs: [top, "last", "end", "axis1"], outputs: ["h_last"] },
    { op: "SimplifiedLayerNormalization", inputs: ["h_last", "final_norm"], outputs: ["h_norm"], attrs: { axis: -1, epsilon: c.rms_norm_eps } },
    ...matmul("h_norm", "lm_head", "logits"),
  );
  const session = await ort.InferenceSession.create(model({ inputs, outputs, nodes, initializers: init }), {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
  const empty = new ort.Tensor("float32", new Float32Array(0), [1, kvH, 0, hd]);
  const run = async (ids, past, pastLength) => {
    const total = pastLength + ids.length;
    const feeds = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]),
      seqlens_k: new ort.Tensor("int32", Int32Array.of(total - 1), [1]),
      total_sequence_length: new ort.Tensor("int32", Int32Array.of(total), []),
    };
    for (let i = 0; i < c.num_hidden_layers; i++) {
      feeds[`past_key_${i}`] = past?.[`present_key_${i}`] ?? empty;
      feeds[`past_value_${i}`] = past?.[`present_value_${i}`] ?? empty;
    }
    const out = await session.run(feeds);
    return { ...out, logits: out.logits.data, length: total };
  };
  return {
    prefill: (ids) => run(ids, null, 0),
    // one token after `past`, not kept: every step at the same context
    step: (id, past) => run(Int32Array.of(id), past, past.length),
  };
}
