// 10,000 calls of every public function and module forward: the WebAssembly memory and the
// allocator's live bytes stay flat (process RSS is measured in bench/scenarios.mjs).
import { beforeAll, expect, test } from "vitest";
import * as lib from "../src/index.js";
import { freshSeed, rng } from "./reference.js";

const r = rng(freshSeed());
const t = (shape: number[]) =>
  lib.tensor(
    r.floats(
      shape.reduce((a, b) => a * b, 1),
      0.5,
    ),
    shape,
  );
const loaded = <M extends lib.Module>(m: M): M => m.loadStateDict(Object.fromEntries(m.params().map((p) => [p.key, t([...p.shape])])));
const layer = { dModel: 8, nhead: 2, dimFeedforward: 16 };
const calls: [string, () => unknown][] = [];

beforeAll(async () => {
  await lib.init();
  const x = t([2, 5, 8]);
  const mem = t([2, 3, 8]);
  const pad = lib.tensor(Uint8Array.from([0, 0, 0, 1, 1, 0, 0, 0, 0, 1]), [2, 5]);
  const mha = loaded(new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2, numKvHeads: 1 }));
  const linear = loaded(new lib.Linear({ inFeatures: 8, outFeatures: 5 }));
  const norm = loaded(new lib.LayerNorm({ normalizedShape: 8 }));
  const encLayer = loaded(new lib.TransformerEncoderLayer({ ...layer, normFirst: true, activation: "gelu" }));
  const decLayer = loaded(new lib.TransformerDecoderLayer(layer));
  const encoder = loaded(new lib.TransformerEncoder({ layer, numLayers: 2, norm: true }));
  const decoder = loaded(new lib.TransformerDecoder({ layer, numLayers: 2, norm: true }));
  const resident = lib.residentTensor([2, 5, 8], x.data);
  const file = new Uint8Array(8 + 64);
  const header = JSON.stringify({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }).padEnd(64 - 8);
  new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
  file.set(new TextEncoder().encode(header), 8);
  calls.push(
    [
      "scaledDotProductAttention",
      () =>
        lib.scaledDotProductAttention(x, x, x, {
          attnMask: lib.tensor(
            Uint8Array.from({ length: 25 }, (_, i) => i % 4),
            [5, 5],
          ),
          returnWeights: true,
        }),
    ],
    ["scaledDotProductAttention (resident, window)", () => lib.scaledDotProductAttention(resident, resident, resident, { window: [1, 1] })],
    ["Linear.forward", () => linear.forward(x)],
    ["LayerNorm.forward", () => norm.forward(x)],
    ["MultiHeadAttention.forward", () => mha.forward(x, mem, mem, { averageAttnWeights: false })],
    ["TransformerEncoderLayer.forward", () => encLayer.forward(x, { srcKeyPaddingMask: pad, needWeights: true })],
    ["TransformerDecoderLayer.forward", () => decLayer.forward(x, mem, { tgtIsCausal: true })],
    ["TransformerEncoder.forward", () => encoder.forward(x, { isCausal: true })],
    ["TransformerDecoder.forward", () => decoder.forward(x, mem, { tgtKeyPaddingMask: pad })],
    [
      "KVCache decode of 4 tokens, then dispose",
      () => {
        const cache = new lib.KVCache({ capacity: 2 });
        for (let i = 0; i < 4; i++) encoder.forward(t([1, 1, 8]), { isCausal: true, cache });
        cache.dispose();
      },
    ],
    ["residentTensor + dispose", () => lib.residentTensor([3, 3]).dispose()],
    ["module create + load + dispose", () => loaded(new lib.Linear({ inFeatures: 3, outFeatures: 2 })).dispose()],
    ["loadSafetensors", () => lib.loadSafetensors(file)],
    ["tensor", () => lib.tensor([1, 2, 3, 4], [2, 2])],
  );
});

test("10,000 calls of each public function and module forward leave WebAssembly memory flat", () => {
  for (const [, call] of calls) call(); // first calls may grow the memory
  const before = lib.memoryStats();
  for (const [name, call] of calls) {
    const n = name.startsWith("KVCache") ? 2_500 : 10_000; // four forwards per call
    for (let i = 0; i < n; i++) call();
    expect({ name, ...lib.memoryStats() }).toEqual({ name, ...before });
  }
}, 120_000);
