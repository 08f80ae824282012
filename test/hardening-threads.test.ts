// Issue #10, threads at large batches: a decode step of a few hundred sequences (thousands of
// (sequence, head) tasks in one dispatch) works on two threads and gives the bits of one thread.
// Two copies of the library, as in test/threads.test.ts: one on one thread, one on two.
import { afterAll, describe, expect, test } from "vitest";
import { freshLibrary } from "./support/fresh.js";
import { rng } from "./reference.js";

const fresh = freshLibrary;

const one = await fresh();
await one.init({ threads: 1, simd: "baseline" });
const two = await fresh();
await two.init({ threads: 2, simd: "baseline" });
afterAll(() => two.shutdown());

const bits = (x: Float32Array) => Array.from(new Uint32Array(x.slice().buffer));
const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

describe("two threads at large batches give the bits of one thread", () => {
  test("runs on two threads", () => {
    expect(two.runtimeInfo().threads).toBe(2);
  });

  test("MultiHeadAttention, 12 heads: prefill then a decode step at batch 400 ([400, 1, E] query, KV cache)", () => {
    const r = rng(400);
    const options = { embedDim: 96, numHeads: 12 };
    const [a, b] = [new one.MultiHeadAttention(options), new two.MultiHeadAttention(options)];
    const dict = Object.fromEntries(a.params().map((p) => [p.key, one.tensor(r.floats(size([...p.shape]), 0.2), p.shape)]));
    a.loadStateDict(dict);
    b.loadStateDict(dict);
    const [ca, cb] = [new one.KVCache(), new two.KVCache()];
    const prefill = one.tensor(r.floats(400 * 3 * 96), [400, 3, 96]);
    const step = one.tensor(r.floats(400 * 96), [400, 1, 96]);
    for (const x of [prefill, step]) {
      const want = a.forward(x, x, x, { isCausal: true, cache: ca, needWeights: false }).output.data;
      const got = b.forward(x, x, x, { isCausal: true, cache: cb, needWeights: false }).output.data;
      expect(bits(got)).toEqual(bits(want));
    }
  });

  test("MultiHeadAttention without a cache: [300, 1, E] query over [300, 40, E] keys, 12 heads, with weights", () => {
    const r = rng(300);
    const options = { embedDim: 48, numHeads: 12 };
    const [a, b] = [new one.MultiHeadAttention(options), new two.MultiHeadAttention(options)];
    const dict = Object.fromEntries(a.params().map((p) => [p.key, one.tensor(r.floats(size([...p.shape]), 0.2), p.shape)]));
    a.loadStateDict(dict);
    b.loadStateDict(dict);
    const q = one.tensor(r.floats(300 * 48), [300, 1, 48]);
    const kv = one.tensor(r.floats(300 * 40 * 48), [300, 40, 48]);
    const want = a.forward(q, kv, kv, { averageAttnWeights: false });
    const got = b.forward(q, kv, kv, { averageAttnWeights: false });
    expect(bits(got.output.data)).toEqual(bits(want.output.data));
    expect(bits(got.weights!.data)).toEqual(bits(want.weights!.data));
  });

  test("scaledDotProductAttention with B * H = 4100 (one query each)", () => {
    const r = rng(4100);
    const q = one.tensor(r.floats(1 * 4100 * 1 * 8), [1, 4100, 1, 8]);
    const k = one.tensor(r.floats(1 * 4100 * 5 * 8), [1, 4100, 5, 8]);
    expect(bits(two.scaledDotProductAttention(q, k, k).data)).toEqual(bits(one.scaledDotProductAttention(q, k, k).data));
  });

  test("scaledDotProductAttention with more tasks than one dispatch holds (B * H = 70,000), causal, with weights", () => {
    const r = rng(70000);
    const q = one.tensor(r.floats(70000 * 2 * 4), [70000, 2, 4]);
    const want = one.scaledDotProductAttention(q, q, q, { isCausal: true, returnWeights: true });
    const got = two.scaledDotProductAttention(q, q, q, { isCausal: true, returnWeights: true });
    expect(bits(got.output.data)).toEqual(bits(want.output.data));
    expect(bits(got.weights.data)).toEqual(bits(want.weights.data));
  });

  test("the pool still works after those calls (memory flat)", () => {
    const r = rng(7);
    const q = one.tensor(r.floats(4 * 64 * 16), [4, 64, 16]);
    two.scaledDotProductAttention(q, q, q);
    const before = two.memoryStats();
    expect(bits(two.scaledDotProductAttention(q, q, q).data)).toEqual(bits(one.scaledDotProductAttention(q, q, q).data));
    expect(two.memoryStats()).toEqual(before);
  });
});
