// CausalLM (Hugging Face Llama, Mistral, Qwen2, Qwen3, Gemma 2) against float64 references of tiny
// checkpoints saved with Hugging Face's names (scripts/fixtures_decoders.py): logits of one
// sequence and of a left-padded batch, cached decoding, greedy generation; loading and config.json.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  ArgumentError,
  CausalLM,
  type DecoderCache,
  ShapeError,
  StateError,
  type StateDict,
  type Tensor,
  init,
  loadSafetensors,
  memoryStats,
  ropeParameters,
  tensor,
} from "../src/index.js";

interface Step {
  input_ids: number[][];
  attention_mask: number[][];
  shape: number[];
  logits: number[];
}

interface Model {
  model_type: string;
  weights: string;
  config: string;
  dtype: string;
  sliding_window_per_layer: (number | null)[];
  rope: { rope_type: string; inv_freq: number[]; attention_scaling: number };
  single: { input_ids: number[]; shape: number[]; logits: number[] };
  batch: { input_ids: number[][]; attention_mask: number[][]; lengths: number[]; shape: number[]; logits: number[] };
  cached: { input_ids: number[]; prefill_length: number; steps: number; shape: number[]; logits: number[] };
  cached_batch: { steps: Step[] };
  generate: {
    name: string;
    input_ids: number[] | number[][];
    attention_mask: number[][] | null;
    max_new_tokens: number;
    eos_token_id: number[] | null;
    new_tokens: number[] | number[][];
  }[];
}

const dir = new URL("./fixtures/decoders/", import.meta.url);
const read = (name: string) => readFileSync(new URL(name, dir));
const { models, torch } = JSON.parse(read("cases.json").toString("utf8")) as { models: Record<string, Model>; torch: string };
const config = (m: Model) => JSON.parse(read(m.config).toString("utf8")) as Record<string, unknown>;
const load = (m: Model, cfg = config(m)) => CausalLM.fromConfig(cfg).loadStateDict(loadSafetensors(read(m.weights)));
const ids2 = (rows: number[][]) => ({ data: Int32Array.from(rows.flat()), shape: [rows.length, rows[0].length] });

// |d| <= 1e-4 max|ref| + 1e-4 |ref|: float32 against a float64 reference (the fixture's own float32
// run of the same model differs from it by up to 5e-6 max|ref|)
const RTOL = 1e-4;
const worst: Record<string, { abs: number; ofMax: number; budget: number }> = {};

/** Checks got against want where `keep(i)`; records the worst difference per model. */
function expectLogits(name: string, what: string, got: ArrayLike<number>, want: ArrayLike<number>, keep: (i: number) => boolean = () => true): void {
  expect(got.length).toBe(want.length);
  let max = 0;
  for (let i = 0; i < want.length; i++) if (keep(i)) max = Math.max(max, Math.abs(want[i]));
  worst[name] ??= { abs: 0, ofMax: 0, budget: 0 };
  const w = worst[name];
  for (let i = 0; i < want.length; i++) {
    if (!keep(i)) continue;
    const d = Math.abs(got[i] - want[i]);
    const allowed = RTOL * max + RTOL * Math.abs(want[i]);
    w.abs = Math.max(w.abs, d);
    w.ofMax = Math.max(w.ofMax, d / max);
    w.budget = Math.max(w.budget, d / allowed);
    if (!(d <= allowed))
      throw new Error(
        `${name} ${what} at ${i} (row ${Math.floor(i / 67)}, token ${i % 67}): got ${got[i]}, want ${want[i]} (|d| = ${d}, allowed ${allowed})`,
      );
  }
}

beforeAll(() => init());

afterAll(() => {
  // the measured tolerances, for the record
  const rows = Object.entries(worst).map(
    ([n, w]) => `${n}: max |d| ${w.abs.toExponential(2)} = ${w.ofMax.toExponential(2)} max|ref|, ${(100 * w.budget).toFixed(0)}% of the tolerance`,
  );
  console.log(`CausalLM against torch ${torch} float64:\n  ${rows.join("\n  ")}`);
});

