import { beforeAll, expect, test } from "vitest";
import { type AttentionOptions, type BoolTensor, type Tensor, init, scaledDotProductAttention } from "../src/index.js";
import { type Stored, decode, fixture } from "./fixtures.js";
import { expectClose } from "./reference.js";

interface Case {
  name: string;
  query: Stored;
  key: Stored;
  value: Stored;
  mask?: Stored;
  options: AttentionOptions;
  output: Stored;
  weights: Stored;
}

const { torch, cases } = fixture<{ torch: string; cases: Case[] }>("sdpa.json");
const f32 = (s: Stored): Tensor => ({ data: decode(s) as Float32Array, shape: s.shape });

beforeAll(() => init());

test(`fixtures come from PyTorch (${torch}) and cover ${cases.length} cases`, () => {
  expect(cases.length).toBeGreaterThanOrEqual(14);
});

for (const c of cases) {
  test(`matches PyTorch: ${c.name}`, () => {
    const attnMask = c.mask && ({ data: decode(c.mask), shape: c.mask.shape } as Tensor | BoolTensor);
    const { output, weights } = scaledDotProductAttention(f32(c.query), f32(c.key), f32(c.value), { ...c.options, attnMask, returnWeights: true });
    expect(output.shape).toEqual(c.output.shape);
    expect(weights.shape).toEqual(c.weights.shape);
    expectClose(output.data, decode(c.output), c.output.shape, { atol: 2e-6, rtol: 1e-5 }, "output");
    expectClose(weights.data, decode(c.weights), c.weights.shape, { atol: 2e-6, rtol: 1e-5 }, "weights");
  });
}
