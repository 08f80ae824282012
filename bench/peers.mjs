// The peers, set up on the same inputs as ours: onnxruntime-web (wasm backend; a plain-ops graph
// and its fused com.microsoft MultiHeadAttention op) and @tensorflow/tfjs-backend-wasm.
import { createRequire } from "node:module";
import * as ort from "onnxruntime-web";
import { model } from "./onnx.mjs";

const require = createRequire(import.meta.url);

export async function setupOrt(threads) {
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = "error";
  return ort;
}

export async function setupTf(threads) {
  const tf = require("@tensorflow/tfjs-core");
  const wasm = require("@tensorflow/tfjs-backend-wasm");
  wasm.setThreadsCount?.(threads);
  await tf.setBackend("wasm");
  await tf.ready();
  return tf;
}

const ortTensor = (t, shape = t.shape) => new ort.Tensor("float32", t.data, shape);
const causalMask = (Lq, Lk) => Float32Array.from({ length: Lq * Lk }, (_, n) => (n % Lk > Math.floor(n / Lk) + Lk - Lq ? -Infinity : 0));

/** softmax(q k^T / sqrt(d) [+ causal mask]) v as MatMul/Softmax ops; q [1, H, Lq, d] */
export async function ortAttention({ H, Lq, Lk, d, causal }) {
  const nodes = [
    { op: "Transpose", inputs: ["k"], outputs: ["kt"], attrs: { perm: [0, 1, 3, 2] } },
    { op: "MatMul", inputs: ["q", "kt"], outputs: ["s"] },
    { op: "Mul", inputs: ["s", "scale"], outputs: ["s2"] },
    ...(causal ? [{ op: "Add", inputs: ["s2", "mask"], outputs: ["s3"] }] : []),
    { op: "Softmax", inputs: [causal ? "s3" : "s2"], outputs: ["p"], attrs: { axis: -1 } },
    { op: "MatMul", inputs: ["p", "v"], outputs: ["o"] },
  ];
  const initializers = [["scale", [], new Float32Array([1 / Math.sqrt(d)])]];
  if (causal) initializers.push(["mask", [Lq, Lk], causalMask(Lq, Lk)]);
  const session = await ort.InferenceSession.create(
    model({
      inputs: [
        ["q", [1, H, Lq, d]],
        ["k", [1, H, Lk, d]],
        ["v", [1, H, Lk, d]],
      ],
      outputs: [["o", [1, H, Lq, d]]],
      nodes,
      initializers,
    }),
    { executionProviders: ["wasm"] },
  );
  return async (q, k, v) => (await session.run({ q: ortTensor(q), k: ortTensor(k), v: ortTensor(v) })).o.data;
}

/** the fused contrib op; inputs [1, L, H*d] (the same bytes as [1, H, L, d] are not: it is a layout of its own) */
export async function ortFusedMha({ H, Lq, Lk, d, causal }) {
  const attrs = { num_heads: H, ...(causal ? { unidirectional: 1 } : {}) };
  const session = await ort.InferenceSession.create(
    model({
      inputs: [
        ["q", [1, Lq, H * d]],
        ["k", [1, Lk, H * d]],
        ["v", [1, Lk, H * d]],
      ],
      outputs: [["o", [1, Lq, H * d]]],
      nodes: [{ op: "MultiHeadAttention", domain: "com.microsoft", inputs: ["q", "k", "v"], outputs: ["o"], attrs }],
    }),
    { executionProviders: ["wasm"] },
  );
  return async (q, k, v) =>
    (await session.run({ q: ortTensor(q, [1, Lq, H * d]), k: ortTensor(k, [1, Lk, H * d]), v: ortTensor(v, [1, Lk, H * d]) })).o.data;
}

export function tfAttention(tf, { d, causal, Lq, Lk }) {
  const mask = causal ? tf.tensor(causalMask(Lq, Lk), [Lq, Lk]) : null;
  return (q, k, v) => {
    const out = tf.tidy(() => {
      let s = tf.mul(tf.matMul(tf.tensor(q.data, q.shape), tf.tensor(k.data, k.shape), false, true), 1 / Math.sqrt(d));
      if (mask) s = tf.add(s, mask);
      return tf.matMul(tf.softmax(s), tf.tensor(v.data, v.shape));
    });
    const data = out.dataSync();
    out.dispose();
    return data;
  };
}

