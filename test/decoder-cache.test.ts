// DecoderCache: what truncate, reorder and fork mean, checked against full forwards of the
// sequences they stand for; prefixes shared without copies; sliding windows whose memory stays
// flat; dtype and ownership errors; a cache left as it was by a call that fails.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ArgumentError, CausalLM, type DecoderCache, ShapeError, StateError, init, loadSafetensors, memoryStats } from "../src/index.js";

const dir = new URL("./fixtures/decoders/", import.meta.url);
const read = (name: string) => readFileSync(new URL(name, dir));
const load = (name: string) =>
  CausalLM.fromConfig(JSON.parse(read(`${name}.config.json`).toString("utf8"))).loadStateDict(loadSafetensors(read(`${name}.safetensors`)));
const V = 67;
const ids2 = (rows: number[][]) => ({ data: Int32Array.from(rows.flat()), shape: [rows.length, rows[0].length] });

// the last row's logits of the sequence by a full forward, without a cache
function lastOf(model: CausalLM, seq: number[]): Float32Array {
  return model.forward(seq, { lastOnly: true }).data;
}

function expectNear(got: Float32Array, want: Float32Array, what: string): void {
  const max = Math.max(...Array.from(want, Math.abs));
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= 1e-5 * max + 1e-5 * Math.abs(want[i]))) throw new Error(`${what} at ${i}: got ${got[i]}, want ${want[i]}`);
  }
}

// one step of one token per sequence; returns each row's logits
function step(model: CausalLM, cache: DecoderCache, tokens: number[]): Float32Array[] {
  const out = model.forward(ids2(tokens.map((t) => [t])), { cache }).data;
  return tokens.map((_, b) => out.subarray(b * V, (b + 1) * V));
}

const prompt = [5, 17, 33, 8, 41, 12, 60, 9, 27];

beforeAll(() => init());

