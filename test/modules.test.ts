import { beforeAll, describe, expect, test } from "vitest";
import {
  ArgumentError,
  KVCache,
  LayerNorm,
  Linear,
  MultiHeadAttention,
  ShapeError,
  StateError,
  type Tensor,
  TransformerDecoder,
  TransformerEncoder,
  init,
  memoryStats,
  tensor,
} from "../src/index.js";
import { expectClose, freshSeed, mhaRef, rng } from "./reference.js";

beforeAll(() => init());

type R = ReturnType<typeof rng>;

// a state dict of random tensors for every parameter a module declares
function randomDict(m: { params(): { key: string; shape: readonly number[] }[] }, r: R, prefix = ""): Record<string, Tensor> {
  return Object.fromEntries(
    m.params().map((p) => [
      prefix + p.key,
      tensor(
        r.floats(
          p.shape.reduce((a, b) => a * b, 1),
          0.5,
        ),
        p.shape,
      ),
    ]),
  );
}

describe("LayerNorm vs the float64 reference", () => {
  for (const N of [1, 3, 4, 5, 67, 768]) {
    test(`N=${N}`, () => {
      const r = rng(freshSeed());
      const ln = new LayerNorm({ normalizedShape: N, eps: 1e-5 });
      const dict = randomDict(ln, r);
      ln.loadStateDict(dict);
      const x = tensor(
        r.floats(3 * N, 4).map((v, i) => v + (i % 7)),
        [3, N],
      );
      const got = ln.forward(x);
      const want = new Float64Array(3 * N);
      for (let i = 0; i < 3; i++) {
        const row = Array.from(x.data.subarray(i * N, (i + 1) * N));
        const mean = row.reduce((a, b) => a + b, 0) / N;
        const v = row.reduce((a, b) => a + (b - mean) ** 2, 0) / N;
        row.forEach((xv, j) => (want[i * N + j] = ((xv - mean) / Math.sqrt(v + 1e-5)) * dict.weight.data[j] + dict.bias.data[j]));
      }
      expectClose(got.data, want, [3, N], { atol: 2e-5, rtol: 1e-5 });
    });
  }
});

describe("MultiHeadAttention with grouped-query heads (numKvHeads)", () => {
  for (const [H, Hk] of [
    [4, 2],
    [6, 1],
    [4, 4],
  ]) {
    test(`${H} query heads, ${Hk} key/value heads`, () => {
      const r = rng(freshSeed());
      const E = 24;
      const m = new MultiHeadAttention({ embedDim: E, numHeads: H, numKvHeads: Hk });
      const dict = randomDict(m, r);
      m.loadStateDict(dict);
      const [B, L] = [2, 9];
      const x = tensor(r.floats(B * L * E), [B, L, E]);
      const { output, weights } = m.forward(x, x, x, { averageAttnWeights: false });
      const ref = mhaRef(x.data, x.data, dict, { B, Lq: L, Lk: L, E, H, Hk });
      expectClose(weights!.data, ref.weights, [B, H, L, L], { atol: 1e-5, rtol: 1e-4 }, "weights");
      const want = ref.out;
      expectClose(output.data, want, [B, L, E], { atol: 1e-5, rtol: 1e-4 }, "output");
    });
  }
});

