// Behaviour at the edges, for the modules as for scaledDotProductAttention: empty batches, fully
// masked rows, NaN contained to what it touches, requests too large for WebAssembly memory.
import { beforeAll, describe, expect, test } from "vitest";
import * as lib from "../src/index.js";
import { attentionRef, expectClose, freshSeed, rng } from "./reference.js";

const r = rng(freshSeed());
const t = (shape: number[], scale = 0.5) =>
  lib.tensor(
    r.floats(
      shape.reduce((a, b) => a * b, 1),
      scale,
    ),
    shape,
  );
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

describe("values of width 0 (Ev = 0)", () => {
  // torch: an empty output, and the softmax over the keys all the same
  test("plain tensors: empty output; weights and scores as with any value width", () => {
    const [q, k] = [t([2, 3, 5, 7]), t([2, 3, 6, 7])];
    const empty = lib.tensor(new Float32Array(0), [2, 3, 6, 0]);
    const got = lib.scaledDotProductAttention(q, k, empty, { returnWeights: true, returnScores: "masked", isCausal: true });
    const wide = lib.scaledDotProductAttention(q, k, t([2, 3, 6, 4]), { returnWeights: true, returnScores: "masked", isCausal: true });
    expect(got.output.shape).toEqual([2, 3, 5, 0]);
    expect(got.weights!.shape).toEqual([2, 3, 5, 6]);
    expect(got.weights!.data).toEqual(wide.weights!.data);
    expect(got.scores!.data).toEqual(wide.scores!.data);
    const ref = attentionRef(q.data, k.data, new Float32Array(0), { batch: [2], Hq: 3, Hk: 3, Lq: 5, Lk: 6, E: 7, Ev: 0 }, { causalOffset: 0 }); // torch is_causal: top-left
    expectClose(got.weights!.data, ref.weights, got.weights!.shape, { atol: 1e-6, rtol: 1e-5 }, "weights");
  });

  test.each(["f16", "q8"] as const)("stored %s keys and values: the same weights as with a value width of 16", (dtype) => {
    const q = t([1, 2, 3, 16]);
    const keys = t([1, 2, 9, 16]);
    const k = lib.residentTensor(keys.shape, keys.data, { dtype });
    const v0 = lib.residentTensor([1, 2, 9, 0], undefined, { dtype });
    const v16 = lib.residentTensor([1, 2, 9, 16], t([1, 2, 9, 16]).data, { dtype });
    try {
      const got = lib.scaledDotProductAttention(q, k, v0, { returnWeights: true });
      const wide = lib.scaledDotProductAttention(q, k, v16, { returnWeights: true });
      expect(got.output.data).toHaveLength(0);
      expect(got.weights.data).toEqual(wide.weights.data);
      expect(got.weights.data.every((w) => w > 0)).toBe(true);
    } finally {
      for (const x of [k, v0, v16]) x.dispose();
    }
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
  // The API is synchronous, so async callers interleave only between calls. What lives across those
  // awaits is state in WebAssembly memory (module weights, cache keys and values, resident tensors)
  // while the other callers allocate, free, grow their caches and grow the memory itself.
  test("decoders with their own KV caches and resident tensors, stepped from interleaved async tasks while the memory grows, give the bits of each run alone", async () => {
    const seed = freshSeed();
    const r = rng(seed);
    const tensor = (shape: number[]) =>
      lib.tensor(
        r.floats(
          shape.reduce((a, b) => a * b, 1),
          0.5,
        ),
        shape,
      );
    const bits = (x: Float32Array) => Array.from(new Uint32Array(x.slice().buffer));
    const chunks = [
      [0, 3],
      [3, 4],
      [4, 5],
      [5, 7],
      [7, 8],
    ]; // positions fed per step: a prefill, then tokens
    const decoders = Array.from({ length: 12 }, () => ({
      model: loaded(new lib.TransformerEncoder({ layer, numLayers: 2 })),
      tokens: tensor([1, 8, 8]),
      query: tensor([2, 1, 4]),
      key: tensor([2, 9, 4]),
    }));
    const before = lib.memoryStats();
    const order: number[] = [];
    // decoder i alone: its cache grows (capacity 2) and its keys stay resident for the whole run
    async function decode(i: number, pause: (step: number) => Promise<void>): Promise<Float32Array[]> {
      const { model, tokens, query, key } = decoders[i];
      const cache = new lib.KVCache({ capacity: 2 });
      const resident = lib.residentTensor(key.shape, key.data);
      const out: Float32Array[] = [];
      for (const [step, [a, b]] of chunks.entries()) {
        await pause(step);
        order.push(i);
        out.push(model.forward(lib.tensor(tokens.data.slice(a * 8, b * 8), [1, b - a, 8]), { isCausal: true, cache }).data);
        out.push(lib.scaledDotProductAttention(query, resident, resident).data);
      }
      cache.dispose();
      resident.dispose();
      return out;
    }
    const alone: Float32Array[][] = [];
    for (let i = 0; i < decoders.length; i++) alone.push(await decode(i, async () => {}));
    order.length = 0;

    // all at once, each step after a pause of 0 to 3 ms, and a task that grows the memory twice meanwhile
    const sleep = (ms: number) => new Promise<void>((ok) => setTimeout(ok, ms));
    const pauses = decoders.map(() => chunks.map(() => Math.floor(r.next() * 4)));
    const grow = async () => {
      for (let n = 0; n < 2; n++) {
        await sleep(1 + n);
        const bytes = lib.memoryStats().bufferBytes;
        lib.residentTensor([bytes / 4]).dispose(); // as many bytes as the memory has: it must grow
        expect(lib.memoryStats().bufferBytes).toBeGreaterThan(bytes);
      }
    };
    const [together] = await Promise.all([Promise.all(decoders.map((_, i) => decode(i, (step) => sleep(pauses[i][step])))), grow()]);

    const switches = order.filter((d, n) => n > 0 && d !== order[n - 1]).length;
    expect(switches, `seed ${seed}: the tasks interleaved`).toBeGreaterThan(decoders.length);
    together.forEach((outs, i) => outs.forEach((o, k) => expect(bits(o), `seed ${seed}, decoder ${i}, output ${k}`).toEqual(bits(alone[i][k]))));
    expect(lib.memoryStats().liveBytes).toBe(before.liveBytes);
    decoders.forEach((d) => d.model.dispose());
  });
});