describe(`matches the float64 reference (torch ${torch}) on Hugging Face checkpoints`, () => {
  for (const [name, m] of Object.entries(models)) {
    describe(`${name} (${m.model_type}, ${m.dtype})`, () => {
      let model: CausalLM;
      beforeAll(() => {
        model = load(m);
      });
      afterAll(() => model.dispose());

      test("RoPE: inv_freq and the attention factor", () => {
        const c = config(m);
        const hd = (c.head_dim as number | undefined) ?? (c.hidden_size as number) / (c.num_attention_heads as number);
        const p = ropeParameters({
          dim: hd,
          theta: c.rope_theta as number,
          scaling: c.rope_scaling as never,
          maxPositionEmbeddings: c.max_position_embeddings as number,
        });
        // ours in float32 as Hugging Face's, the fixture's in float64: a few float32 roundings apart
        m.rope.inv_freq.forEach((want, i) => expect(Math.abs(p.invFreq[i] - want), `inv_freq[${i}]`).toBeLessThanOrEqual(5e-7 * want));
        expect(p.attentionScaling).toBeCloseTo(m.rope.attention_scaling, 12);
      });

      test("one sequence: logits [L, vocab]", () => {
        const out = model.forward(m.single.input_ids);
        expect(out.shape).toEqual(m.single.shape);
        expectLogits(name, "single", out.data, m.single.logits);
        // Int32Array and number[] alike; lastOnly gives the last row
        expect(model.forward(Int32Array.from(m.single.input_ids)).data).toEqual(out.data);
        const last = model.forward(m.single.input_ids, { lastOnly: true });
        expect(last.shape).toEqual([1, m.single.shape[1]]);
        expect(last.data).toEqual(out.data.subarray(out.data.length - m.single.shape[1]));
      });

      test("a left-padded batch: logits [B, L, vocab] at the real tokens, each as the sequence alone", () => {
        const { input_ids, attention_mask, shape, logits } = m.batch;
        const [B, L, V] = shape;
        const out = model.forward(ids2(input_ids), { attentionMask: ids2(attention_mask) });
        expect(out.shape).toEqual(shape);
        expectLogits(name, "batch", out.data, logits, (i) => attention_mask[Math.floor(i / (L * V))][Math.floor(i / V) % L] === 1);
        for (let b = 0; b < B; b++) {
          const n = m.batch.lengths[b];
          const alone = model.forward(input_ids[b].slice(L - n));
          const rows = out.data.subarray((b * L + L - n) * V, (b + 1) * L * V);
          let d = 0;
          for (let i = 0; i < rows.length; i++) d = Math.max(d, Math.abs(rows[i] - alone.data[i]));
          expect(d, `row ${b}`).toBeLessThanOrEqual(1e-6 * Math.max(...Array.from(alone.data, Math.abs)));
        }
        // the mask as Uint8Array / BigInt64Array / number[][] flattened is the same mask
        const bytes = { data: Uint8Array.from(attention_mask.flat()), shape: [B, L] };
        expect(model.forward(ids2(input_ids), { attentionMask: bytes }).data).toEqual(out.data);
        const big = { data: BigInt64Array.from(attention_mask.flat(), BigInt), shape: [B, L] };
        expect(model.forward(ids2(input_ids), { attentionMask: big }).data).toEqual(out.data);
        // lastOnly: [B, 1, vocab], the last column of each row
        const last = model.forward(ids2(input_ids), { attentionMask: bytes, lastOnly: true });
        expect(last.shape).toEqual([B, 1, V]);
        for (let b = 0; b < B; b++) expect(last.data.subarray(b * V, (b + 1) * V)).toEqual(out.data.subarray(((b + 1) * L - 1) * V, (b + 1) * L * V));
      });

      test("cached decoding: a prefill, then one token at a time, equals the full forward", () => {
        const { input_ids, prefill_length: P, shape, logits } = m.cached;
        const V = shape[1];
        const cache = model.createCache({ dtype: "f32" });
        const parts = [model.forward(input_ids.slice(0, P), { cache }).data];
        expect(cache.length).toBe(P);
        for (let t = P; t < input_ids.length; t++) parts.push(model.forward([input_ids[t]], { cache }).data);
        const got = new Float32Array(input_ids.length * V);
        let at = 0;
        for (const p of parts) {
          got.set(p, at);
          at += p.length;
        }
        expectLogits(name, "cached", got, logits);
        // the same with a mask of ones over past + new tokens, and with lastOnly steps
        const again = model.createCache();
        model.forward(input_ids.slice(0, P), { cache: again, attentionMask: new Array(P).fill(1) });
        for (let t = P; t < input_ids.length; t++) {
          const step = model.forward([input_ids[t]], { cache: again, attentionMask: new Uint8Array(t + 1).fill(1), lastOnly: true });
          expect(step.data).toEqual(got.subarray(t * V, (t + 1) * V));
        }
        cache.dispose();
        again.dispose();
      });

      test("cached decoding of the left-padded batch: each step's logits", () => {
        const cache = model.createCache();
        model.forward(ids2(m.batch.input_ids), { attentionMask: ids2(m.batch.attention_mask), cache });
        expect(cache.sequenceLengths).toEqual(m.batch.lengths);
        for (const [k, s] of m.cached_batch.steps.entries()) {
          const out = model.forward(ids2(s.input_ids), { attentionMask: ids2(s.attention_mask), cache });
          expect(out.shape).toEqual(s.shape);
          expectLogits(name, `cached batch step ${k}`, out.data, s.logits);
        }
        expect(cache.sequenceLengths).toEqual(m.batch.lengths.map((n) => n + m.cached_batch.steps.length));
        cache.dispose();
      });

      for (const g of m.generate) {
        test(`greedy generation: ${g.name}`, () => {
          const batched = Array.isArray(g.input_ids[0]);
          const ids = batched ? ids2(g.input_ids as number[][]) : (g.input_ids as number[]);
          const got = model.generate(ids, {
            maxNewTokens: g.max_new_tokens,
            attentionMask: g.attention_mask ? ids2(g.attention_mask) : undefined,
            eosTokenId: g.eos_token_id ?? [],
          });
          if (batched) expect((got as Int32Array[]).map((t) => Array.from(t))).toEqual(g.new_tokens);
          else expect(Array.from(got as Int32Array)).toEqual(g.new_tokens);
        });
      }
    });
  }
});