describe("state dicts and the module lifecycle", () => {
  test("missing and misshapen keys are all named; nothing is loaded", () => {
    const r = rng(freshSeed());
    const m = new MultiHeadAttention({ embedDim: 8, numHeads: 2 });
    const dict = randomDict(m, r, "layers.3.self_attn.");
    delete dict["layers.3.self_attn.out_proj.bias"];
    dict["layers.3.self_attn.in_proj_bias"] = tensor(new Float32Array(23), [23]);
    expect(() => m.loadStateDict(dict, "layers.3.self_attn.")).toThrow(ShapeError);
    expect(() => m.loadStateDict(dict, "layers.3.self_attn.")).toThrow(
      /"layers.3.self_attn.in_proj_bias" has shape \[23\], expected \[24\]; missing "layers.3.self_attn.out_proj.bias" \[8\]/,
    );
    const x = tensor(new Float32Array(8), [1, 8]);
    expect(() => m.forward(x, x, x)).toThrow(StateError);
    expect(() => m.forward(x, x, x)).toThrow(/has no weights: call loadStateDict\(\) first/);
  });

  test("a tensor of the wrong type is named; unrelated keys are ignored", () => {
    const r = rng(freshSeed());
    const lin = new Linear({ inFeatures: 3, outFeatures: 2 });
    const dict: Record<string, Tensor> = { ...randomDict(lin, r), "other.weight": tensor(new Float32Array(1), [1]) };
    lin.loadStateDict(dict, "", { strict: false });
    expect(() => lin.loadStateDict({ ...dict, weight: { data: new Float64Array(6), shape: [2, 3] } as never })).toThrow(
      /state dict "weight": expected data of type Float32Array, got Float64Array/,
    );
  });

  test("bad constructor options", () => {
    expect(() => new MultiHeadAttention({ embedDim: 10, numHeads: 3 })).toThrow(
      /MultiHeadAttention embedDim: expected a multiple of numHeads \(3\), got number 10/,
    );
    expect(() => new MultiHeadAttention({ embedDim: 8, numHeads: 4, numKvHeads: 3 })).toThrow(
      /MultiHeadAttention numHeads: expected a multiple of numKvHeads \(3\), got number 4/,
    );
    expect(() => new MultiHeadAttention({ embedDim: 8, numHeads: 2, batchFirst: true } as never)).toThrow(/unknown option "batchFirst"/);
    expect(() => new TransformerEncoder({ layer: { dModel: 8, nhead: 2, activation: "swish" as never }, numLayers: 1 })).toThrow(
      /TransformerEncoderLayer activation: expected "relu", "gelu" or "gelu-tanh", got string swish/,
    );
    expect(() => new Linear({ inFeatures: 0, outFeatures: 2 })).toThrow(ArgumentError);
  });

  test("dispose frees the weights; use after dispose is a StateError", () => {
    const r = rng(freshSeed());
    const before = memoryStats().liveBytes;
    const enc = new TransformerEncoder({ layer: { dModel: 8, nhead: 2, dimFeedforward: 16 }, numLayers: 2, norm: true });
    enc.loadStateDict(randomDict(enc, r));
    expect(memoryStats().liveBytes).toBeGreaterThan(before);
    enc.dispose();
    expect(memoryStats().liveBytes).toBe(before);
    expect(() => enc.forward(tensor(new Float32Array(8), [1, 8]))).toThrow(/was disposed/);
    enc.dispose(); // twice is fine
  });

  test("a float key padding mask with -Infinity equals the boolean one; a fully padded sequence gives zero weights, not NaN", () => {
    const r = rng(freshSeed());
    const m = new MultiHeadAttention({ embedDim: 8, numHeads: 2 });
    const dict = randomDict(m, r);
    m.loadStateDict(dict);
    const x = tensor(r.floats(2 * 4 * 8), [2, 4, 8]);
    const pad = Uint8Array.from([0, 0, 1, 1, 1, 1, 1, 1]); // batch 1 is all padding
    const asBool = m.forward(x, x, x, { keyPaddingMask: tensor(pad, [2, 4]) });
    const asFloat = m.forward(x, x, x, {
      keyPaddingMask: tensor(
        Float32Array.from(pad, (p) => (p ? -Infinity : 0)),
        [2, 4],
      ),
    });
    expect(asFloat.output.data).toEqual(asBool.output.data);
    expect(Array.from(asBool.weights!.data.subarray(16))).toEqual(new Array(16).fill(0));
    // no key takes part: the attention is zeros, so the output is out_proj's bias
    for (let i = 0; i < 4; i++)
      expectClose(asBool.output.data.subarray(32 + i * 8, 40 + i * 8), dict["out_proj.bias"].data, [8], { atol: 1e-6, rtol: 1e-6 });
  });

  test("a wrong input shape names the argument", () => {
    const r = rng(freshSeed());
    const m = new MultiHeadAttention({ embedDim: 8, numHeads: 2, kdim: 5 });
    m.loadStateDict(randomDict(m, r));
    const q = tensor(new Float32Array(2 * 3 * 8), [2, 3, 8]);
    expect(() => m.forward(q, q, q)).toThrow(/key: expected \[2, 3, 5\] to go with query \[2, 3, 8\], got \[2, 3, 8\]/);
    expect(() => m.forward(q, tensor(new Float32Array(10), [2, 1, 5]), q)).toThrow(/value: expected \[2, 3, 8\]|value: expected 1 positions/);
    expect(() =>
      m.forward(q, tensor(new Float32Array(10), [2, 1, 5]), tensor(new Float32Array(16), [2, 1, 8]), { attnMask: tensor(new Uint8Array(4), [2, 2]) }),
    ).toThrow(/attnMask: expected \[3, 1\] or \[4, 3, 1\]/);
  });
});