for (const name of ["llama-tied", "gemma2", "mistral", "qwen3"]) {
  describe(`${name}`, () => {
    let model: CausalLM;
    beforeAll(() => {
      model = load(name);
    });
    afterAll(() => model.dispose());

    test("truncate(n): the next tokens continue from column n", () => {
      const cache = model.createCache();
      model.forward(prompt, { cache });
      step(model, cache, [3]);
      step(model, cache, [4]);
      expect(cache.length).toBe(11);
      cache.truncate(9);
      expect(cache.length).toBe(9);
      const [got] = step(model, cache, [50]);
      expectNear(got, lastOf(model, [...prompt, 50]), "after truncate(9)");
      cache.truncate(4);
      const out = model.forward([7, 7], { cache }).data;
      expectNear(out.subarray(V), lastOf(model, [...prompt.slice(0, 4), 7, 7]), "after truncate(4)");
      cache.truncate(0);
      expect(cache.length).toBe(0);
      expectNear(model.forward([9, 10], { cache, lastOnly: true }).data, lastOf(model, [9, 10]), "after truncate(0)");
      expect(() => cache.truncate(3)).toThrow(/DecoderCache.truncate n: expected an integer from 0 to 2, got number 3/);
      cache.dispose();
    });

    test("reorder(indices): sequences kept, repeated (sharing their keys) and dropped, then diverging", () => {
      const cache = model.createCache();
      const rows = [prompt, prompt.slice(3), prompt.slice(7)];
      const L = prompt.length;
      const padded = rows.map((r) => [...new Array(L - r.length).fill(0), ...r]);
      const mask = rows.map((r) => [...new Array(L - r.length).fill(0), ...new Array(r.length).fill(1)]);
      model.forward(ids2(padded), { attentionMask: ids2(mask), cache });
      // beam search: keep sequence 2 twice and sequence 0 once, drop 1
      cache.reorder([2, 0, 2]);
      expect(cache.batchSize).toBe(3);
      expect(cache.sequenceLengths).toEqual([2, 9, 2]);
      const seqs = [[...rows[2]], [...rows[0]], [...rows[2]]];
      // the two copies of sequence 2 take different tokens, three times
      for (const tokens of [
        [11, 12, 13],
        [21, 22, 23],
        [31, 32, 33],
      ]) {
        const got = step(model, cache, tokens);
        tokens.forEach((t, b) => seqs[b].push(t));
        got.forEach((g, b) => expectNear(g, lastOf(model, seqs[b]), `reordered row ${b} after ${seqs[b].length} tokens`));
      }
      // and again: row 1 repeated, the others dropped
      cache.reorder([1, 1]);
      const again = [[...seqs[1]], [...seqs[1]]];
      for (const tokens of [
        [40, 41],
        [42, 43],
      ]) {
        step(model, cache, tokens).forEach((g, b) => {
          again[b].push(tokens[b]);
          expectNear(g, lastOf(model, again[b]), `twice reordered row ${b}`);
        });
      }
      expect(() => cache.reorder([2])).toThrow(/DecoderCache.reorder indices\[0\]: expected an integer from 0 to 1, got number 2/);
      cache.reorder([]);
      expect(cache.batchSize).toBe(0);
      expect(cache.length).toBe(0);
      cache.dispose();
    });

    test("fork(): both continue independently from the shared prompt; disposing one leaves the other", () => {
      const parent = model.createCache();
      model.forward(prompt, { cache: parent });
      const child = parent.fork();
      const grandchild = child.fork();
      const seqs = [[...prompt], [...prompt], [...prompt]];
      const caches = [parent, child, grandchild];
      for (const t of [
        [1, 2, 3],
        [4, 5, 6],
        [7, 8, 9],
        [10, 11, 12],
      ]) {
        caches.forEach((c, i) => {
          const [g] = step(model, c, [t[i]]);
          seqs[i].push(t[i]);
          expectNear(g, lastOf(model, seqs[i]), `fork ${i} after ${seqs[i].length} tokens`);
        });
      }
      // a fork of a fork that has keys of its own: its keys then sit in three runs (merged per row)
      const great = grandchild.fork();
      let greatSeq = [...seqs[2]];
      for (const t of [13, 14, 15]) {
        step(model, grandchild, [t + 10]);
        seqs[2].push(t + 10);
        const [g] = step(model, great, [t]);
        greatSeq = [...greatSeq, t];
        expectNear(g, lastOf(model, greatSeq), `great-grandchild after ${greatSeq.length} tokens`);
      }
      great.dispose();
      parent.dispose();
      child.truncate(10);
      seqs[1].length = 10;
      const [g] = step(model, child, [44]);
      expectNear(g, lastOf(model, [...seqs[1], 44]), "child after the parent's dispose and a truncate");
      const [h] = step(model, grandchild, [45]);
      expectNear(h, lastOf(model, [...seqs[2], 45]), "grandchild");
      child.dispose();
      grandchild.dispose();
      expect(() => parent.fork()).toThrow(StateError);
    });
  });
}

