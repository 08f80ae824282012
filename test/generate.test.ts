// CausalLM.generate beyond the fixtures' greedy runs: sampling reproducible for a seed, top-k,
// top-p and the repetition penalty as Hugging Face's processors define them, streaming, finished
// sequences leaving the batch, option errors.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ArgumentError, CausalLM, init, loadSafetensors } from "../src/index.js";
import { choose, seededRandom } from "../src/generate.js";

const dir = new URL("./fixtures/decoders/", import.meta.url);
const read = (name: string) => readFileSync(new URL(name, dir));
const ids2 = (rows: number[][]) => ({ data: Int32Array.from(rows.flat()), shape: [rows.length, rows[0].length] });
const prompt = [5, 17, 33, 8, 41, 12];
const batch = ids2([
  [5, 17, 33, 8, 41, 12],
  [0, 0, 0, 9, 22, 40],
  [0, 0, 0, 0, 0, 31],
]);
const mask = ids2([
  [1, 1, 1, 1, 1, 1],
  [0, 0, 0, 1, 1, 1],
  [0, 0, 0, 0, 0, 1],
]);
const list = (x: Int32Array | Int32Array[]) => (Array.isArray(x) ? x.map((t) => Array.from(t)) : Array.from(x));

let model: CausalLM;
beforeAll(async () => {
  await init();
  model = CausalLM.fromConfig(JSON.parse(read("gemma2.config.json").toString("utf8"))).loadStateDict(loadSafetensors(read("gemma2.safetensors")));
});
afterAll(() => model.dispose());

describe("sampling", () => {
  test("the same seed gives the same tokens; other seeds give others", () => {
    const run = (seed: number) => list(model.generate(prompt, { maxNewTokens: 12, temperature: 1.5, seed, eosTokenId: [] }));
    expect(run(7)).toEqual(run(7));
    const seen = new Set([1, 2, 3, 4, 5, 6].map((s) => JSON.stringify(run(s))));
    expect(seen.size).toBeGreaterThan(3);
  });

  test("a batch samples each sequence as it would alone with the same seed only by chance, but reproducibly", () => {
    const a = list(model.generate(batch, { attentionMask: mask, maxNewTokens: 8, temperature: 1, topK: 10, topP: 0.9, seed: 3, eosTokenId: [] }));
    const b = list(model.generate(batch, { attentionMask: mask, maxNewTokens: 8, temperature: 1, topK: 10, topP: 0.9, seed: 3, eosTokenId: [] }));
    expect(a).toEqual(b);
    expect((a as number[][]).map((r) => r.length)).toEqual([8, 8, 8]);
  });

  test("topK 1 and a tiny topP are greedy", () => {
    const greedy = list(model.generate(prompt, { maxNewTokens: 10, eosTokenId: [] }));
    expect(list(model.generate(prompt, { maxNewTokens: 10, temperature: 1, topK: 1, seed: 1, eosTokenId: [] }))).toEqual(greedy);
    expect(list(model.generate(prompt, { maxNewTokens: 10, temperature: 2, topP: 1e-6, seed: 2, eosTokenId: [] }))).toEqual(greedy);
  });

  test("choose(): top-k keeps the k best (ties at the k-th too), top-p the smallest set reaching p", () => {
    const logits = Float32Array.of(0, 3, 1, 3, 2, -1);
    const draws = (o: { topK?: number; topP?: number }, n = 2000) => {
      const random = seededRandom(11);
      const s = { temperature: 1, topK: o.topK ?? 6, topP: o.topP ?? 1, penalty: 1, random };
      const counts = new Array(6).fill(0);
      for (let i = 0; i < n; i++) counts[choose(logits, new Set(), s)]++;
      return counts;
    };
    // k = 1 keeps both 3s; k = 3 keeps 3, 3, 2
    expect(draws({ topK: 1 }).map((c) => c > 0)).toEqual([false, true, false, true, false, false]);
    expect(draws({ topK: 3 }).map((c) => c > 0)).toEqual([false, true, false, true, true, false]);
    // probabilities e^x / Z: the 3s 0.389 each, 2 0.143, 1 0.053, 0 0.019, -1 0.007; top-p drops the
    // least likely tokens while they add up to at most 1 - p (TopPLogitsWarper)
    expect(draws({ topP: 0.85 }).map((c) => c > 0)).toEqual([false, true, false, true, true, false]);
    expect(draws({ topP: 0.7 }).map((c) => c > 0)).toEqual([false, true, false, true, false, false]);
    expect(draws({ topP: 0.3 }).map((c) => c > 0)).toEqual([false, true, false, false, false, false]); // of equals, the first stays
    // without either, frequencies follow the softmax
    const all = draws({}, 20000);
    const z = Array.from(logits, Math.exp).reduce((a, b) => a + b, 0);
    all.forEach((c, i) => expect(Math.abs(c / 20000 - Math.exp(logits[i]) / z)).toBeLessThan(0.015));
  });

  test("choose(): the repetition penalty divides positive logits and multiplies negative ones of seen tokens", () => {
    const s = { temperature: 0, topK: 4, topP: 1, penalty: 2, random: seededRandom(1) };
    expect(choose(Float32Array.of(1, 3, 2.5, -1), new Set([1]), s)).toBe(2); // 3 / 2 = 1.5 < 2.5
    expect(choose(Float32Array.of(-3, -2.5, -4, -10), new Set([1]), s)).toBe(0); // -2.5 * 2 = -5 < -3
    expect(choose(Float32Array.of(1, 3, 2.5, -1), new Set([1]), { ...s, penalty: 1 })).toBe(1);
  });

  test("the repetition penalty in generate counts the prompt and the tokens so far", () => {
    // greedy by hand: full forwards, penalising every token of the sequence
    const seq = [...prompt];
    const want: number[] = [];
    for (let i = 0; i < 8; i++) {
      const logits = model.forward(seq, { lastOnly: true }).data;
      const t = choose(logits, new Set(seq), { temperature: 0, topK: 67, topP: 1, penalty: 1.8, random: seededRandom(0) });
      want.push(t);
      seq.push(t);
    }
    expect(list(model.generate(prompt, { maxNewTokens: 8, repetitionPenalty: 1.8, eosTokenId: [] }))).toEqual(want);
    expect(list(model.generate(prompt, { maxNewTokens: 8, eosTokenId: [] }))).not.toEqual(want);
  });
});