describe("loading checkpoints", () => {
  const untied = models["llama-untied"];

  test("rotary_emb.inv_freq buffers are ignored; any other unused key is an error naming it", () => {
    const dict = loadSafetensors(read(untied.weights));
    expect(Object.keys(dict).filter((k) => k.endsWith("rotary_emb.inv_freq")).length).toBe(2);
    const model = CausalLM.fromConfig(config(untied)).loadStateDict(dict);
    expectLogits("llama-untied", "inv_freq ignored", model.forward(untied.single.input_ids).data, untied.single.logits);
    const extra = { ...dict, "model.layers.0.self_attn.rotary.weight": tensor([1], [1]), "score.weight": tensor([1, 2], [1, 2]) };
    expect(() => CausalLM.fromConfig(config(untied)).loadStateDict(extra)).toThrow(ArgumentError);
    expect(() => CausalLM.fromConfig(config(untied)).loadStateDict(extra)).toThrow(
      /CausalLM.loadStateDict: unexpected "model.layers.0.self_attn.rotary.weight", "score.weight"/,
    );
    expect(CausalLM.fromConfig(config(untied)).loadStateDict(extra, "", { strict: false }).forward([1]).shape).toEqual([1, 67]);
    model.dispose();
  });

  test("missing and misshapen keys are named; a failed load changes nothing", () => {
    const dict: StateDict = { ...loadSafetensors(read(untied.weights)) };
    delete dict["model.layers.1.mlp.up_proj.weight"];
    dict["model.norm.weight"] = tensor(new Float32Array(47), [47]);
    const model = CausalLM.fromConfig(config(untied));
    expect(() => model.loadStateDict(dict)).toThrow(
      /missing "model.layers.1.mlp.up_proj.weight" \[70, 48\].*"model.norm.weight" has shape \[47\], expected \[48\]|"model.norm.weight" has shape \[47\], expected \[48\].*missing "model.layers.1.mlp.up_proj.weight" \[70, 48\]/,
    );
    expect(() => model.forward([1])).toThrow(StateError);
  });

  test("tie_word_embeddings: true reads embed_tokens as the LM head; false needs lm_head.weight; missing: decided by the state dict", () => {
    const tied = models["llama-tied"];
    const dict = loadSafetensors(read(tied.weights));
    expect(Object.keys(dict)).not.toContain("lm_head.weight");
    const { tie_word_embeddings: _, ...noField } = config(tied);
    // missing field, no lm_head.weight: tied (Gemma 2's configs are so)
    const a = CausalLM.fromConfig(noField).loadStateDict(dict);
    expect(a.tieWordEmbeddings).toBe(true);
    expectLogits("llama-tied", "tie decided", a.forward(tied.single.input_ids).data, tied.single.logits);
    // missing field, lm_head.weight present: untied
    const u = loadSafetensors(read(untied.weights));
    const { tie_word_embeddings: __, ...noField2 } = config(untied);
    const b = CausalLM.fromConfig(noField2).loadStateDict(u);
    expect(b.tieWordEmbeddings).toBe(false);
    expectLogits("llama-untied", "untie decided", b.forward(untied.single.input_ids).data, untied.single.logits);
    // explicit false without lm_head.weight: an error naming it
    expect(() => CausalLM.fromConfig({ ...config(tied), tie_word_embeddings: false }).loadStateDict(dict)).toThrow(
      /missing "lm_head.weight" \[67, 48\]/,
    );
    // explicit true with an lm_head.weight: the embedding is the head, the extra key ignored (Hugging Face ties it)
    const c = CausalLM.fromConfig({ ...config(untied), tie_word_embeddings: true }).loadStateDict(u);
    expect(c.tieWordEmbeddings).toBe(true);
    for (const x of [a, b, c]) x.dispose();
  });

  test("a tied model keeps one table: its weights take no more memory than the untied model's minus lm_head", () => {
    const before = memoryStats().liveBytes;
    const tied = load(models["llama-tied"]);
    const tiedBytes = memoryStats().liveBytes - before;
    const un = load(untied);
    const untiedBytes = memoryStats().liveBytes - before - tiedBytes;
    expect(untiedBytes - tiedBytes).toBeGreaterThanOrEqual(67 * 48 * 4);
    expect(untiedBytes - tiedBytes).toBeLessThan(2 * 72 * 48 * 4);
    tied.dispose();
    un.dispose();
    expect(memoryStats().liveBytes).toBe(before);
  });

  test('a base model\'s checkpoint (no "model." prefix) loads too', () => {
    const tied = models["llama-tied"];
    const dict = loadSafetensors(read(tied.weights));
    const bare = Object.fromEntries(Object.entries(dict).map(([k, v]) => [k.replace(/^model\./, ""), v]));
    const model = CausalLM.fromConfig(config(tied)).loadStateDict(bare);
    expectLogits("llama-tied", "no prefix", model.forward(tied.single.input_ids).data, tied.single.logits);
    model.dispose();
  });

  test("dispose frees every weight; forward afterwards is a StateError", () => {
    const before = memoryStats().liveBytes;
    const model = load(models.gemma2);
    model.forward([1, 2, 3]);
    model.dispose();
    expect(memoryStats().liveBytes).toBe(before);
    expect(() => model.forward([1])).toThrow(/was disposed/);
  });
});