/**
 * A BERT-style post-LN encoder layer (GELU) as plain ONNX ops, from a torch-named state dict
 * (the same weights our TransformerEncoderLayer loads). `weights: "q8"`: each Linear as the graph
 * onnxruntime's quantize_dynamic writes (per_channel): DynamicQuantizeLinear of the input (uint8,
 * per tensor), MatMulInteger with int8 weights (the same int8 values and per-output-channel scales
 * as our q8 Linear), Cast, the product of the scales, Mul, then the bias Add; onnxruntime-web
 * fuses it itself. `weights: "q4"`: each Linear as the graph transformers.js's "q4" models hold,
 * com.microsoft MatMulNBits (bits 4, block_size 32, no zero points: 8, its default) with the same
 * 4-bit values and scales as our q4 Linear (llama.cpp's q4_0 rule, see q4Weight), then the bias
 * Add. Attention's own products stay float, as in our layer.
 */
export async function ortEncoderLayer(dict, dims, options = {}) {
  return ortEncoderStack([dict], dims, options);
}

/**
 * A stack of such layers as one graph (BERT-base's encoder: 12 of them), layer i's names
 * prefixed "l{i}_", each layer's output the next one's input.
 */
export async function ortEncoderStack(dicts, { L, E, H, F }, options = {}) {
  const nodes = [];
  const init = [];
  dicts.forEach((dict, i) => {
    const g = layerGraph(dict, { E, H, F }, options);
    const name = (n) =>
      n === "x" ? (i ? `l${i - 1}_y` : "x") : n === "y" ? (i === dicts.length - 1 ? "y" : `l${i}_y`) : n.startsWith("shape_") ? n : `l${i}_${n}`;
    nodes.push(...g.nodes.map((n) => ({ ...n, inputs: n.inputs.map(name), outputs: n.outputs.map(name) })));
    init.push(...g.init.map(([n, ...rest]) => [name(n), ...rest]));
  });
  const int64 = (name, values) => [name, [values.length], values, "int64"];
  const session = await ort.InferenceSession.create(
    model({
      inputs: [["x", [1, L, E]]],
      outputs: [["y", [1, L, E]]],
      nodes,
      initializers: [...init, int64("shape_heads", [1, L, H, E / H]), int64("shape_merge", [1, L, E])],
    }),
    { executionProviders: ["wasm"], graphOptimizationLevel: "all" },
  );
  return async (x) => (await session.run({ x: ortTensor(x) })).y.data;
}

