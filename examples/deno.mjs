// Deno: scaled dot-product attention from the built package.
//   npx deno run --allow-read examples/deno.mjs   (after npm run build)
import { init, runtimeInfo, scaledDotProductAttention, tensor } from "../dist/index.js";

await init();
const q = tensor(
  Float32Array.from({ length: 2 * 4 * 8 }, (_, i) => Math.sin(i)),
  [2, 4, 8],
);
const out = scaledDotProductAttention(q, q, q, { isCausal: true });
console.log(
  `Deno ${Deno.version.deno}: ${runtimeInfo().simd} SIMD, output ${JSON.stringify(out.shape)}, first row ${Array.from(out.data.subarray(0, 4), (x) => x.toFixed(4)).join(" ")}`,
);
