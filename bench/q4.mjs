// The q4 cases of `npm run bench` (issue #14): a BERT-base encoder layer with 4-bit weights
// (llama.cpp's q4_0: blocks of 32 along K, a half scale each), ours (baseline and relaxed builds)
// against onnxruntime-web running the same layer with com.microsoft MatMulNBits (bits 4,
// block_size 32, zero point 8), the op transformers.js's "q4" models use, holding the same 4-bit
// values and scales. bench/run.mjs times them; `node --experimental-wasm-relaxed-simd bench/q4.mjs
// --check [--lengths=8]` only builds the contenders, runs each once and prints how far each is from
// our float32 layer and from each other (no timing: safe while others use the machine).
import { ortEncoderLayer } from "./peers.mjs";
import { bertDict, relRms } from "./q8.mjs";
import { randomTensor } from "./harness.mjs";

const [E, H, F] = [768, 12, 3072];
const OPTIONS = { dModel: E, nhead: H, dimFeedforward: F, activation: "gelu" };

/**
 * One q4 case at sequence length L: { name, flops (2 per multiply-add), contenders (ours first),
 * agree (a peer's output against ours: an error message or null), reference (our float32 layer's
 * output), dispose }. Both sides hold the same 4-bit weights and scales; we quantize activations
 * to int8 per row (an exact integer sum per block), onnxruntime-web's MatMulNBits at its default
 * accuracy_level keeps them float32, so they agree to within a few tenths of a percent, not 1e-6.
 */
export async function q4Case({ lib, rlib, relaxed, L }) {
  const layer = new lib.TransformerEncoderLayer(OPTIONS);
  const dict = bertDict(layer);
  const f32 = layer.loadStateDict(dict).forward(randomTensor([1, L, E], 5)).data;
  layer.loadStateDict(dict, "", { weights: "q4" });
  const rlayer = relaxed ? new rlib.TransformerEncoderLayer(OPTIONS).loadStateDict(dict, "", { weights: "q4" }) : null;
  const x = randomTensor([1, L, E], 5);
  const ort = await ortEncoderLayer(dict, { L, E, H, F }, { weights: "q4" });
  return {
    name: `BERT-base encoder layer q4 L=${L}`,
    flops: 2 * L * (4 * E * E + 2 * E * F) + 4 * L * L * E,
    contenders: [
      { name: "wasm-attention q4", fn: () => layer.forward(x).data },
      ...(rlayer ? [{ name: "wasm-attention q4 (relaxed)", fn: () => rlayer.forward(x).data }] : []),
      { name: "onnxruntime-web q4 (MatMulNBits graph)", fn: () => ort(x) },
    ],
    agree: (ours, theirs) => {
      const e = relRms(theirs, ours);
      return e < 0.02 ? null : `differs from wasm-attention q4 by ${(100 * e).toFixed(3)}% relative RMS`;
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
    const c = await q4Case({ lib, rlib, relaxed, L });
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
