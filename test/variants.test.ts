// Attention variants reached through MultiHeadAttention and the transformer layers: with identity
// projections, MultiHeadAttention is scaledDotProductAttention on the split heads, so each variant
// must give what the functional API gives; decoding with a cache must equal the full forward.
import { beforeAll, describe, expect, test } from "vitest";
import * as lib from "../src/index.js";
import { attentionRef, expectClose, freshSeed, rng } from "./reference.js";

beforeAll(() => lib.init());

const [B, L, H, hd] = [2, 37, 2, 8];
const E = H * hd;
const eye = (n: number) => Float32Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0));

function identityMha(attention: lib.AttentionVariant) {
  const m = new lib.MultiHeadAttention({ embedDim: E, numHeads: H, bias: false, attention });
  const inProj = new Float32Array(3 * E * E);
  for (let i = 0; i < 3; i++) inProj.set(eye(E), i * E * E);
  return m.loadStateDict({ in_proj_weight: lib.tensor(inProj, [3 * E, E]), "out_proj.weight": lib.tensor(eye(E), [E, E]) });
}
// [B, L, H * hd] <-> [B, H, L, hd]
const split = (x: Float32Array) =>
  Float32Array.from({ length: x.length }, (_, n) => {
    const d = n % hd,
      l = Math.floor(n / hd) % L,
      h = Math.floor(n / (hd * L)) % H,
      b = Math.floor(n / (hd * L * H));
    return x[(b * L + l) * E + h * hd + d];
  });
const merge = (x: Float32Array) =>
  Float32Array.from({ length: x.length }, (_, n) => {
    const c = n % E,
      l = Math.floor(n / E) % L,
      b = Math.floor(n / (E * L));
    return x[((b * H + Math.floor(c / hd)) * L + l) * hd + (c % hd)];
  });

