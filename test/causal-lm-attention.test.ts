// CausalLM.forward(ids, { attention: true }): where each sequence's last position attends, per
// layer and head, against a float64 re-implementation of the Llama forward (Hugging Face's
// LlamaForCausalLM: RMSNorm, q/k/v projections with Qwen2's biases, RoPE from the fixture's
// inv_freq and attention factor, grouped-query causal attention with Mistral's sliding window,
// SiLU MLP) on the tiny checkpoints of scripts/fixtures_decoders.py.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ArgumentError, CausalLM, type DecoderCache, type Tensor, init, loadSafetensors } from "../src/index.js";

interface Model {
  weights: string;
  config: string;
  sliding_window_per_layer: (number | null)[];
  rope: { inv_freq: number[]; attention_scaling: number };
}

const dir = new URL("./fixtures/decoders/", import.meta.url);
const read = (name: string) => readFileSync(new URL(name, dir));
const { models } = JSON.parse(read("cases.json").toString("utf8")) as { models: Record<string, Model> };

/** The float64 reference of one model: the attention of the last position of `ids` per layer and head, and its logits. */
class Reference {
  readonly H: number;
  readonly nh: number;
  readonly nkv: number;
  readonly hd: number;
  readonly layers: number;
  readonly vocab: number;
  readonly #w: Record<string, Tensor>;
  readonly #cfg: Record<string, unknown>;
  readonly #m: Model;

  constructor(m: Model) {
    this.#m = m;
    this.#cfg = JSON.parse(read(m.config).toString("utf8")) as Record<string, unknown>;
    this.#w = loadSafetensors(read(m.weights)) as Record<string, Tensor>;
    this.H = this.#cfg.hidden_size as number;
    this.nh = this.#cfg.num_attention_heads as number;
    this.nkv = this.#cfg.num_key_value_heads as number;
    this.hd = (this.#cfg.head_dim as number | undefined) ?? this.H / this.nh;
    this.layers = this.#cfg.num_hidden_layers as number;
    this.vocab = this.#cfg.vocab_size as number;
  }

  // x [n, in] @ W[out, in]^T + bias
  #linear(x: Float64Array[], name: string): Float64Array[] {
    const w = this.#w[`${name}.weight`];
    const bias = this.#w[`${name}.bias`];
    const [out, inn] = w.shape;
    return x.map((row) => {
      const y = new Float64Array(out);
      for (let o = 0; o < out; o++) {
        let s = bias ? bias.data[o] : 0;
        for (let i = 0; i < inn; i++) s += row[i] * w.data[o * inn + i];
        y[o] = s;
      }
      return y;
    });
  }

  #rmsnorm(x: Float64Array[], name: string): Float64Array[] {
    const w = this.#w[`${name}.weight`].data;
    const eps = (this.#cfg.rms_norm_eps as number | undefined) ?? 1e-6;
    return x.map((row) => {
      const r = 1 / Math.sqrt(row.reduce((s, v) => s + v * v, 0) / row.length + eps);
      return row.map((v, i) => v * r * w[i]);
    });
  }