// one layer's nodes and initializers, input "x", output "y"
function layerGraph(dict, { E, H, F }, { weights = "f32" } = {}) {
  const d = E / H;
  const t = (w, rows, cols) => {
    // torch Linear weight (out, in) -> MatMul's (in, out)
    const out = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c];
    return out;
  };
  const inW = dict["self_attn.in_proj_weight"].data;
  const inB = dict["self_attn.in_proj_bias"].data;
  // name, torch weight (rows = out, cols = in)
  const mats = [
    ["wq", inW.subarray(0, E * E), E, E],
    ["wk", inW.subarray(E * E, 2 * E * E), E, E],
    ["wv", inW.subarray(2 * E * E), E, E],
    ["wo", dict["self_attn.out_proj.weight"].data, E, E],
    ["w1", dict["linear1.weight"].data, F, E],
    ["w2", dict["linear2.weight"].data, E, F],
  ];
  const init = [
    ...mats.flatMap(([name, w, rows, cols]) =>
      weights === "q8" ? q8Weight(name, w, rows, cols) : weights === "q4" ? q4Weight(name, w, rows, cols) : [[name, [cols, rows], t(w, rows, cols)]],
    ),
    ["bq", [E], inB.slice(0, E)],
    ["bk", [E], inB.slice(E, 2 * E)],
    ["bv", [E], inB.slice(2 * E)],
    ["bo", [E], dict["self_attn.out_proj.bias"].data],
    ["b1", [F], dict["linear1.bias"].data],
    ["b2", [E], dict["linear2.bias"].data],
    ["g1", [E], dict["norm1.weight"].data],
    ["n1", [E], dict["norm1.bias"].data],
    ["g2", [E], dict["norm2.weight"].data],
    ["n2", [E], dict["norm2.bias"].data],
    ["scale", [], new Float32Array([1 / Math.sqrt(d)])],
    ["half", [], new Float32Array([0.5])],
    ["one", [], new Float32Array([1])],
    ["rsqrt2", [], new Float32Array([Math.SQRT1_2])],
  ];
  const q8 = q8MatMul(); // x feeds q, k and v: quantized once
  const linear = (x, w, b, out) =>
    weights === "q8"
      ? [...q8(x, w, `${out}_m`), { op: "Add", inputs: [`${out}_m`, b], outputs: [out] }]
      : weights === "q4"
        ? [
            {
              op: "MatMulNBits",
              domain: "com.microsoft",
              inputs: [x, w, `${w}_scales`],
              outputs: [`${out}_m`],
              attrs: { K: mats.find((m) => m[0] === w)[3], N: mats.find((m) => m[0] === w)[2], bits: 4, block_size: 32 },
            },
            { op: "Add", inputs: [`${out}_m`, b], outputs: [out] },
          ]
        : [
            { op: "MatMul", inputs: [x, w], outputs: [`${out}_m`] },
            { op: "Add", inputs: [`${out}_m`, b], outputs: [out] },
          ];
  const split = (x, out, perm) => [
    { op: "Reshape", inputs: [x, "shape_heads"], outputs: [`${out}_r`] },
    { op: "Transpose", inputs: [`${out}_r`], outputs: [out], attrs: { perm } },
  ];
  const nodes = [
    ...linear("x", "wq", "bq", "q"),
    ...linear("x", "wk", "bk", "k"),
    ...linear("x", "wv", "bv", "v"),
    ...split("q", "qh", [0, 2, 1, 3]),
    ...split("k", "kt", [0, 2, 3, 1]),
    ...split("v", "vh", [0, 2, 1, 3]),
    { op: "MatMul", inputs: ["qh", "kt"], outputs: ["s"] },
    { op: "Mul", inputs: ["s", "scale"], outputs: ["s2"] },
    { op: "Softmax", inputs: ["s2"], outputs: ["p"], attrs: { axis: -1 } },
    { op: "MatMul", inputs: ["p", "vh"], outputs: ["a"] },
    { op: "Transpose", inputs: ["a"], outputs: ["at"], attrs: { perm: [0, 2, 1, 3] } },
    { op: "Reshape", inputs: ["at", "shape_merge"], outputs: ["am"] },
    ...linear("am", "wo", "bo", "o"),
    { op: "Add", inputs: ["o", "x"], outputs: ["r1"] },
    { op: "LayerNormalization", inputs: ["r1", "g1", "n1"], outputs: ["h1"], attrs: { axis: -1, epsilon: 1e-5 } },
    ...linear("h1", "w1", "b1", "f1"),
    { op: "Mul", inputs: ["f1", "rsqrt2"], outputs: ["g_a"] },
    { op: "Erf", inputs: ["g_a"], outputs: ["g_b"] },
    { op: "Add", inputs: ["g_b", "one"], outputs: ["g_c"] },
    { op: "Mul", inputs: ["f1", "g_c"], outputs: ["g_d"] },
    { op: "Mul", inputs: ["g_d", "half"], outputs: ["g"] },
    ...linear("g", "w2", "b2", "f2"),
    { op: "Add", inputs: ["f2", "h1"], outputs: ["r2"] },
    { op: "LayerNormalization", inputs: ["r2", "g2", "n2"], outputs: ["y"], attrs: { axis: -1, epsilon: 1e-5 } },
  ];
  return { nodes, init };
}

/**
 * A builder of the nodes onnxruntime's quantize_dynamic writes for x . w (w from q8Weight):
 * DynamicQuantizeLinear of x (once per input, however many products read it), MatMulInteger,
 * Cast, and the product of the two scales; (x, w, out) -> nodes.
 */