describe("config.json", () => {
  const base = () => config(models["llama-untied"]);
  const bad: [string, Record<string, unknown>, RegExp][] = [
    [
      "another model type",
      { model_type: "gpt2" },
      /CausalLM.fromConfig model_type: expected one of "llama", "mistral", "qwen2", "qwen3", "gemma2", got "gpt2"/,
    ],
    ["no model_type", { model_type: undefined }, /CausalLM.fromConfig model_type: expected .*, got nothing/],
    [
      "dynamic NTK RoPE",
      { rope_scaling: { rope_type: "dynamic", factor: 2 } },
      /rope_scaling.rope_type: expected "default", "linear", "llama3" or "yarn", got "dynamic"/,
    ],
    [
      "longrope (older `type` key)",
      { rope_scaling: { type: "longrope", factor: 2 } },
      /rope_scaling.rope_type: expected "default", "linear", "llama3" or "yarn", got "longrope"/,
    ],
    [
      "llama3 without its fields",
      { rope_scaling: { rope_type: "llama3", factor: 8 } },
      /rope_scaling.low_freq_factor: expected a finite number > 0, got nothing|low_freq_factor/,
    ],
    ["partial rotary", { partial_rotary_factor: 0.5 }, /partial_rotary_factor: expected 1.0 \(the only one supported\), got 0.5/],
    [
      "a quantised checkpoint",
      { quantization_config: { quant_method: "gptq" } },
      /quantization_config: expected none \(the only one supported\), got \{"quant_method":"gptq"\}/,
    ],
    [
      "two at once, both named",
      { partial_rotary_factor: 0.25, quantization_config: { bits: 4 } },
      /partial_rotary_factor: expected 1.0 .*got 0.25; quantization_config: expected none .*got \{"bits":4\}/,
    ],
    [
      "an activation we do not compute",
      { hidden_act: "relu" },
      /hidden_act: expected one of "silu", "swish", "gelu_pytorch_tanh", "gelu_new", got "relu"/,
    ],
    [
      "heads that do not group",
      { num_key_value_heads: 3 },
      /CausalLM.fromConfig num_attention_heads: expected a multiple of num_key_value_heads \(3\), got 4/,
    ],
    ["an odd head size", { head_dim: 7 }, /head_dim: expected an even integer \(the head size: .*\), got 7/],
    ["a size that is not a positive integer", { intermediate_size: 0 }, /intermediate_size: expected an integer >= 1, got 0/],
    ["tie_word_embeddings of the wrong type", { tie_word_embeddings: "yes" }, /tie_word_embeddings: expected true or false, got "yes"/],
    [
      "layer_types of the wrong length",
      { model_type: "gemma2", layer_types: ["sliding_attention"] },
      /layer_types: expected "full_attention" or "sliding_attention" for each of the 2 layers, got a list of 1/,
    ],
  ];
  for (const [what, change, message] of bad) {
    test(`${what} is an ArgumentError naming it`, () => {
      const c = { ...base(), ...change };
      for (const [k, v] of Object.entries(change)) if (v === undefined) delete c[k];
      expect(() => CausalLM.fromConfig(c)).toThrow(ArgumentError);
      expect(() => CausalLM.fromConfig(c)).toThrow(message);
    });
  }

  test("fields that do not change inference are ignored", () => {
    const c = {
      ...base(),
      initializer_range: 0.5,
      use_cache: false,
      torch_dtype: "bfloat16",
      attention_dropout: 0.1,
      pretraining_tp: 1,
      transformers_version: "4.57.1",
      bos_token_id: 5,
      foo: "bar",
    };
    expect(CausalLM.fromConfig(c).config.numLayers).toBe(2);
  });

  test("each model type's sliding windows per layer", () => {
    for (const m of Object.values(models)) expect(CausalLM.fromConfig(config(m)).config.slidingWindows).toEqual(m.sliding_window_per_layer);
    const qwen = config(models.qwen2);
    expect(CausalLM.fromConfig({ ...qwen, use_sliding_window: true }).config.slidingWindows).toEqual([null, 4]); // layers from max_window_layers (1)
    expect(
      CausalLM.fromConfig({ ...config(models.gemma2), layer_types: ["full_attention", "sliding_attention", "full_attention"] }).config.slidingWindows,
    ).toEqual([null, 4, null]);
  });
});

