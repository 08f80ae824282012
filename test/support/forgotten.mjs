// node --expose-gc: modules, caches and resident tensors dropped without dispose() are freed by
// the FinalizationRegistry once collected. Prints JSON: live bytes before, with, and after.
import * as lib from "../../dist/index.js";

await lib.init();
const base = lib.memoryStats().liveBytes;
function make() {
  const enc = new lib.TransformerEncoder({ layer: { dModel: 16, nhead: 2, dimFeedforward: 32 }, numLayers: 2 });
  enc.loadStateDict(
    Object.fromEntries(enc.params().map((p) => [p.key, lib.tensor(new Float32Array(p.shape.reduce((a, b) => a * b, 1)).fill(0.1), p.shape)])),
  );
  const cache = new lib.KVCache();
  enc.forward(lib.tensor(new Float32Array(3 * 16).fill(0.2), [1, 3, 16]), { isCausal: true, cache });
  lib.residentTensor([100, 100]);
  return lib.memoryStats().liveBytes;
}
const held = make();
for (let i = 0; i < 10 && lib.memoryStats().liveBytes > base; i++) {
  globalThis.gc();
  await new Promise((ok) => setTimeout(ok, 20));
}
console.log(JSON.stringify({ base, held, after: lib.memoryStats().liveBytes }));