describe("sharing and memory", () => {
  let llama: CausalLM;
  let mistral: CausalLM;
  beforeAll(() => {
    llama = load("llama-tied");
    mistral = load("mistral");
  });
  afterAll(() => {
    llama.dispose();
    mistral.dispose();
  });

  test("fork() and reorder() repeats copy no key of full-attention layers", () => {
    llama.forward(new Array(300).fill(1), { lastOnly: true }); // the model's RoPE table: positions past the ones below
    const cache = llama.createCache();
    llama.forward(
      Array.from({ length: 200 }, (_, i) => i % 60),
      { cache },
    );
    const held = memoryStats().liveBytes;
    const forks = [cache.fork(), cache.fork(), cache.fork()];
    expect(memoryStats().liveBytes).toBe(held);
    cache.reorder([0, 0, 0, 0]);
    expect(memoryStats().liveBytes).toBe(held);
    // each continuation's own tokens go to blocks of its own; the prefix stays shared
    for (const f of forks) step(llama, f, [3]);
    // three forks, two layers, each a first block of 16 rows of keys and values of 24 floats
    expect(memoryStats().liveBytes - held).toBe(3 * 2 * (2 * 16 * 24 * 4));
    for (const f of forks) f.dispose();
    cache.dispose();
  });

  test("a sliding-window model's cache stops growing (Mistral, window 5): flat over 300 steps", () => {
    mistral.forward(new Array(400).fill(1), { lastOnly: true }); // the model's RoPE table: positions past the 309 below
    const cache = mistral.createCache();
    mistral.forward(prompt, { cache });
    const sizes: number[] = [];
    const live: number[] = [];
    const seq = [...prompt];
    for (let i = 0; i < 300; i++) {
      const t = (i * 13 + 5) % 64;
      const [g] = step(mistral, cache, [t]);
      seq.push(t);
      if (i % 50 === 49) expectNear(g, lastOf(mistral, seq), `step ${i}`);
      sizes.push(cache.byteLength);
      live.push(memoryStats().liveBytes);
    }
    // window - 1 rows kept plus a chunk of 16 per layer, keys and values, 24 floats a row
    expect(Math.max(...sizes)).toBe(2 * 2 * (4 + 16) * 24 * 4);
    expect(new Set(live.slice(20)).size).toBe(1);
    expect(cache.length).toBe(309);
    // a long prefill grows it for the call; the next step is back to the steady size
    const long = mistral.createCache();
    mistral.forward(
      Array.from({ length: 100 }, (_, i) => i % 64),
      { cache: long },
    );
    expect(long.byteLength).toBeGreaterThan(2 * 2 * 100 * 24 * 4 - 1);
    step(mistral, long, [1]);
    expect(long.byteLength).toBe(2 * 2 * (4 + 16) * 24 * 4);
    cache.dispose();
    long.dispose();
  });

  test("a sliding-window layer cannot truncate back past the keys it dropped", () => {
    const cache = mistral.createCache();
    mistral.forward(prompt, { cache });
    for (let i = 0; i < 40; i++) step(mistral, cache, [i % 60]);
    const length = cache.length;
    expect(() => cache.truncate(10)).toThrow(StateError);
    expect(() => cache.truncate(10)).toThrow(/layer 0 slides over a window of 5 and no longer holds the keys before position/);
    expect(cache.length).toBe(length); // unchanged
    cache.truncate(length - 1); // a step back is fine while the window before it is held
    expect(cache.length).toBe(length - 1);
    cache.dispose();
  });

  test("dispose frees the cache; reset empties it for a batch of another size", () => {
    const before = memoryStats().liveBytes;
    const cache = llama.createCache();
    llama.forward(prompt, { cache });
    cache.reset();
    expect(memoryStats().liveBytes).toBe(before);
    llama.forward(ids2([prompt, prompt]), { cache });
    expect(cache.batchSize).toBe(2);
    cache.dispose();
    expect(memoryStats().liveBytes).toBe(before);
    expect(() => llama.forward(prompt, { cache })).toThrow(/DecoderCache was disposed/);
  });
});