describe("streaming and stopping", () => {
  test("onToken streams every step; a finished sequence shows -1 and stops costing work", () => {
    const greedy = list(model.generate(batch, { attentionMask: mask, maxNewTokens: 10, eosTokenId: [] })) as number[][];
    // stop row 0 at its third token
    const eos = greedy[0][2];
    const steps: [number[], number][] = [];
    const got = list(
      model.generate(batch, { attentionMask: mask, maxNewTokens: 10, eosTokenId: eos, onToken: (t, step) => steps.push([Array.from(t), step]) }),
    ) as number[][];
    const cut = (r: number[]) => (r.includes(eos) ? r.slice(0, r.indexOf(eos) + 1) : r);
    expect(got).toEqual(greedy.map(cut));
    expect(steps.map(([, s]) => s)).toEqual(Array.from({ length: Math.max(...got.map((r) => r.length)) }, (_, i) => i));
    steps.forEach(([tokens, s]) => expect(tokens).toEqual(got.map((r) => (s < r.length ? r[s] : -1))));
  });

  test("one sequence: onToken gets one token; eosTokenId as a number, a list, or the config's by default", () => {
    const seen: number[] = [];
    const out = model.generate(prompt, { maxNewTokens: 5, eosTokenId: [], onToken: (t) => seen.push(...t) }) as Int32Array;
    expect(out).toBeInstanceOf(Int32Array);
    expect(seen).toEqual(Array.from(out));
    expect(list(model.generate(prompt, { maxNewTokens: 5, eosTokenId: [out[1], 66] }))).toEqual(Array.from(out.subarray(0, 2)));
    // the config's eos_token_id (1) when none is given: the same tokens here, as 1 does not come
    expect(Array.from(out)).not.toContain(1);
    expect(list(model.generate(prompt, { maxNewTokens: 5 }))).toEqual(Array.from(out));
    expect(list(model.generate(prompt, { maxNewTokens: 0 }))).toEqual([]);
  });

  test("errors name the option", () => {
    expect(() => model.generate(prompt, { maxNewTokens: -1 })).toThrow(/generate maxNewTokens: expected a non-negative integer, got number -1/);
    expect(() => model.generate(prompt, { temperature: -1 })).toThrow(/generate temperature: expected a finite number >= 0, got number -1/);
    expect(() => model.generate(prompt, { topK: 0 })).toThrow(/generate topK: expected a positive integer, got number 0/);
    expect(() => model.generate(prompt, { topP: 0 })).toThrow(/generate topP: expected a number in \(0, 1\], got number 0/);
    expect(() => model.generate(prompt, { repetitionPenalty: 0 })).toThrow(/generate repetitionPenalty: expected a finite number > 0, got number 0/);
    expect(() => model.generate(prompt, { eosTokenId: 67 })).toThrow(/generate eosTokenId: expected an integer from 0 to 66, got number 67/);
    expect(() => model.generate(prompt, { seed: 1.5 })).toThrow(/generate seed: expected an integer, got number 1.5/);
    expect(() => model.generate(prompt, { onToken: 1 as never })).toThrow(/generate onToken: expected a function, got number 1/);
    expect(() => model.generate(prompt, { maxTokens: 3 } as never)).toThrow(ArgumentError);
  });
});

test("an empty prompt is an error; maxNewTokens 0 returns nothing", () => {
  expect(() => model.generate([], { maxNewTokens: 3 })).toThrow(
    /generate inputIds: expected at least one token in each sequence to continue, got sequences of 0 tokens/,
  );
  expect(model.generate(ids2([[1], [2]]), { maxNewTokens: 0 })).toEqual([new Int32Array(0), new Int32Array(0)]);
});