  // rotate_half RoPE of each head of each row, in place; row i at position i
  #rope(x: Float64Array[], heads: number): void {
    const { inv_freq, attention_scaling: f } = this.#m.rope;
    const half = this.hd / 2;
    x.forEach((row, pos) => {
      for (let h = 0; h < heads; h++) {
        for (let i = 0; i < half; i++) {
          const a = pos * inv_freq[i];
          const [c, s] = [Math.cos(a) * f, Math.sin(a) * f];
          const [x1, x2] = [row[h * this.hd + i], row[h * this.hd + half + i]];
          row[h * this.hd + i] = x1 * c - x2 * s;
          row[h * this.hd + half + i] = x2 * c + x1 * s;
        }
      }
    });
  }

  /** attention [layers, nh, n] of the last of `ids` (all real tokens, positions 0..n - 1), and its logits [vocab] */
  run(ids: readonly number[]): { attention: Float64Array; logits: Float64Array } {
    const n = ids.length;
    const { H, nh, nkv, hd } = this;
    const embed = this.#w["model.embed_tokens.weight"].data;
    let h = ids.map((id) => Float64Array.from(embed.subarray(id * H, (id + 1) * H)));
    const attention = new Float64Array(this.layers * nh * n);
    for (let l = 0; l < this.layers; l++) {
      const pre = `model.layers.${l}.`;
      const window = this.#m.sliding_window_per_layer[l];
      const x = this.#rmsnorm(h, `${pre}input_layernorm`);
      const q = this.#linear(x, `${pre}self_attn.q_proj`);
      const k = this.#linear(x, `${pre}self_attn.k_proj`);
      const v = this.#linear(x, `${pre}self_attn.v_proj`);
      this.#rope(q, nh);
      this.#rope(k, nkv);
      const out = Array.from({ length: n }, () => new Float64Array(nh * hd));
      for (let head = 0; head < nh; head++) {
        const g = Math.floor(head / (nh / nkv));
        for (let i = 0; i < n; i++) {
          const scores = new Float64Array(n).fill(-Infinity);
          for (let j = 0; j <= i; j++) {
            if (window !== null && i - j >= window) continue;
            let s = 0;
            for (let e = 0; e < hd; e++) s += q[i][head * hd + e] * k[j][g * hd + e];
            scores[j] = s / Math.sqrt(hd);
          }
          const big = Math.max(...scores);
          const p = scores.map((s) => Math.exp(s - big));
          const sum = p.reduce((a, b) => a + b, 0);
          for (let j = 0; j < n; j++) {
            p[j] /= sum;
            for (let e = 0; e < hd; e++) out[i][head * hd + e] += p[j] * v[j][g * hd + e];
          }
          if (i === n - 1) attention.set(p, (l * nh + head) * n);
        }
      }
      const o = this.#linear(out, `${pre}self_attn.o_proj`);
      h = h.map((row, i) => row.map((val, e) => val + o[i][e]));
      const y = this.#rmsnorm(h, `${pre}post_attention_layernorm`);
      const gate = this.#linear(y, `${pre}mlp.gate_proj`);
      const up = this.#linear(y, `${pre}mlp.up_proj`);
      const act = gate.map((row, i) => row.map((a, e) => (a / (1 + Math.exp(-a))) * up[i][e]));
      const down = this.#linear(act, `${pre}mlp.down_proj`);
      h = h.map((row, i) => row.map((val, e) => val + down[i][e]));
    }
    const last = this.#rmsnorm([h[n - 1]], "model.norm");
    const head = this.#w["lm_head.weight"] ? "lm_head" : "model.embed_tokens";
    const logits = this.#linear(last, head)[0];
    return { attention, logits };
  }
}

/** Checks got [layers, heads, columns] (a sequence's slice) against the reference's [layers, heads, n] at columns pad.. */
function expectAttention(what: string, got: Float32Array, columns: number, pad: number, want: Float64Array, n: number, rows: number): number {
  expect(got.length).toBe(rows * columns);
  let worst = 0;
  for (let r = 0; r < rows; r++) {
    const row = got.subarray(r * columns, (r + 1) * columns);
    for (let c = 0; c < pad; c++) expect(row[c], `${what}: row ${r}, padding column ${c}`).toBe(0);
    let sum = 0;
    for (let t = 0; t < n; t++) {
      const [g, w] = [row[pad + t], want[r * n + t]];
      sum += g;
      const d = Math.abs(g - w);
      worst = Math.max(worst, d);
      if (w === 0) expect(g, `${what}: row ${r}, key ${t} is outside the window`).toBe(0);
      else if (!(d <= 2e-6 + 1e-4 * w)) throw new Error(`${what}: row ${r} (layer ${Math.floor(r / 4)}), key ${t}: got ${g}, want ${w} (|d| = ${d})`);
    }
    expect(Math.abs(sum - 1), `${what}: row ${r} sums to ${sum}`).toBeLessThanOrEqual(1e-5);
  }
  return worst;
}

const argmax = (xs: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
};

beforeAll(() => init());

const worst: Record<string, number> = {};
afterAll(() =>
  console.log(
    `last-row attention against float64: ${Object.entries(worst)
      .map(([n, d]) => `${n} max |d| ${d.toExponential(2)}`)
      .join(", ")}`,
  ),
);

