// Node: multi-head self-attention over a batch, with the weights of every head.
//   node examples/node.mjs   (after npm run build)
import { MultiHeadAttention, init, tensor } from "wasm-attention";

await init();
const E = 16;
const mha = new MultiHeadAttention({ embedDim: E, numHeads: 4 });
// any torch-named state dict works; here a deterministic one
mha.loadStateDict(
  Object.fromEntries(
    mha.params().map((p) => [
      p.key,
      tensor(
        Float32Array.from({ length: p.shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i) * 0.2),
        p.shape,
      ),
    ]),
  ),
);
const x = tensor(
  Float32Array.from({ length: 2 * 5 * E }, (_, i) => Math.cos(i * 0.3)),
  [2, 5, E],
);
const { output, weights } = mha.forward(x, x, x, { isCausal: true, averageAttnWeights: false });
console.log(`output ${JSON.stringify(output.shape)}, weights ${JSON.stringify(weights.shape)}`);
console.log(`query 4 of batch 0, head 0 attends: ${Array.from(weights.data.subarray(20, 25), (p) => p.toFixed(3)).join(" ")}`);
mha.dispose();
