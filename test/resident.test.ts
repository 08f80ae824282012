import { beforeAll, describe, expect, test } from "vitest";
import { ArgumentError, ResidentTensor, StateError, init, memoryStats, residentTensor, scaledDotProductAttention, tensor } from "../src/index.js";
import { freshSeed, rng } from "./reference.js";

beforeAll(() => init());

describe("resident tensors", () => {
  test("give the same bits as plain tensors, and stay valid when the memory grows", () => {
    const r = rng(freshSeed());
    const q = tensor(r.floats(2 * 3 * 16), [2, 3, 16]);
    const k = tensor(r.floats(2 * 40 * 16), [2, 40, 16]);
    const rk = residentTensor(k.shape, k.data);
    const rq = residentTensor(q.shape, q.data);
    expect(rk).toBeInstanceOf(ResidentTensor);
    const before = rk.data;
    const big = residentTensor([(64 * 1024 * 1024) / 4]); // grows the memory: old views detach
    expect(before.length).toBe(0);
    expect(rk.data).toEqual(k.data);
    expect(scaledDotProductAttention(rq, rk, rk, { isCausal: true }).data).toEqual(scaledDotProductAttention(q, k, k, { isCausal: true }).data);
    big.dispose();
    rk.dispose();
    rq.dispose();
  });

  test("writing through data changes what the kernels read, with no copy per call", () => {
    const r = rng(freshSeed());
    const q = residentTensor([1, 8], r.floats(8));
    const kv = residentTensor([4, 8], r.floats(32));
    const first = scaledDotProductAttention(q, kv, kv).data;
    kv.data.set(r.floats(32));
    const second = scaledDotProductAttention(q, kv, kv).data;
    expect(second).not.toEqual(first);
    expect(scaledDotProductAttention(q, kv, kv).data).toEqual(
      scaledDotProductAttention(tensor(q.data.slice(), [1, 8]), tensor(kv.data.slice(), [4, 8]), tensor(kv.data.slice(), [4, 8])).data,
    );
    q.dispose();
    kv.dispose();
  });

  test("look-alikes (a Proxy of one, an object made from its prototype) are not resident tensors: an ArgumentError naming the argument", () => {
    const q = tensor(rng(1).floats(2 * 3 * 16), [2, 3, 16]);
    const real = residentTensor(q.shape, q.data);
    const fakes = [new Proxy(real, {}), Object.create(ResidentTensor.prototype, { shape: { value: [2, 3, 16] } })];
    for (const fake of fakes) {
      expect(() => scaledDotProductAttention(q, fake, q)).toThrow(ArgumentError);
      expect(() => scaledDotProductAttention(q, fake, q)).toThrow(
        /^key: expected a tensor \{ data: Float32Array, shape \}, got .* whose properties throw \(TypeError/,
      );
    }
    real.dispose();
  });

  test("dispose frees the memory; use after dispose is a StateError", () => {
    const live = memoryStats().liveBytes;
    const t = residentTensor([10, 10]);
    expect(memoryStats().liveBytes).toBe(live + 400);
    expect(Array.from(t.data.subarray(0, 3))).toEqual([0, 0, 0]);
    t.dispose();
    expect(memoryStats().liveBytes).toBe(live);
    expect(() => t.data).toThrow(StateError);
    expect(() => scaledDotProductAttention(t, t, t)).toThrow(/disposed/);
    t.dispose();
  });

  test("bad shapes and data lengths are errors", () => {
    expect(() => residentTensor([2, -1])).toThrow(/residentTensor shape\[1\]: expected a non-negative integer, got number -1/);
    expect(() => residentTensor([2, 2], [1, 2, 3])).toThrow(/residentTensor data: expected 4 elements \(shape \[2, 2\]\), got 3/);
  });
});
