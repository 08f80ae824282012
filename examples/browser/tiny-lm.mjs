// The playground's tiny LM panel: the Llama of examples/tiny-lm (trained by
// scripts/train-tiny-lm.py on this project's attention explainer, one character a token) continues
// a prompt greedily, one character at a time, with the page repainted between characters; for each
// character written, the heads of the chosen layer show where the newest token looked to write it
// (CausalLM.forward(ids, { cache, lastOnly: true, attention: true })), as shaded text and as a
// heatmap that grows a row per character.
import { CausalLM, loadSafetensors } from "wasm-attention";
import { encode } from "../tiny-lm/chars.mjs";

const $ = (id) => document.getElementById(id);
const CELL = { w: 6, h: 4 }; // heatmap pixels per key and per step

/** Loads the model from ./tiny-lm/ and wires the panel; the panel says why if the files are missing. */
export async function startTinyLM() {
  const panel = $("lm");
  const status = $("lm-status");
  let model, vocab;
  try {
    const get = async (name) => {
      const r = await fetch(`./tiny-lm/${name}`);
      if (!r.ok) throw new Error(`./tiny-lm/${name}: ${r.status} (train it with scripts/train-tiny-lm.py, then rebuild the playground)`);
      return r;
    };
    const [config, weights, v] = await Promise.all([
      get("config.json").then((r) => r.json()),
      get("model.safetensors").then((r) => r.arrayBuffer()),
      get("vocab.json").then((r) => r.json()),
    ]);
    vocab = v;
    model = CausalLM.fromConfig(config).loadStateDict(loadSafetensors(new Uint8Array(weights)));
  } catch (e) {
    status.innerHTML = `<span class="error">${escapeHtml(e.message)}</span>`;
    panel.dataset.ready = "false";
    return;
  }
  const [layers, heads] = [model.layers.length, model.config.numHeads];
  $("lm-layer").innerHTML = Array.from(
    { length: layers },
    (_, l) => `<option value="${l}"${l === layers - 1 ? " selected" : ""}>layer ${l + 1}</option>`,
  ).join("");
  status.textContent = `${layers} layers · ${heads} heads (${model.config.numKvHeads} key/value heads) · hidden ${model.config.hiddenSize} · ${vocab.length} characters`;

  let run = null; // the generation going on: { stop }
  let view = null; // what the heatmaps show: { chars, steps: [{ q, next, attention }] }, redrawn when the layer changes
  $("lm-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (run) {
      run.stop = true;
      return;
    }
    run = { stop: false };
    $("lm-generate").textContent = "Stop";
    try {
      view = await generate(model, vocab, $("lm-prompt").value, Number($("lm-tokens").value) || 80, heads, run);
    } finally {
      run = null;
      $("lm-generate").textContent = "Generate";
    }
  });
  $("lm-layer").addEventListener("change", () => view && redraw(view, heads));
  panel.dataset.ready = "true";
}

// greedy generation, a character per frame; returns what the heatmaps show
async function generate(model, vocab, prompt, n, heads, run) {
  const out = $("lm-output");
  const written = $("lm-written");
  const updates = $("lm-heads");
  let ids;
  try {
    ids = encode(vocab, prompt);
    if (!ids.length) throw new Error("type a prompt first");
  } catch (e) {
    $("lm-status").innerHTML = `<span class="error">${escapeHtml(e.message)}</span>`;
    return null;
  }
  const view = { chars: [...prompt], steps: [] };
  $("lm-prompt-text").textContent = prompt;
  written.textContent = "";
  updates.dataset.updates = "0";
  setupHeatmaps(heads, ids.length + n, n);
  out.dataset.done = "false";
  const cache = model.createCache();
  const started = performance.now();
  let compute = 0;
  try {
    let input = ids;
    for (let step = 0; step < n && !run.stop; step++) {
      const t0 = performance.now();
      // the newest token's logits and its attention, per layer and head, over every character so far
      const { logits, attention } = model.forward(input, { cache, lastOnly: true, attention: true });
      compute += performance.now() - t0;
      const next = argmax(logits.data);
      const s = { q: view.chars.length - 1, next: vocab[next], attention };
      view.steps.push(s);
      view.chars.push(s.next);
      written.textContent += s.next;
      drawStep(view, s, view.steps.length - 1, heads);
      updates.dataset.updates = String(view.steps.length);
      input = Int32Array.of(next);
      // let the page paint this character before computing the next
      await frame();
    }
  } finally {
    cache.dispose();
  }
  const ms = performance.now() - started;
  $("lm-speed").textContent =
    `${view.steps.length} characters in ${(ms / 1000).toFixed(2)} s, shown a frame each; the model's own time ${compute.toFixed(1)} ms (${(compute / Math.max(1, view.steps.length)).toFixed(2)} ms a character)`;
  out.dataset.done = "true";
  return view;
}

// one heatmap per head: the newest character's attention as shaded text, and every step's as a row of pixels
function setupHeatmaps(heads, keys, steps) {
  $("lm-heads").innerHTML = Array.from(
    { length: heads },
    (_, h) =>
      `<div class="lm-head"><b>head ${h + 1}</b><div class="lm-strip" id="lm-strip-${h}"></div><canvas id="lm-map-${h}" width="${keys * CELL.w}" height="${steps * CELL.h}"></canvas></div>`,
  ).join("");
}

function drawStep(view, s, row, heads) {
  const layer = Number($("lm-layer").value);
  const cols = s.attention.shape[2];
  $("lm-query").innerHTML =
    `to write <code>${label(s.next)}</code>, the newest character <code>${label(view.chars[s.q])}</code> (position ${s.q}) read, in layer ${layer + 1}:`;
  for (let h = 0; h < heads; h++) {
    const p = s.attention.data.subarray((layer * heads + h) * cols, (layer * heads + h + 1) * cols);
    const top = Math.max(...p);
    const spans = Array.from(
      p,
      (w, t) =>
        `<span style="background:rgba(40,60,230,${(w / top).toFixed(3)});color:${w / top > 0.55 ? "#fff" : "#222"}" title="${(100 * w).toFixed(1)}%"${t === s.q ? ' class="q"' : ""}>${show(view.chars[t])}</span>`,
    );
    $(`lm-strip-${h}`).innerHTML = `${spans.join("")}<span class="next">${show(s.next)}</span>`;
    const g = $(`lm-map-${h}`).getContext("2d");
    for (let t = 0; t < cols; t++) {
      const a = p[t] / top;
      g.fillStyle = `rgb(${Math.round(255 - 215 * a)},${Math.round(255 - 195 * a)},${Math.round(255 - 25 * a)})`;
      g.fillRect(t * CELL.w, row * CELL.h, CELL.w, CELL.h);
    }
  }
}

function redraw(view, heads) {
  for (let h = 0; h < heads; h++) {
    const c = $(`lm-map-${h}`);
    c.getContext("2d").clearRect(0, 0, c.width, c.height);
  }
  view.steps.forEach((s, row) => drawStep(view, s, row, heads));
}

// a painted frame (requestAnimationFrame), or 100 ms where frames do not come (a hidden tab)
const frame = () =>
  new Promise((ok) => {
    requestAnimationFrame(() => ok());
    setTimeout(ok, 100);
  });

const label = (c) => (c === " " ? "\u2423" : show(c));
const show = (c) => (c === " " ? "\u00a0" : c === "\n" ? "\u21b5" : escapeHtml(c));
const escapeHtml = (s) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

function argmax(xs) {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}