for (const name of ["llama-untied", "llama-tied", "llama-rope-yarn", "mistral", "qwen2"]) {
  describe(`${name}: the last position's attention per layer and head`, () => {
    const m = models[name];
    let model: CausalLM;
    let ref: Reference;
    const note = (d: number) => (worst[name] = Math.max(worst[name] ?? 0, d));
    beforeAll(() => {
      model = CausalLM.fromConfig(JSON.parse(read(m.config).toString("utf8")) as Record<string, unknown>).loadStateDict(
        loadSafetensors(read(m.weights)),
      );
      ref = new Reference(m);
    });
    afterAll(() => model.dispose());
    const prompt = [3, 17, 42, 5, 9, 60, 11, 23, 8, 31, 2, 47];

    test("a prefill then decode steps on a cache: [numLayers, numHeads, past + L], the reference's, logits unchanged", () => {
      const rows = ref.layers * ref.nh;
      const cache = model.createCache();
      const plain = model.createCache();
      let ids = [...prompt];
      let out = model.forward(prompt, { cache, lastOnly: true, attention: true });
      let logits = model.forward(prompt, { cache: plain, lastOnly: true });
      for (let step = 0; step < 8; step++) {
        expect(out.attention.shape).toEqual([ref.layers, ref.nh, ids.length]);
        // asking for the attention changes no logit
        expect(out.logits.data).toEqual(logits.data);
        const want = ref.run(ids);
        note(expectAttention(`${name} step ${step}`, out.attention.data, ids.length, 0, want.attention, ids.length, rows));
        const next = argmax(out.logits.data);
        expect(next, `step ${step}: greedy token`).toBe(argmax(want.logits));
        ids = [...ids, next];
        out = model.forward([next], { cache, lastOnly: true, attention: true });
        logits = model.forward([next], { cache: plain, lastOnly: true });
      }
      cache.dispose();
      plain.dispose();
    });

    test("without a cache and without lastOnly: every row's logits, the last row's attention", () => {
      const out = model.forward(prompt, { attention: true });
      expect(out.logits.shape).toEqual([prompt.length, ref.vocab]);
      expect(out.logits.data).toEqual(model.forward(prompt).data);
      note(expectAttention(`${name} uncached`, out.attention.data, prompt.length, 0, ref.run(prompt).attention, prompt.length, ref.layers * ref.nh));
      // one token alone attends to itself only
      const one = model.forward([prompt[0]], { attention: true }).attention;
      expect(one.shape).toEqual([ref.layers, ref.nh, 1]);
      expect(Array.from(one.data)).toEqual(new Array(ref.layers * ref.nh).fill(1));
    });

    test("a left-padded batch on a cache: [B, numLayers, numHeads, past + L], padding columns 0, each sequence as alone", () => {
      const rows = ref.layers * ref.nh;
      const seqs = [prompt.slice(0, 7), prompt];
      const L = prompt.length;
      const data = Int32Array.from(seqs.flatMap((s) => [...new Array(L - s.length).fill(0), ...s]));
      const mask = Uint8Array.from(seqs.flatMap((s) => [...new Array(L - s.length).fill(0), ...new Array(s.length).fill(1)]));
      const cache = model.createCache();
      let out = model.forward({ data, shape: [2, L] }, { attentionMask: { data: mask, shape: [2, L] }, cache, lastOnly: true, attention: true });
      const grown = seqs.map((s) => [...s]);
      for (let step = 0; step < 4; step++) {
        const cols = L + step;
        expect(out.attention.shape).toEqual([2, ref.layers, ref.nh, cols]);
        grown.forEach((s, b) => {
          const slice = out.attention.data.subarray(b * rows * cols, (b + 1) * rows * cols);
          note(expectAttention(`${name} batch ${b} step ${step}`, slice, cols, L - seqs[b].length, ref.run(s).attention, s.length, rows));
        });
        const next = [0, 1].map((b) => argmax(out.logits.data.subarray(b * ref.vocab, (b + 1) * ref.vocab)));
        next.forEach((t, b) => grown[b].push(t));
        out = model.forward({ data: Int32Array.from(next), shape: [2, 1] }, { cache, lastOnly: true, attention: true });
      }
      cache.dispose();
    });

    test("a forked cache (its keys in two runs, the passes' softmaxes merged) gives the same as one run", () => {
      const rows = ref.layers * ref.nh;
      const cache = model.createCache();
      model.forward(prompt, { cache, lastOnly: true });
      const fork: DecoderCache = cache.fork();
      // the first appends in place; the fork's new keys then start a segment of their own
      model.forward([5], { cache, lastOnly: true });
      let ids = [...prompt, 7];
      let out = model.forward([7], { cache: fork, lastOnly: true, attention: true });
      for (let step = 0; step < 3; step++) {
        note(expectAttention(`${name} fork step ${step}`, out.attention.data, ids.length, 0, ref.run(ids).attention, ids.length, rows));
        const next = argmax(out.logits.data);
        ids = [...ids, next];
        out = model.forward([next], { cache: fork, lastOnly: true, attention: true });
      }
      // and a prefill of several tokens onto the fork: its last row over both runs
      out = model.forward([1, 2, 3], { cache: fork, lastOnly: true, attention: true });
      ids = [...ids, 1, 2, 3];
      note(expectAttention(`${name} fork prefill`, out.attention.data, ids.length, 0, ref.run(ids).attention, ids.length, rows));
      cache.dispose();
      fork.dispose();
    });
  });
}

test("attention must be a boolean; false or absent returns the logits tensor", () => {
  const m = models["llama-tied"];
  const model = CausalLM.fromConfig(JSON.parse(read(m.config).toString("utf8")) as Record<string, unknown>).loadStateDict(
    loadSafetensors(read(m.weights)),
  );
  expect(() => model.forward([1, 2], { attention: "yes" as never })).toThrow(ArgumentError);
  const a = model.forward([1, 2], { attention: false });
  expect(a.shape).toEqual([2, 67]);
  expect(a.data).toEqual(model.forward([1, 2]).data);
  // an empty batch: nothing computed, shapes kept
  const empty = model.forward({ data: new Int32Array(0), shape: [0, 3] }, { attention: true });
  expect(empty.attention.shape).toEqual([0, 2, 4, 3]);
  model.dispose();
});
