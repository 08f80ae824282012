// GET /?words=4 -> causal self-attention over that many positions, as JSON.
// The "workerd" entry of wasm-attention imports the .wasm as a module, so init() needs no argument.
import { init, scaledDotProductAttention, tensor } from "wasm-attention";

export default {
  async fetch(request) {
    await init();
    const L = Math.min(64, Number(new URL(request.url).searchParams.get("words") ?? 4));
    const x = tensor(Float32Array.from({ length: L * 8 }, (_, i) => Math.sin(i * 0.37)), [1, L, 8]);
    const { output, weights } = scaledDotProductAttention(x, x, x, { isCausal: true, returnWeights: true });
    return Response.json({ shape: output.shape, lastRowWeights: Array.from(weights.data.subarray((L - 1) * L)) });
  },
};