export function q8MatMul() {
  const quantized = new Set();
  return (x, w, out) => {
    const nodes = quantized.has(x) ? [] : [{ op: "DynamicQuantizeLinear", inputs: [x], outputs: [`${x}_q`, `${x}_s`, `${x}_z`] }];
    quantized.add(x);
    return [
      ...nodes,
      { op: "MatMulInteger", inputs: [`${x}_q`, w, `${x}_z`, `${w}_zp`], outputs: [`${out}_i`] },
      { op: "Mul", inputs: [`${x}_s`, `${w}_scale`], outputs: [`${out}_s`] },
      { op: "Cast", inputs: [`${out}_i`], outputs: [`${out}_c`], attrs: { to: 1 } },
      { op: "Mul", inputs: [`${out}_c`, `${out}_s`], outputs: [out] },
    ];
  };
}

// a torch Linear weight w (rows = out, cols = in) as quantize_dynamic's per-channel initializers:
// int8 (in, out), one scale and a zero point of 0 per output channel. The int8 values follow our
// rule (quantize_rows_i8: scale = max|w_row| / 127, q = nearest(w * fl(127 / max))), so both
// contenders multiply the same integers.
export function q8Weight(name, w, rows, cols) {
  const q = new Int8Array(rows * cols);
  const scales = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let max = 0;
    for (let c = 0; c < cols; c++) max = Math.max(max, Math.abs(w[r * cols + c]));
    scales[r] = Math.fround(max / 127);
    const inv = max > 0 ? Math.fround(127 / max) : 0;
    for (let c = 0; c < cols; c++) {
      const x = Math.fround(w[r * cols + c] * inv);
      const n = Math.round(x);
      q[c * rows + r] = Math.abs(x % 1) === 0.5 && n % 2 ? n - 1 : n; // ties to even
    }
  }
  return [
    [name, [cols, rows], q, "int8"],
    [`${name}_scale`, [rows], scales],
    [`${name}_zp`, [rows], new Int8Array(rows), "int8"],
  ];
}

// x (a float32) rounded to the nearest half, ties to even, as a number (+-Infinity from 65520 up)
function toHalf(x) {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= 65520) return Math.sign(x) * Infinity;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(-14, e) - 10);
  const r = a / ulp;
  let n = Math.round(r);
  if (Math.abs(r % 1) === 0.5 && n % 2) n--; // ties to even
  return Math.sign(x) * n * ulp;
}

// a torch Linear weight w (rows = N out, cols = K in; K a multiple of 32) as MatMulNBits's
// initializers: B uint8 [N, K / 32, 16] and scales float [N * K / 32]. The values follow our q4
// rule (llama.cpp's quantize_row_q4_0_ref: d = max / -8 with max the block's value of largest
// magnitude, nibble = min(15, trunc(w / d + 8.5)), d kept as a half), so both contenders multiply
// the same weights; only the nibble order differs: MatMulNBits holds k = 2j and 2j + 1 in byte j
// (low, high), q4_0 k = j and j + 16.
function q4Weight(name, w, rows, cols) {
  const f = Math.fround;
  const NB = cols / 32;
  const B = new Uint8Array(rows * NB * 16);
  const scales = new Float32Array(rows * NB);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < NB; b++) {
      let [amax, max] = [0, 0];
      for (let k = 32 * b; k < 32 * b + 32; k++) if (amax < Math.abs(w[r * cols + k])) [amax, max] = [Math.abs(w[r * cols + k]), w[r * cols + k]];
      const d = f(max / -8);
      const id = d !== 0 ? f(1 / d) : 0;
      scales[r * NB + b] = toHalf(d);
      for (let j = 0; j < 32; j++) {
        const nibble = Math.min(15, Math.trunc(f(f(w[r * cols + 32 * b + j] * id) + 8.5)));
        B[(r * NB + b) * 16 + (j >> 1)] |= nibble << (4 * (j & 1));
      }
    }
  }
  return [
    [name, [rows, NB, 16], B, "uint8"],
    [`${name}_scales`, [rows * NB], scales],
  ];
}