describe("inputs", () => {
  let model: CausalLM;
  beforeAll(() => {
    model = load(models.mistral);
  });
  afterAll(() => model.dispose());

  test("ids out of range, masks of the wrong shape or not left-padded are errors before any work", () => {
    expect(() => model.forward([1, 67])).toThrow(/inputIds\[1\]: expected an integer in \[0, 67\), got number 67/);
    expect(() => model.forward({ data: Int32Array.of(1, 2, 3, 4), shape: [2, 2] }, { attentionMask: [1, 1] })).toThrow(ShapeError);
    expect(() =>
      model.forward({ data: Int32Array.of(1, 2, 3, 4), shape: [2, 2] }, { attentionMask: { data: Uint8Array.of(1, 0, 1, 1), shape: [2, 2] } }),
    ).toThrow(/attentionMask: expected left padding only \(zeros, then ones\), got a 0 at column 1 after a 1 in row 0/);
    expect(() => model.forward([1, 2], { attentionMask: [1, 2] })).toThrow(
      /attentionMask: expected values 1 \(token\) or 0 \(padding\), got number 2 at position 1/,
    );
    expect(() => model.forward([1, 2], { lastOnly: 1 as never })).toThrow(/CausalLM.forward lastOnly: expected a boolean, got number 1/);
    expect(() => model.forward([1, 2], { cache: {} as DecoderCache })).toThrow(/cache: expected a DecoderCache \(from createCache\(\)\), got Object/);
    expect(() => model.forward([1, 2], { foo: 1 } as never)).toThrow(/unknown option "foo"/);
  });

  test("empty input: logits of shape [0, vocab] / [B, 0, vocab]", () => {
    expect(model.forward([]).shape).toEqual([0, 67]);
    expect(model.forward({ data: new Int32Array(0), shape: [2, 0] }).shape).toEqual([2, 0, 67]);
  });

  test("a sequence of padding only gets finite logits and leaves the others unchanged", () => {
    const out = model.forward(
      ids2([
        [3, 4, 5],
        [0, 0, 0],
      ]),
      {
        attentionMask: ids2([
          [1, 1, 1],
          [0, 0, 0],
        ]),
      },
    );
    expect(out.data.every(Number.isFinite)).toBe(true);
    expect(out.data.subarray(0, 3 * 67)).toEqual(model.forward([3, 4, 5]).data);
  });

  test("a prompt longer than the sliding window (Mistral, window 5) equals decoding it token by token", () => {
    const prompt = Array.from({ length: 40 }, (_, i) => (i * 7 + 3) % 64);
    const full = model.forward(prompt);
    const cache = model.createCache();
    const rows: Tensor[] = prompt.map((t) => model.forward([t], { cache }));
    rows.forEach((r, i) => expectLogits("mistral", `long prompt row ${i}`, r.data, full.data.subarray(i * 67, (i + 1) * 67)));
    cache.dispose();
  });
});