describe("decoding with a KV cache equals the full causal forward", () => {
  const E = 16;
  const layer = { dModel: E, nhead: 4, dimFeedforward: 32, activation: "gelu" as const };

  function steps(x: Tensor, B: number, L: number, split: number[], f: (chunk: Tensor) => Tensor): Float32Array {
    const out = new Float32Array(B * L * E);
    let at = 0;
    for (const n of split) {
      const chunk = new Float32Array(B * n * E);
      for (let b = 0; b < B; b++) chunk.set(x.data.subarray((b * L + at) * E, (b * L + at + n) * E), b * n * E);
      const y = f(tensor(chunk, [B, n, E]));
      for (let b = 0; b < B; b++) out.set(y.data.subarray(b * n * E, (b + 1) * n * E), (b * L + at) * E);
      at += n;
    }
    return out;
  }

  test("MultiHeadAttention: prefill 5, then 1 token at a time past the initial capacity", () => {
    const r = rng(freshSeed());
    const m = new MultiHeadAttention({ embedDim: E, numHeads: 4, numKvHeads: 2 });
    m.loadStateDict(randomDict(m, r));
    const [B, L] = [2, 21];
    const x = tensor(r.floats(B * L * E), [B, L, E]);
    const full = m.forward(x, x, x, { isCausal: true, needWeights: false }).output;
    const cache = new KVCache({ capacity: 4 });
    const got = steps(x, B, L, [5, ...Array(16).fill(1)], (c) => m.forward(c, c, c, { isCausal: true, cache, needWeights: false }).output);
    expect(cache.length).toBe(L);
    expectClose(got, full.data, [B, L, E], { atol: 1e-5, rtol: 1e-4 });
    cache.dispose();
  });

  test("TransformerEncoder (causal, 2 layers, pre-LN): uneven chunks", () => {
    const r = rng(freshSeed());
    const enc = new TransformerEncoder({ layer: { ...layer, normFirst: true }, numLayers: 2, norm: true });
    enc.loadStateDict(randomDict(enc, r));
    const [B, L] = [1, 40];
    const x = tensor(r.floats(B * L * E), [B, L, E]);
    const full = enc.forward(x, { isCausal: true });
    const cache = new KVCache();
    const got = steps(x, B, L, [7, 1, 1, 13, 1, 17], (c) => enc.forward(c, { isCausal: true, cache }));
    expectClose(got, full.data, [B, L, E], { atol: 1e-5, rtol: 1e-4 });
    const before = memoryStats();
    cache.dispose();
    expect(memoryStats().liveBytes).toBeLessThan(before.liveBytes);
  });

  test("TransformerDecoder (causal target, cross-attention over memory)", () => {
    const r = rng(freshSeed());
    const dec = new TransformerDecoder({ layer, numLayers: 2 });
    dec.loadStateDict(randomDict(dec, r));
    const [B, L] = [2, 9];
    const x = tensor(r.floats(B * L * E), [B, L, E]);
    const memory = tensor(r.floats(B * 6 * E), [B, 6, E]);
    const full = dec.forward(x, memory, { tgtIsCausal: true });
    const cache = new KVCache();
    const got = steps(x, B, L, [3, 1, 1, 1, 1, 1, 1], (c) => dec.forward(c, memory, { tgtIsCausal: true, cache }));
    expectClose(got, full.data, [B, L, E], { atol: 1e-5, rtol: 1e-4 });
  });

  test("misuse: no causal flag, other batch size, masks, disposed cache", () => {
    const r = rng(freshSeed());
    const enc = new TransformerEncoder({ layer, numLayers: 1 });
    enc.loadStateDict(randomDict(enc, r));
    const x = tensor(r.floats(2 * 3 * E), [2, 3, E]);
    const cache = new KVCache();
    expect(() => enc.forward(x, { cache })).toThrow(/isCausal: expected true with a cache \(decoding is causal self-attention\), got false/);
    enc.forward(x, { isCausal: true, cache });
    expect(() => enc.forward(tensor(r.floats(E), [1, 1, E]), { isCausal: true, cache })).toThrow(
      /cache: expected an input batch of 2 \(the sequences it holds\), got 1/,
    );
    expect(() => enc.forward(x, { isCausal: true, cache, srcKeyPaddingMask: tensor(new Uint8Array(6), [2, 3]) })).toThrow(
      /srcKeyPaddingMask: not together with a cache/,
    );
    cache.reset();
    expect(cache.length).toBe(0);
    enc.forward(tensor(r.floats(E), [1, 1, E]), { isCausal: true, cache });
    cache.dispose();
    expect(() => enc.forward(x, { isCausal: true, cache })).toThrow(StateError);
  });
});