describe("errors", () => {
  let llama: CausalLM;
  let other: CausalLM;
  beforeAll(() => {
    llama = load("llama-tied");
    other = load("llama-untied");
  });
  afterAll(() => {
    llama.dispose();
    other.dispose();
  });

  test('dtype: "f32" (default), "f16" or "q8" (test/kv-formats.test.ts); anything else is an ArgumentError', () => {
    expect(llama.createCache().dtype).toBe("f32");
    for (const dtype of ["f32", "f16", "q8"] as const) expect(llama.createCache({ dtype }).dtype).toBe(dtype);
    expect(() => llama.createCache({ dtype: "bf16" as never })).toThrow(ArgumentError);
    expect(() => llama.createCache({ dtype: "bf16" as never })).toThrow('createCache dtype: expected "f32", "f16" or "q8", got string bf16');
    expect(() => llama.createCache({ size: 3 } as never)).toThrow(/unknown option "size"/);
  });

  test("a cache belongs to its model, and to its batch size until reset", () => {
    const cache = llama.createCache();
    expect(() => other.forward(prompt, { cache })).toThrow(StateError);
    llama.forward(prompt, { cache });
    expect(() => llama.forward(ids2([[1], [2]]), { cache })).toThrow(ShapeError);
    expect(() => llama.forward(ids2([[1], [2]]), { cache })).toThrow(/cache: expected an input batch of 1 \(the sequences it holds\), got 2/);
    cache.dispose();
  });

  test("the mask covers past and new columns and must agree with the cached padding", () => {
    const cache = llama.createCache();
    llama.forward(
      ids2([
        [0, 0, 5, 6],
        [1, 2, 3, 4],
      ]),
      {
        attentionMask: ids2([
          [0, 0, 1, 1],
          [1, 1, 1, 1],
        ]),
        cache,
      },
    );
    expect(() =>
      llama.forward(ids2([[7], [8]]), {
        cache,
        attentionMask: ids2([
          [1, 1],
          [1, 1],
        ]),
      }),
    ).toThrow(/expected shape \[2, 5\]/);
    expect(() =>
      llama.forward(ids2([[7], [8]]), {
        cache,
        attentionMask: ids2([
          [0, 1, 1, 1, 1],
          [1, 1, 1, 1, 1],
        ]),
      }),
    ).toThrow(/attentionMask: expected past columns in row 0 that match the cache, which holds 2 padding columns of 4, got 1 leading zero/);
    const before = cache.length;
    // a failed call leaves the cache as it was; the right call then works
    expect(() => llama.forward(ids2([[7], [99]]), { cache })).toThrow(ArgumentError);
    expect(cache.length).toBe(before);
    const out = llama.forward(ids2([[7], [8]]), {
      cache,
      attentionMask: ids2([
        [0, 0, 1, 1, 1],
        [1, 1, 1, 1, 1],
      ]),
    }).data;
    expectNear(out.subarray(0, V), lastOf(llama, [5, 6, 7]), "row 0");
    expectNear(out.subarray(V), lastOf(llama, [1, 2, 3, 4, 8]), "row 1");
    // without a mask: the cached padding
    const next = llama.forward(ids2([[9], [9]]), { cache }).data;
    expectNear(next.subarray(0, V), lastOf(llama, [5, 6, 7, 9]), "row 0 without a mask");
    cache.dispose();
  });

  test("a row of padding only, then its first tokens", () => {
    const cache = llama.createCache();
    llama.forward(
      ids2([
        [0, 0],
        [3, 4],
      ]),
      {
        attentionMask: ids2([
          [0, 0],
          [1, 1],
        ]),
        cache,
      },
    );
    expect(cache.sequenceLengths).toEqual([0, 2]);
    const out = llama.forward(
      ids2([
        [5, 6],
        [7, 8],
      ]),
      {
        attentionMask: ids2([
          [0, 0, 1, 1],
          [1, 1, 1, 1],
        ]),
        cache,
      },
    ).data;
    expectNear(out.subarray(V, 2 * V), lastOf(llama, [5, 6]), "row 0's first tokens");
    expectNear(out.subarray(3 * V), lastOf(llama, [3, 4, 7, 8]), "row 1");
    cache.dispose();
  });
});

describe("attention sinks through the decoder cache (a sink joins one pass of a sequence's softmax, not each)", () => {
  test("cached steps and a fork's continuation equal the full forward of the same sequences", async () => {
    const { causalLMOptions } = await import("../src/causal-lm-config.js");
    const config = JSON.parse(read("llama-tied.config.json").toString("utf8"));
    const model = new CausalLM({ ...causalLMOptions(config), sinks: true });
    const dict: Record<string, unknown> = { ...loadSafetensors(read("llama-tied.safetensors")) };
    model.layers.forEach(
      (l, i) =>
        (dict[`model.layers.${i}.self_attn.sinks`] = { data: Float32Array.from({ length: l.numHeads }, (_, h) => 0.5 + h), shape: [l.numHeads] }),
    );
    model.loadStateDict(dict as never);
    const cache = model.createCache();
    model.forward(prompt, { cache });
    const child = cache.fork(); // the prompt's keys shared: the next steps read them in a pass of their own
    const [a] = step(model, cache, [3]);
    expectNear(a!, lastOf(model, [...prompt, 3]), "parent after one step");
    const [b] = step(model, child, [40]);
    expectNear(b!, lastOf(model, [...prompt, 40]), "fork after one step");
    const [c] = step(model, child, [41]);
    expectNear(c!, lastOf(model, [...prompt, 40, 41]), "fork after two steps");
    // sinks change the numbers: without them the logits differ
    const plain = load("llama-tied");
    expect(Math.max(...Array.from(lastOf(plain, [...prompt, 3]), (x, i) => Math.abs(x - a![i]!)))).toBeGreaterThan(1e-3);
    plain.dispose();
    child.dispose();
    cache.dispose();
    model.dispose();
  });
});
