// The quantized cases of `npm run bench` (issue #14): a BERT-base encoder layer with int8 ("q8") or
// 4-bit ("q4": llama.cpp's q4_0, blocks of 32 along K with a half scale each) weights, ours
// (baseline and relaxed builds) against onnxruntime-web running the same layer with the same
// quantized weights: the quantize_dynamic graph for q8, com.microsoft MatMulNBits (bits 4,
// block_size 32, zero point 8: transformers.js's "q4" models) for q4. bench/run.mjs times them;
// `node --experimental-wasm-relaxed-simd bench/quantized.mjs --check [--weights=q4] [--lengths=8]`
// only builds the contenders, runs each once and prints how far each is from our float32 layer
// and from ours (no timing: safe while others use the machine).
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

// Per format: onnxruntime-web's graph, and how far from ours it may be. q8: the peer quantizes
// activations per tensor (uint8) where we quantize per row (int8): a few percent. q4: both hold the
// same 4-bit values and scales; we quantize activations to int8 per row (an exact integer sum per
// block), MatMulNBits at its default accuracy_level keeps them float32: a few tenths of a percent.
const PEERS = {
  q8: { name: "onnxruntime-web q8 (quantize_dynamic graph)", tolerance: 0.05 },
  q4: { name: "onnxruntime-web q4 (MatMulNBits graph)", tolerance: 0.02 },
};

/**
 * One case at sequence length L with `weights` "q8" or "q4": { name, flops (2 per multiply-add,
 * integer or not), contenders (ours first), agree (a peer's output against ours: an error message
 * or null), reference (our float32 layer's output), dispose }.
 */
export async function quantizedCase(weights, { lib, rlib, relaxed, L }) {
  const peer = PEERS[weights];
  const layer = new lib.TransformerEncoderLayer(OPTIONS);
  const dict = bertDict(layer);
  const f32 = layer.loadStateDict(dict).forward(randomTensor([1, L, E], 5)).data;
  layer.loadStateDict(dict, "", { weights });
  const rlayer = relaxed ? new rlib.TransformerEncoderLayer(OPTIONS).loadStateDict(dict, "", { weights }) : null;
  const x = randomTensor([1, L, E], 5);
  const ort = await ortEncoderLayer(dict, { L, E, H, F }, { weights });
  return {
    name: `BERT-base encoder layer ${weights} L=${L}`,
    flops: 2 * L * (4 * E * E + 2 * E * F) + 4 * L * L * E,
    contenders: [
      { name: `wasm-attention ${weights}`, fn: () => layer.forward(x).data },
      ...(rlayer ? [{ name: `wasm-attention ${weights} (relaxed)`, fn: () => rlayer.forward(x).data }] : []),
      { name: peer.name, fn: () => ort(x) },
    ],
    agree: (ours, theirs) => {
      const e = relRms(theirs, ours);
      return e < peer.tolerance ? null : `differs from wasm-attention ${weights} by ${(100 * e).toFixed(3)}% relative RMS`;
    },
    reference: f32,
    dispose() {
      layer.dispose();
      rlayer?.dispose();
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}` && process.argv.includes("--check")) {
  const weights = process.argv.find((a) => a.startsWith("--weights="))?.slice(10) ?? "q8";
  const lengths = (process.argv.find((a) => a.startsWith("--lengths="))?.slice(10) ?? "8").split(",").map(Number);
  const lib = await import("../dist/index.js");
  const rlib = await import("../dist/index.js?relaxed");
  await lib.init({ simd: "baseline" });
  const relaxed = lib.relaxedSimdSupported();
  if (relaxed) await rlib.init({ simd: "relaxed" });
  const { setupOrt } = await import("./peers.mjs");
  await setupOrt(1);
  for (const L of lengths) {
    const c = await quantizedCase(weights, { lib, rlib, relaxed, L });
    const ours = await c.contenders[0].fn();
    for (const k of c.contenders) {
      const out = await k.fn();
      console.log(
        `L=${L} ${k.name}: ${(100 * relRms(out, c.reference)).toFixed(3)}% relative RMS from our f32 layer; against ours: ${c.agree(ours, out) ?? `agrees (${(100 * relRms(out, ours)).toFixed(5)}%)`}`,
      );
    }
    c.dispose();
  }
}
