// Tensors of other libraries where a tensor is taken: onnxruntime-web's and transformers.js's
// `{ data, dims, type }` (float32 accepted as is; another type named with the fix), and booleans.
import { Tensor as OrtTensor } from "onnxruntime-web";
import { beforeAll, describe, expect, test } from "vitest";
import { ArgumentError, Linear, init, scaledDotProductAttention, tensor } from "../src/index.js";
import { rng } from "./reference.js";

beforeAll(() => init());

describe("onnxruntime-web / transformers.js tensors", () => {
  test("a float32 one is read like { data, shape: dims }", () => {
    const r = rng(4);
    const data = r.floats(2 * 3 * 5 * 4, 1);
    const ours = tensor(data, [2, 3, 5, 4]);
    const theirs = new OrtTensor("float32", data, [2, 3, 5, 4]);
    expect(Array.from(scaledDotProductAttention(theirs as never, theirs as never, theirs as never).data)).toEqual(
      Array.from(scaledDotProductAttention(ours, ours, ours).data),
    );
    const m = new Linear({ inFeatures: 4, outFeatures: 2 }).loadStateDict({
      weight: tensor(r.floats(8, 1), [2, 4]),
      bias: tensor(r.floats(2, 1), [2]),
    });
    expect(m.forward(theirs as never).shape).toEqual([2, 3, 5, 2]);
  });

  test("a boolean one is a mask", () => {
    const q = tensor(rng(5).floats(3 * 4, 1), [3, 4]);
    const keep = [true, false, true, true, true, false, false, true, true];
    const ours = scaledDotProductAttention(q, q, q, { attnMask: tensor(keep, [3, 3]) });
    const theirs = scaledDotProductAttention(q, q, q, { attnMask: new OrtTensor("bool", Uint8Array.from(keep, Number), [3, 3]) as never });
    expect(Array.from(theirs.data)).toEqual(Array.from(ours.data));
  });

  test("another type is an ArgumentError that names the fix", () => {
    const ids = new OrtTensor("int64", new BigInt64Array(4), [2, 2]);
    expect(() => scaledDotProductAttention(ids as never, ids as never, ids as never)).toThrow(ArgumentError);
    expect(() => scaledDotProductAttention(ids as never, ids as never, ids as never)).toThrow(
      /query.type: expected "float32" \(an onnxruntime-web \/ transformers.js tensor of Float32Array data\), got string int64/,
    );
  });
});

describe("JavaScript arrays of booleans", () => {
  test("tensor() of booleans makes a boolean mask, so a causal mask written as booleans masks", () => {
    const q = tensor(rng(6).floats(4 * 2, 1), [4, 2]);
    const causal = Array.from({ length: 16 }, (_, n) => n % 4 <= Math.floor(n / 4));
    const m = tensor(causal, [4, 4]);
    expect(m.data).toBeInstanceOf(Uint8Array);
    expect(Array.from(scaledDotProductAttention(q, q, q, { attnMask: m }).data)).toEqual(
      Array.from(scaledDotProductAttention(q, q, q, { isCausal: true }).data),
    );
  });

  test("booleans mixed with numbers are an ArgumentError", () => {
    expect(() => tensor([true, 0, 1, false] as never, [4])).toThrow(
      /tensor data: expected numbers, or booleans for a mask .*, got an Array that mixes both/,
    );
  });
});
