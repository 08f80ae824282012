// The demo model, through the public API only: word and position embeddings (looked up here),
// a 2-layer transformer encoder, and a pointer head that is one attention row from "it" to every
// word. Platform neutral: pass the bytes of model.safetensors and the parsed vocab.json.
import { Linear, TransformerEncoder, loadSafetensors, scaledDotProductAttention, tensor } from "wasm-attention";

export function createPronounModel(weightBytes, config) {
  const dict = loadSafetensors(weightBytes);
  const D = config.dModel;
  const encoder = new TransformerEncoder({
    layer: { dModel: D, nhead: config.nhead, dimFeedforward: config.dimFeedforward },
    numLayers: config.numLayers,
  }).loadStateDict(dict, "encoder.");
  const pointerQ = new Linear({ inFeatures: D, outFeatures: D }).loadStateDict(dict, "pointer_q.");
  const pointerK = new Linear({ inFeatures: D, outFeatures: D }).loadStateDict(dict, "pointer_k.");
  const index = new Map(config.vocab.map((w, i) => [w, i]));

  /** words, referent, pointer probabilities [L], each layer's weights [nhead, L, L], and the time taken */
  function predict(sentence) {
    const words = sentence
      .toLowerCase()
      .replace(/[^a-z ]/g, " ")
      .split(/\s+/)
      .filter(Boolean);
    const unknown = words.filter((w) => !index.has(w));
    if (unknown.length) throw new Error(`unknown words: ${unknown.join(", ")} (the vocabulary is in vocab.json)`);
    const it = words.indexOf("it");
    if (it < 0) throw new Error('the sentence has no "it" to resolve');
    if (words.length > config.maxLength) throw new Error(`at most ${config.maxLength} words`);
    const L = words.length;
    const t0 = performance.now();
    const x = new Float32Array(L * D);
    words.forEach((w, i) => {
      for (let d = 0; d < D; d++) x[i * D + d] = dict["embed.weight"].data[index.get(w) * D + d] + dict["pos.weight"].data[i * D + d];
    });
    const { output: h, weights } = encoder.forward(tensor(x, [1, L, D]), { needWeights: true });
    const q = pointerQ.forward(tensor(h.data.slice(it * D, (it + 1) * D), [1, 1, D]));
    const k = pointerK.forward(h);
    const { weights: pointer } = scaledDotProductAttention(q, k, k, { returnWeights: true });
    const ms = performance.now() - t0;
    const probs = Array.from(pointer.data);
    const referent = words[probs.indexOf(Math.max(...probs))];
    return { words, it, referent, probs, weights: weights.map((w) => ({ data: w.data, shape: w.shape.slice(1) })), ms };
  }

  return { predict, config, dispose: () => [encoder, pointerQ, pointerK].forEach((m) => m.dispose()) };
}
