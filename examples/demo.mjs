// npm start: the seed's example, for real. A small transformer trained in PyTorch
// (scripts/train-demo.py) decides who "it" is; we show where "it" attends in every layer and head,
// and write the full attention maps as an SVG heatmap.
//   node examples/demo.mjs ["a sentence with it" ...] [--svg file.svg]
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { init } from "wasm-attention";
import { createPronounModel } from "./pronoun/model.mjs";
import { attentionSvg } from "./pronoun/svg.mjs";

const args = process.argv.slice(2);
const svgAt = args.indexOf("--svg");
const svgFile = svgAt >= 0 ? args.splice(svgAt, 2)[1] : "build/attention.svg";
const sentences = args.length ? args : ["The cat sat on the mat because it was comfortable", "The cat sat on the mat because it was tired"];

const t0 = performance.now();
await init();
const here = new URL("./pronoun/", import.meta.url);
const model = createPronounModel(readFileSync(new URL("model.safetensors", here)), JSON.parse(readFileSync(new URL("vocab.json", here), "utf8")));
console.log(`loaded the model in ${(performance.now() - t0).toFixed(1)} ms\n`);

const BARS = " ▁▂▃▄▅▆▇█";
const results = [];
for (const sentence of sentences) {
  const r = model.predict(sentence);
  results.push({ sentence, ...r });
  console.log(`"${sentence}"`);
  console.log(`  "it" refers to: ${r.referent.toUpperCase()}   (${(Math.max(...r.probs) * 100).toFixed(1)}% · ${r.ms.toFixed(2)} ms)\n`);
  console.log(`  where "it" attends        ${r.words.map((w) => w.slice(0, 3).padEnd(4)).join("")}`);
  r.weights.forEach((w, layer) => {
    const L = r.words.length;
    for (let h = 0; h < w.shape[0]; h++) {
      const row = Array.from(w.data.subarray((h * L + r.it) * L, (h * L + r.it + 1) * L));
      const top = row.indexOf(Math.max(...row));
      const bars = row.map((p) => BARS[Math.round(p * 8)].padEnd(4)).join("");
      console.log(`  layer ${layer + 1} head ${h + 1}  ${r.words[top].padStart(11)}  ${bars}`);
    }
  });
  const pointer = r.probs.map((p) => BARS[Math.round(p * 8)].padEnd(4)).join("");
  console.log(`  pointer (the answer)      ${pointer}\n`);
}
mkdirSync(dirname(svgFile), { recursive: true });
writeFileSync(svgFile, attentionSvg(results));
console.log(`wrote the attention heatmaps to ${svgFile}`);
model.dispose();
