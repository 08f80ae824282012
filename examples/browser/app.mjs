// The playground: loads the demo model, runs it on the typed sentence, draws its attention; and
// the tiny LM panel (tiny-lm.mjs), which writes a character at a time with its heads' attention.
import { init, runtimeInfo } from "wasm-attention";
import { createPronounModel } from "../pronoun/model.mjs";
import { attentionSvg } from "../pronoun/svg.mjs";
import { startTinyLM } from "./tiny-lm.mjs";

const $ = (id) => document.getElementById(id);
const threads = crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
await init({ threads });
// the tiny LM panel loads its model alongside (examples/browser/tiny-lm.mjs)
const lm = startTinyLM();
const [weights, config] = await Promise.all([fetch("./model.safetensors").then((r) => r.arrayBuffer()), fetch("./vocab.json").then((r) => r.json())]);
const model = createPronounModel(new Uint8Array(weights), config);
const info = runtimeInfo();

function run() {
  const sentence = $("sentence").value;
  let r;
  try {
    r = model.predict(sentence);
  } catch (e) {
    $("answer").innerHTML = `<span class="error">${e.message}</span>`;
    return;
  }
  $("answer").textContent = `"it" refers to: ${r.referent}`;
  $("status").textContent = `${r.ms.toFixed(2)} ms · ${info.simd} SIMD · ${info.threads} thread${info.threads > 1 ? "s" : ""}`;
  $("heatmaps").innerHTML = attentionSvg([{ sentence, ...r }]);
  const L = r.words.length;
  const show = (i) => {
    $("rows").innerHTML = r.weights
      .flatMap((w, layer) =>
        Array.from({ length: w.shape[0] }, (_, h) => {
          const row = Array.from(w.data.subarray((h * L + i) * L, (h * L + i + 1) * L));
          const bars = row
            .map((p, j) => `<div title="${(p * 100).toFixed(1)}%">${r.words[j]} <div class="bar" style="width:${(p * 100).toFixed(1)}%"></div></div>`)
            .join("");
          return `<div><b>layer ${layer + 1}, head ${h + 1}</b>${bars}</div>`;
        }),
      )
      .join("");
  };
  $("words").innerHTML = r.words.map((w, i) => `<span data-i="${i}" class="${i === r.it ? "it" : ""}">${w}</span>`).join("");
  for (const span of $("words").children) span.addEventListener("mouseenter", () => show(Number(span.dataset.i)));
  show(r.it);
}

$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  run();
});
run();
await lm;
document.body.dataset.ready = "true";
