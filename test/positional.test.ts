// Positional schemes and score shaping inside the kernel: dilated windows, soft-capping, ALiBi,
// RoPE (both layouts, partial, offset), sinusoidal embeddings; each against a plain reference.
import { beforeAll, describe, expect, test } from "vitest";
import { alibiSlopes, init, scaledDotProductAttention, sinusoidalPositions, tensor } from "../src/index.js";
import { type Dims, attentionRef, expectClose, freshSeed, rng } from "./reference.js";

beforeAll(() => init());
const TOL = { atol: 2e-6, rtol: 1e-5 };

function problem(dims: Dims, scale = 1) {
  const r = rng(freshSeed());
  const { batch, Hq, Hk, Lq, Lk, E, Ev } = dims;
  const n = (...s: number[]) => [...batch, ...s].reduce((a, b) => a * b, 1);
  return {
    q: tensor(r.floats(n(Hq, Lq, E), 2 * scale), [...batch, Hq, Lq, E]),
    k: tensor(r.floats(n(Hk, Lk, E), 2 * scale), [...batch, Hk, Lk, E]),
    v: tensor(r.floats(n(Hk, Lk, Ev)), [...batch, Hk, Lk, Ev]),
  };
}
const dims = (Hq: number, Hk: number, Lq: number, Lk: number, E: number): Dims => ({ batch: [2], Hq, Hk, Lq, Lk, E, Ev: E });

describe("score shaping in the kernel", () => {
  test("dilated sliding window", () => {
    const d = dims(2, 2, 70, 70, 8);
    const { q, k, v } = problem(d);
    const out = scaledDotProductAttention(q, k, v, { window: [12, 12], dilation: 3 });
    expectClose(out.data, attentionRef(q.data, k.data, v.data, d, { window: [12, 12], dilation: 3 }).out, out.shape, TOL);
  });

  test("soft-capping, with a causal window", () => {
    const d = dims(2, 2, 33, 33, 16);
    const { q, k, v } = problem(d, 10); // large scores, so the cap matters
    const out = scaledDotProductAttention(q, k, v, { softcap: 5, window: [8, 0] });
    expectClose(out.data, attentionRef(q.data, k.data, v.data, d, { softcap: 5, window: [8, 0] }).out, out.shape, TOL);
  });

  test("ALiBi with the standard slopes, causal, GQA, and with explicit slopes", () => {
    const d = dims(6, 2, 40, 40, 8);
    const { q, k, v } = problem(d);
    const out = scaledDotProductAttention(q, k, v, { alibi: true, isCausal: true, enableGqa: true });
    expectClose(out.data, attentionRef(q.data, k.data, v.data, d, { slopes: alibiSlopes(6), causalOffset: 0 }).out, out.shape, TOL);
    const slopes = [0.5, 0.25, 0.1, 0.05, 0.01, 0];
    const out2 = scaledDotProductAttention(q, k, v, { alibi: slopes, enableGqa: true });
    expectClose(out2.data, attentionRef(q.data, k.data, v.data, d, { slopes }).out, out2.shape, TOL);
  });

  test("ALiBi slopes: powers of two and the rest (Press et al.)", () => {
    expect(alibiSlopes(8)).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((h) => 2 ** -h));
    expect(alibiSlopes(4)).toEqual([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8]);
    // 6 heads: the 4 slopes of 4 heads, then slopes 1 and 3 of 8 heads
    expect(alibiSlopes(6)).toEqual([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]);
  });
});

