// Behaviour at the edges, for the modules as for scaledDotProductAttention: empty batches, fully
// masked rows, NaN contained to what it touches, requests too large for WebAssembly memory.
import { beforeAll, describe, expect, test } from "vitest";
import * as lib from "../src/index.js";
import { freshSeed, rng } from "./reference.js";

const r = rng(freshSeed());
const t = (shape: number[], scale = 0.5) => lib.tensor(r.floats(shape.reduce((a, b) => a * b, 1), scale), shape);
const loaded = <M extends lib.Module>(m: M): M => m.loadStateDict(Object.fromEntries(m.params().map((p) => [p.key, t([...p.shape])])));
const layer = { dModel: 8, nhead: 2, dimFeedforward: 16 };
let mha: lib.MultiHeadAttention;
let enc: lib.TransformerEncoder;
let dec: lib.TransformerDecoder;

beforeAll(async () => {
  await lib.init();
  mha = loaded(new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 }));
  enc = loaded(new lib.TransformerEncoder({ layer, numLayers: 2, norm: true }));
  dec = loaded(new lib.TransformerDecoder({ layer, numLayers: 1 }));
});

describe("empty batches", () => {
  test("B = 0 gives empty outputs of the right shape", () => {
    const x = lib.tensor(new Float32Array(0), [0, 5, 8]);
    const { output, weights } = mha.forward(x, x, x);
    expect(output.shape).toEqual([0, 5, 8]);
    expect(weights!.shape).toEqual([0, 5, 5]);
    expect(enc.forward(x).shape).toEqual([0, 5, 8]);
    expect(dec.forward(x, lib.tensor(new Float32Array(0), [0, 3, 8])).shape).toEqual([0, 5, 8]);
    expect(new lib.Linear({ inFeatures: 8, outFeatures: 2 }).loadStateDict({ weight: t([2, 8]), bias: t([2]) }).forward(x).shape).toEqual([0, 5, 2]);
  });
});

describe("fully masked rows", () => {
  test("a fully padded sequence in a batch: zero weights and finite outputs, the other sequence untouched", () => {
    const x = t([2, 4, 8]);
    const pad = lib.tensor(Uint8Array.from([0, 0, 1, 0, 1, 1, 1, 1]), [2, 4]);
    const { output, weights } = mha.forward(x, x, x, { keyPaddingMask: pad });
    expect(Array.from(weights!.data.subarray(16))).toEqual(new Array(16).fill(0));
    expect(output.data.every(Number.isFinite)).toBe(true);
    const y = enc.forward(x, { srcKeyPaddingMask: pad });
    expect(y.data.every(Number.isFinite)).toBe(true);
    const alone = enc.forward(lib.tensor(x.data.slice(0, 32), [1, 4, 8]), { srcKeyPaddingMask: lib.tensor(pad.data.slice(0, 4), [1, 4]) });
    expect(y.data.subarray(0, 32)).toEqual(alone.data);
  });
});

describe("NaN and Infinity stay where they are", () => {
  test("NaN in one sequence reaches that sequence's outputs only, and not the next call", () => {
    const x = t([2, 5, 8]);
    const bad = x.data.slice();
    bad[8 * 2 + 3] = NaN; // batch 0, position 2
    const y = enc.forward(lib.tensor(bad, x.shape));
    expect(y.data.subarray(0, 40).some(Number.isNaN)).toBe(true);
    expect(y.data.subarray(40).every(Number.isFinite)).toBe(true);
    expect(enc.forward(x).data.every(Number.isFinite)).toBe(true);
  });

  test("Infinity in a key of one head reaches that head's rows only", () => {
    const q = t([1, 2, 3, 4]);
    const k = t([1, 2, 6, 4]);
    k.data[4 * 6 + 1] = Infinity; // head 1, key 0
    for (let i = 0; i < 3; i++) q.data[3 * 4 + 4 * i + 1] = 1; // its score is +Infinity for every query of head 1 (a -Infinity score would weigh it 0: not read)
    const out = lib.scaledDotProductAttention(q, k, k);
    expect(out.data.subarray(0, 12).every(Number.isFinite)).toBe(true);
    expect(out.data.subarray(12).some((v) => !Number.isFinite(v))).toBe(true);
  });
});

describe("requests too large for WebAssembly memory", () => {
  test("weights of 3 x 10^9 bytes: OutOfMemoryError before any memory is touched; the library stays usable", () => {
    const L = 28_000; // L * L floats = 3.1 GB of weights, plus the inputs: past 4 GiB with the rest
    const q = lib.tensor(new Float32Array(2 * L * 4), [2, L, 4]);
    const before = lib.memoryStats();
    expect(() => lib.scaledDotProductAttention(q, q, q, { returnWeights: true })).toThrow(lib.OutOfMemoryError);
    expect(() => lib.scaledDotProductAttention(q, q, q, { returnWeights: true })).toThrow(/more than the 4 GiB a module can address/);
    expect(lib.memoryStats()).toEqual(before);
    expect(lib.scaledDotProductAttention(t([1, 3, 4]), t([1, 3, 4]), t([1, 3, 4])).shape).toEqual([1, 3, 4]);
  });

  test("a module's weights buffer past 4 GiB: OutOfMemoryError, nothing left allocated", () => {
    const L = 24_000;
    const x = lib.tensor(new Float32Array(2 * L * 8), [2, L, 8]);
    const live = lib.memoryStats().liveBytes;
    expect(() => mha.forward(x, x, x, { averageAttnWeights: false })).toThrow(lib.OutOfMemoryError);
    expect(lib.memoryStats().liveBytes).toBe(live);
    expect(mha.forward(t([1, 3, 8]), t([1, 3, 8]), t([1, 3, 8])).output.shape).toEqual([1, 3, 8]);
  });
});

describe("concurrency", () => {
  test("many modules alive at once, called from interleaved async tasks, give the same results as one by one", async () => {
    const modules = Array.from({ length: 40 }, () => loaded(new lib.TransformerEncoderLayer(layer)));
    const inputs = modules.map(() => t([2, 6, 8]));
    const expected = modules.map((m, i) => m.forward(inputs[i]).data);
    const results = await Promise.all(
      modules.map(async (m, i) => {
        const out: Float32Array[] = [];
        for (let step = 0; step < 5; step++) {
          await new Promise((ok) => setTimeout(ok, (i * 7 + step * 3) % 5));
          out.push(m.forward(inputs[i]).data);
        }
        return out;
      }),
    );
    results.forEach((outs, i) => outs.forEach((o) => expect(o).toEqual(expected[i])));
    modules.forEach((m) => m.dispose());
  });
});
