// The q8 cases of `npm run bench` (issue #14): a BERT-base encoder layer with int8 weights, ours
// (baseline and relaxed builds) against onnxruntime-web's quantize_dynamic graph of the same int8
// weights. bench/run.mjs times them; `node --experimental-wasm-relaxed-simd bench/q8.mjs --check
// [--lengths=8]` only builds the contenders, runs each once and prints how far each is from our
// float32 layer (no timing: safe while others use the machine).
import { ortEncoderLayer } from "./peers.mjs";
import { randomTensor } from "./harness.mjs";

const [E, H, F] = [768, 12, 3072];
const OPTIONS = { dModel: E, nhead: H, dimFeedforward: F, activation: "gelu" };

// the weights of bench/run.mjs's float32 layer: uniform in +-0.05, LayerNorm weight 1 and bias 0
export function bertDict(layer) {
  return Object.fromEntries(
    layer.params().map((p, i) => {
      const t = randomTensor(p.shape, 10 + i);
      const norm = p.key.startsWith("norm");
      for (let j = 0; j < t.data.length; j++) t.data[j] = norm ? (p.key.endsWith("weight") ? 1 : 0) : t.data[j] * 0.05;
      return [p.key, t];
    }),
  );
}

export function relRms(got, want) {
  let d = 0;
  let w = 0;
  for (let i = 0; i < want.length; i++) {
    d += (got[i] - want[i]) ** 2;
    w += want[i] ** 2;
  }
  return Math.sqrt(d / w);
}

/**
 * One q8 case at sequence length L: { name, flops (2 per multiply-add, integer or not), contenders
 * (ours first), agree (a peer's output against ours: an error message or null), reference (our
 * float32 layer's output), dispose }. The peers quantize activations their own way (uint8 per
 * tensor) where we quantize per row (int8), so they agree with us to within a few percent, not 1e-3.
 */
export async function q8Case({ lib, rlib, relaxed, L }) {
  const layer = new lib.TransformerEncoderLayer(OPTIONS);
  const dict = bertDict(layer);
  const f32 = layer.loadStateDict(dict).forward(randomTensor([1, L, E], 5)).data;
  layer.loadStateDict(dict, "", { weights: "q8" });
  const rlayer = relaxed ? new rlib.TransformerEncoderLayer(OPTIONS).loadStateDict(dict, "", { weights: "q8" }) : null;
  const x = randomTensor([1, L, E], 5);
  const ort = await ortEncoderLayer(dict, { L, E, H, F }, { weights: "q8" });
  return {
    name: `BERT-base encoder layer q8 L=${L}`,
    flops: 2 * L * (4 * E * E + 2 * E * F) + 4 * L * L * E,
    contenders: [
      { name: "wasm-attention q8", fn: () => layer.forward(x).data },
      ...(rlayer ? [{ name: "wasm-attention q8 (relaxed)", fn: () => rlayer.forward(x).data }] : []),
      { name: "onnxruntime-web q8 (quantize_dynamic graph)", fn: () => ort(x) },
    ],
    agree: (ours, theirs) => {
      const e = relRms(theirs, ours);
      return e < 0.05 ? null : `differs from wasm-attention q8 by ${(100 * e).toFixed(2)}% relative RMS`;
    },
    reference: f32,
    dispose() {
      layer.dispose();
      rlayer?.dispose();
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}` && process.argv.includes("--check")) {
  const lengths = (process.argv.find((a) => a.startsWith("--lengths="))?.slice(10) ?? "8").split(",").map(Number);
  const lib = await import("../dist/index.js");
  const rlib = await import("../dist/index.js?relaxed");
  await lib.init({ simd: "baseline" });
  const relaxed = lib.relaxedSimdSupported();
  if (relaxed) await rlib.init({ simd: "relaxed" });
  const { setupOrt } = await import("./peers.mjs");
  await setupOrt(1);
  for (const L of lengths) {
    const c = await q8Case({ lib, rlib, relaxed, L });
    const ours = await c.contenders[0].fn();
    for (const k of c.contenders) {
      const out = await k.fn();
      console.log(
        `L=${L} ${k.name}: ${(100 * relRms(out, c.reference)).toFixed(3)}% relative RMS from our f32 layer; against ours: ${c.agree(ours, out) ?? "agrees"}`,
      );
    }
    c.dispose();
  }
}