// RoPE in float64: the first rot dims of each row rotate by (offset + row) * theta^(-2i / rot)
function ropeRef(
  x: Float32Array,
  rows: number,
  L: number,
  E: number,
  rot: number,
  offset: number,
  theta: number,
  interleaved: boolean,
): Float32Array {
  const out = x.slice();
  for (let r = 0; r < rows; r++) {
    const pos = offset + (r % L);
    for (let i = 0; i < rot / 2; i++) {
      const angle = pos * theta ** ((-2 * i) / rot);
      const [a, b] = interleaved ? [2 * i, 2 * i + 1] : [i, i + rot / 2];
      const [x0, x1] = [x[r * E + a], x[r * E + b]];
      out[r * E + a] = x0 * Math.cos(angle) - x1 * Math.sin(angle);
      out[r * E + b] = x1 * Math.cos(angle) + x0 * Math.sin(angle);
    }
  }
  return out;
}

describe("RoPE", () => {
  const cases: [string, { theta?: number; interleaved?: boolean; rotaryDim?: number; positionOffset?: number }, boolean][] = [
    ["GPT-NeoX layout", {}, false],
    ["interleaved (LLaMA), theta 500000", { interleaved: true, theta: 500000 }, false],
    ["partial rotary dims", { rotaryDim: 8 }, false],
    ["position offset with bottom-right decoding", { positionOffset: 7 }, true],
  ];
  for (const [name, rope, decode] of cases) {
    test(name, () => {
      const d = decode ? dims(2, 2, 1, 13, 16) : dims(2, 2, 9, 9, 16);
      const { q, k, v } = problem(d);
      const qCopy = q.data.slice();
      const out = scaledDotProductAttention(q, k, v, { rope, isCausal: true, causalAlignment: decode ? "bottom-right" : "top-left" });
      expect(q.data).toEqual(qCopy); // rotated in a copy
      const rot = rope.rotaryDim ?? 16;
      const offset = rope.positionOffset ?? 0;
      const qr = ropeRef(q.data, 2 * 2 * d.Lq, d.Lq, 16, rot, offset + (decode ? d.Lk - d.Lq : 0), rope.theta ?? 10000, rope.interleaved ?? false);
      const kr = ropeRef(k.data, 2 * 2 * d.Lk, d.Lk, 16, rot, offset, rope.theta ?? 10000, rope.interleaved ?? false);
      const ref = attentionRef(qr, kr, v.data, d, { causalOffset: decode ? d.Lk - d.Lq : 0 });
      expectClose(out.data, ref.out, out.shape, { atol: 1e-5, rtol: 1e-4 });
    });
  }

  test("errors", () => {
    const { q } = problem(dims(1, 1, 2, 2, 6));
    expect(() => scaledDotProductAttention(q, q, q, { rope: { rotaryDim: 5 } })).toThrow(
      /rope.rotaryDim: expected an even integer from 2 to E = 6, got number 5/,
    );
    expect(() => scaledDotProductAttention(q, q, q, { rope: { base: 3 } as never })).toThrow(/expected only "theta".*, got unknown option "base"/);
    expect(() => scaledDotProductAttention(q, q, q, { alibi: [1, 2] })).toThrow(
      /alibi: expected true or 1 finite slopes \(one per query head\), got 2 values/,
    );
    expect(() => scaledDotProductAttention(q, q, q, { dilation: 2 })).toThrow(
      /dilation: expected 1 without a window \(a dilated sliding window needs one\), got number 2/,
    );
    expect(() => scaledDotProductAttention(q, q, q, { softcap: -1 })).toThrow(/softcap: expected a finite number > 0/);
  });
});

test("sinusoidal position embeddings", () => {
  const pe = sinusoidalPositions(50, 6, { offset: 3 });
  expect(pe.shape).toEqual([50, 6]);
  for (const [p, i] of [
    [0, 0],
    [0, 1],
    [10, 4],
    [49, 5],
  ]) {
    const angle = (p + 3) / 10000 ** ((2 * Math.floor(i / 2)) / 6);
    expect(pe.data[p * 6 + i]).toBeCloseTo(i % 2 ? Math.cos(angle) : Math.sin(angle), 6);
  }
  expect(() => sinusoidalPositions(-1, 4)).toThrow(/sinusoidalPositions L: expected an integer >= 0, got number -1/);
});