describe("modules own their memory", () => {
  test("10,000 forward calls of an encoder and of MultiHeadAttention leave memory flat", () => {
    const r = rng(freshSeed());
    const enc = new TransformerEncoder({ layer: { dModel: 8, nhead: 2, dimFeedforward: 16 }, numLayers: 2 });
    enc.loadStateDict(randomDict(enc, r));
    const mha = new MultiHeadAttention({ embedDim: 8, numHeads: 2 });
    mha.loadStateDict(randomDict(mha, r));
    const x = tensor(r.floats(2 * 5 * 8), [2, 5, 8]);
    const pad = tensor(Uint8Array.from([0, 0, 0, 1, 1, 0, 0, 0, 0, 1]), [2, 5]);
    enc.forward(x, { srcKeyPaddingMask: pad });
    mha.forward(x, x, x);
    const before = memoryStats();
    for (let i = 0; i < 5_000; i++) {
      enc.forward(x, { srcKeyPaddingMask: pad });
      mha.forward(x, x, x, { keyPaddingMask: pad });
    }
    expect(memoryStats()).toEqual(before);
  });
});

describe("MultiHeadAttention: a per-head attnMask together with a keyPaddingMask", () => {
  test("at batch 1 each head keeps its own mask (the padding folded in by hand gives the same output)", () => {
    const [E, H, L] = [8, 2, 5];
    const r = rng(freshSeed());
    const mha = new MultiHeadAttention({ embedDim: E, numHeads: H });
    mha.loadStateDict(
      Object.fromEntries(
        mha.params().map((p) => [
          p.key,
          tensor(
            r.floats(
              p.shape.reduce((a, b) => a * b, 1),
              0.5,
            ),
            p.shape,
          ),
        ]),
      ),
    );
    const x = tensor(r.floats(L * E, 1), [1, L, E]);
    const perHead = r.floats(H * L * L, 2); // a different float mask for each head
    const padding = tensor(
      Uint8Array.from({ length: L }, (_, j) => (j === 3 ? 1 : 0)),
      [1, L],
    ); // key 3 is padding
    const folded = Float32Array.from(perHead, (v, n) => (n % L === 3 ? -Infinity : v));
    const got = mha.forward(x, x, x, { attnMask: tensor(perHead, [H, L, L]), keyPaddingMask: padding, needWeights: false });
    const want = mha.forward(x, x, x, { attnMask: tensor(folded, [H, L, L]), needWeights: false });
    expect(Array.from(got.output.data)).toEqual(Array.from(want.output.data));
    mha.dispose();
  });
});