describe("MultiHeadAttention variants equal scaledDotProductAttention's", () => {
  const variants: [string, lib.AttentionVariant, boolean][] = [
    ["sliding window", { window: [5, 2] }, false],
    ["dilated window, causal", { window: [9, 9], dilation: 2 }, true],
    ["ALiBi, causal", { alibi: true }, true],
    ["soft-cap", { softcap: 2 }, false],
    ["RoPE (interleaved), causal", { rope: { interleaved: true, theta: 1000 } }, true],
    ["block-sparse BigBird", { blockSparse: { pattern: "bigbird", window: 1, global: 1, random: 1, seed: 9, blockSize: 8 } }, false],
    ["everything at once", { window: [16, 16], alibi: [0.3, 0.1], softcap: 4, rope: { rotaryDim: 4 } }, true],
  ];
  for (const [name, attention, causal] of variants) {
    test(name, () => {
      const r = rng(freshSeed());
      const x = lib.tensor(r.floats(B * L * E, 2), [B, L, E]);
      const mha = identityMha(attention);
      const { output } = mha.forward(x, x, x, { isCausal: causal, needWeights: false });
      const h = lib.tensor(split(x.data), [B, H, L, hd]);
      const { blockSparse, ...rest } = attention;
      const { blockSize, ...pattern } = blockSparse ?? { blockSize: 8 };
      const sdpa = lib.scaledDotProductAttention(h, h, h, {
        ...rest,
        isCausal: causal && !rest.window,
        window: rest.window && causal ? [rest.window[0], 0] : rest.window,
        blockSparse: blockSparse ? { layout: lib.blockSparseLayout(L, L, blockSize, pattern as lib.BlockSparsePattern), blockSize } : undefined,
      });
      expectClose(output.data, merge(sdpa.data), [B, L, E], { atol: 1e-5, rtol: 1e-5 });
    });
  }

  test("linear attention by option equals linearAttention on the split heads, causal or not", () => {
    const r = rng(freshSeed());
    const x = lib.tensor(r.floats(B * L * E), [B, L, E]);
    const h = lib.tensor(split(x.data), [B, H, L, hd]);
    for (const causal of [false, true]) {
      const { output, weights } = identityMha({ linear: { featureMap: "relu" } }).forward(x, x, x, { isCausal: causal });
      expect(weights).toBeNull();
      expectClose(output.data, merge(lib.linearAttention(h, h, h, { causal, featureMap: "relu" }).data), [B, L, E], { atol: 1e-5, rtol: 1e-5 });
    }
  });

  test("global tokens by forward option equal scaledDotProductAttention's, and the float64 reference with the equivalent mask", () => {
    const r = rng(freshSeed());
    const x = lib.tensor(r.floats(B * L * E), [B, L, E]);
    const h = lib.tensor(split(x.data), [B, H, L, hd]);
    // the equivalent mask: the band of the window, every global key, every key for a global query
    const allowed = (window: number, global: number[]) => (i: number, j: number) =>
      Math.abs(i - j) <= window || global.includes(i) || global.includes(j);
    const keep = (ok: (i: number, j: number) => boolean) => Uint8Array.from({ length: L * L }, (_, n) => (ok(Math.floor(n / L), n % L) ? 1 : 0));
    const { output } = identityMha({ window: [3, 3] }).forward(x, x, x, { globalTokens: [0, 20], needWeights: false });
    const sdpa = lib.scaledDotProductAttention(h, h, h, { window: [3, 3], globalTokens: [0, 20] });
    expectClose(output.data, merge(sdpa.data), [B, L, E], { atol: 1e-5, rtol: 1e-5 });
    const ref = attentionRef(
      h.data,
      h.data,
      h.data,
      { batch: [B], Hq: H, Hk: H, Lq: L, Lk: L, E: hd, Ev: hd },
      { mask: { data: keep(allowed(3, [0, 20])), shape: [L, L] } },
    );
    expectClose(sdpa.data, ref.out, [B, H, L, hd], { atol: 2e-6, rtol: 1e-5 }, "scaledDotProductAttention with globalTokens");

    // an encoder layer with a window and a global token equals the same weights without the window,
    // given the equivalent mask (the modules' convention: true = NOT allowed)
    const layer = { dModel: E, nhead: H, dimFeedforward: 16 };
    const enc = new lib.TransformerEncoder({ layer: { ...layer, attention: { window: [4, 4] } }, numLayers: 1 });
    const dense = new lib.TransformerEncoder({ layer, numLayers: 1 });
    const dict = Object.fromEntries(
      enc.params().map((p) => [
        p.key,
        lib.tensor(
          r.floats(
            p.shape.reduce((a, b) => a * b, 1),
            0.3,
          ),
          p.shape,
        ),
      ]),
    );
    enc.loadStateDict(dict);
    dense.loadStateDict(dict);
    const mask = lib.tensor(
      keep(allowed(4, [1])).map((k) => 1 - k),
      [L, L],
    );
    expectClose(
      enc.forward(x, { globalTokens: [1] }).data,
      dense.forward(x, { mask }).data,
      [B, L, E],
      { atol: 1e-5, rtol: 1e-5 },
      "encoder with globalTokens",
    );
    expect(() => enc.forward(x, { globalTokens: [1], isCausal: true })).toThrow(/globalTokens: not together with isCausal/);
    enc.dispose();
    dense.dispose();
  });

  test("a linear-attention stack decodes with a cache exactly as its full causal forward", () => {
    const r = rng(freshSeed());
    const enc = new lib.TransformerEncoder({
      layer: { dModel: E, nhead: H, dimFeedforward: 32, attention: { linear: true, rope: {} } },
      numLayers: 2,
    });
    enc.loadStateDict(
      Object.fromEntries(
        enc.params().map((p) => [
          p.key,
          lib.tensor(
            r.floats(
              p.shape.reduce((a, b) => a * b, 1),
              0.4,
            ),
            p.shape,
          ),
        ]),
      ),
    );
    const x = lib.tensor(r.floats(L * E), [1, L, E]);
    const full = enc.forward(x, { isCausal: true });
    const cache = new lib.KVCache();
    const got = new Float32Array(L * E);
    for (const [a, b] of [
      [0, 5],
      [5, 6],
      [6, L],
    ])
      got.set(enc.forward(lib.tensor(x.data.slice(a * E, b * E), [1, b - a, E]), { isCausal: true, cache }).data, a * E);
    expectClose(got, full.data, [1, L, E], { atol: 1e-5, rtol: 1e-4 });
    expect(() => enc.forward(x, { srcKeyPaddingMask: lib.tensor(new Uint8Array(L), [1, L]) })).toThrow(
      /MultiHeadAttention masks: not together with linear attention/,
    );
    expect(() => new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2, attention: { linear: true, window: [1, 1] } })).toThrow(
      /attention.window: not together with linear attention/,
    );
  });

  test("a layer stack with RoPE, ALiBi and a window decodes with a cache exactly as its full causal forward", () => {
    const r = rng(freshSeed());
    const enc = new lib.TransformerEncoder({
      layer: { dModel: E, nhead: H, dimFeedforward: 32, attention: { rope: {}, alibi: true, window: [6, 6] } },
      numLayers: 2,
    });
    enc.loadStateDict(
      Object.fromEntries(
        enc.params().map((p) => [
          p.key,
          lib.tensor(
            r.floats(
              p.shape.reduce((a, b) => a * b, 1),
              0.4,
            ),
            p.shape,
          ),
        ]),
      ),
    );
    const x = lib.tensor(r.floats(L * E), [1, L, E]);
    const full = enc.forward(x, { isCausal: true });
    const cache = new lib.KVCache();
    const got = new Float32Array(L * E);
    for (const [a, b] of [
      [0, 10],
      [10, 11],
      [11, 12],
      [12, L],
    ])
      got.set(enc.forward(lib.tensor(x.data.slice(a * E, b * E), [1, b - a, E]), { isCausal: true, cache }).data, a * E);
    expectClose(got, full.data, [1, L, E], { atol: 1e-5, rtol: 1e-4 });
  });

  test("bad variants are rejected at construction", () => {
    expect(() => new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2, attention: { rope: { rotaryDim: 6 } } })).toThrow(
      /rope.rotaryDim: expected an even integer from 2 to E = 4/,
    );
    expect(() => new lib.TransformerEncoderLayer({ dModel: 8, nhead: 2, attention: { windw: [1, 1] } as never })).toThrow(/unknown option "windw"/);
    expect(
      () => new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2, attention: { blockSparse: { pattern: "strided", stride: 2, blockSize: 5 } } }),
    ).toThrow(/blockSize: expected a positive multiple of 8/);
  });
});
