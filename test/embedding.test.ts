// Embedding (torch.nn.Embedding): a gather of rows; bad ids named with their position.
import { beforeAll, describe, expect, test } from "vitest";
import { ArgumentError, Embedding, ShapeError, StateError, init, loadSafetensors, memoryStats, tensor } from "../src/index.js";
import { freshSeed, rng } from "./reference.js";

beforeAll(() => init());

function loaded(num: number, dim: number) {
  const r = rng(freshSeed());
  const weight = r.floats(num * dim);
  const emb = new Embedding({ numEmbeddings: num, embeddingDim: dim }).loadStateDict({ weight: tensor(weight, [num, dim]) });
  return { emb, weight };
}

// the rows of ids, flat
const rows = (weight: Float32Array, dim: number, ids: ArrayLike<number>) =>
  Array.from(ids).flatMap((id) => Array.from(weight.subarray(id * dim, (id + 1) * dim)));

describe("gather", () => {
  for (const [num, dim] of [
    [1, 1],
    [3, 4],
    [5, 17],
    [67, 64 + 3],
  ]) {
    test(`${num} x ${dim}: Int32Array, number[] and { data, shape } give the rows`, () => {
      const { emb, weight } = loaded(num, dim);
      const ids = Int32Array.from({ length: 6 }, (_, i) => (i * 7 + 2) % num);
      const one = emb.forward(ids);
      expect(one.shape).toEqual([6, dim]);
      expect(Array.from(one.data)).toEqual(rows(weight, dim, ids));
      expect(emb.forward(Array.from(ids)).data).toEqual(one.data);
      const batch = emb.forward({ data: ids, shape: [2, 3] });
      expect(batch.shape).toEqual([2, 3, dim]);
      expect(batch.data).toEqual(one.data);
      expect(emb.forward({ data: ids.subarray(0, 1), shape: [] }).shape).toEqual([dim]);
      expect(emb.forward({ data: new Int32Array(0), shape: [0, 4] }).shape).toEqual([0, 4, dim]);
      emb.dispose();
    });
  }

  test("the output is a new array; the weight in WebAssembly memory is untouched", () => {
    const { emb, weight } = loaded(4, 3);
    const y = emb.forward([1]);
    y.data.fill(0);
    expect(Array.from(emb.forward([1]).data)).toEqual(rows(weight, 3, [1]));
    emb.dispose();
  });

  test("forwards leave the memory flat; dispose frees the table", () => {
    const before = memoryStats().liveBytes;
    const { emb } = loaded(50, 8);
    emb.forward([1, 2, 3]);
    const after = memoryStats();
    for (let i = 0; i < 100; i++) emb.forward({ data: Int32Array.of(4, 5, 6, 7), shape: [2, 2] });
    expect(memoryStats()).toEqual(after);
    emb.dispose();
    expect(memoryStats().liveBytes).toBe(before);
  });
});

test("a table of several blocks of rows (two full, a tail), loaded from F16 a block at a time", () => {
  // rows of 65539 floats: 15 rows per block of 2^20 floats, so 33 rows are blocks of 15, 15 and 3
  const [num, dim] = [33, 65539];
  const half = Uint16Array.from({ length: num * dim }, (_, i) => 0x3c00 + (i % 1021)); // 1 + (i % 1021) / 1024
  const json = JSON.stringify({ weight: { dtype: "F16", shape: [num, dim], data_offsets: [0, 2 * half.length] } }).padEnd(64);
  const bytes = new Uint8Array(8 + json.length + 2 * half.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
  bytes.set(new TextEncoder().encode(json), 8);
  bytes.set(new Uint8Array(half.buffer), 8 + json.length);
  const emb = new Embedding({ numEmbeddings: num, embeddingDim: dim }).loadStateDict(loadSafetensors(bytes));
  const ids = [0, 14, 15, 29, 30, 32, 7];
  const got = emb.forward(ids);
  const want = (id: number, j: number) => 1 + ((id * dim + j) % 1021) / 1024;
  ids.forEach((id, i) => {
    for (const j of [0, 1, dim - 1]) expect(got.data[i * dim + j], `row ${id}, column ${j}`).toBe(want(id, j));
  });
  const same = new Embedding({ numEmbeddings: num, embeddingDim: dim }).loadStateDict({
    weight: tensor(
      Float32Array.from(half, (h) => 1 + (h - 0x3c00) / 1024),
      [num, dim],
    ),
  });
  expect(same.forward(ids).data).toEqual(got.data);
  emb.dispose();
  same.dispose();
});

describe("errors", () => {
  let emb: Embedding;
  beforeAll(() => {
    emb = loaded(10, 2).emb;
  });
  const cases: [string, () => unknown, typeof ArgumentError, RegExp][] = [
    [
      "an id past the table",
      () => emb.forward(Int32Array.of(1, 2, 10)),
      ArgumentError,
      /Embedding.forward ids\[2\]: expected an integer in \[0, 10\), got number 10/,
    ],
    [
      "a negative id, in a batch: its coordinates",
      () => emb.forward({ data: Int32Array.of(0, 1, 2, 3, -1, 5), shape: [2, 3] }),
      ArgumentError,
      /ids\[1, 1\]: expected an integer in \[0, 10\), got number -1/,
    ],
    ["a fractional id", () => emb.forward([0, 1.5]), ArgumentError, /ids\[1\]: expected an integer in \[0, 10\), got number 1.5/],
    ["NaN", () => emb.forward([NaN]), ArgumentError, /ids\[0\]: expected an integer in \[0, 10\), got number NaN/],
    ["a string", () => emb.forward(["3"] as never), ArgumentError, /ids\[0\]: expected an integer in \[0, 10\), got string 3/],
    ["the first bad id is named", () => emb.forward([0, 11, -4]), ArgumentError, /ids\[1\]: expected an integer in \[0, 10\), got number 11/],
    [
      "Float32Array ids",
      () => emb.forward(new Float32Array(2) as never),
      ArgumentError,
      /expected an Int32Array, an array of numbers or \{ data: Int32Array, shape \}, got Float32Array/,
    ],
    [
      "{ data } of another type",
      () => emb.forward({ data: new BigInt64Array(2), shape: [2] } as never),
      ArgumentError,
      /expected data of type Int32Array, got BigInt64Array/,
    ],
    [
      "a shape that does not fit",
      () => emb.forward({ data: new Int32Array(5), shape: [2, 3] }),
      ShapeError,
      /ids.data: expected 6 elements \(shape \[2, 3\]\), got 5/,
    ],
    [
      "a bad shape",
      () => emb.forward({ data: new Int32Array(2), shape: [-2] }),
      ShapeError,
      /Embedding.forward ids.shape\[0\]: expected a non-negative integer, got number -2/,
    ],
  ];
  for (const [what, call, cls, message] of cases) {
    test(what, () => {
      expect(call).toThrow(cls);
      expect(call).toThrow(message);
    });
  }

  test("options", () => {
    expect(() => new Embedding({ numEmbeddings: 0, embeddingDim: 2 })).toThrow(/Embedding numEmbeddings: expected a positive integer, got number 0/);
    expect(() => new Embedding({ numEmbeddings: 4, embeddingDim: 2, paddingIdx: 4 })).toThrow(
      /Embedding paddingIdx: expected an integer in \[-4, 4\), got number 4/,
    );
    expect(() => new Embedding({ numEmbeddings: 4, embeddingDim: 2, maxNorm: 1 } as never)).toThrow(/unknown option "maxNorm"/);
    expect(new Embedding({ numEmbeddings: 4, embeddingDim: 2, paddingIdx: -1 }).paddingIdx).toBe(3);
    expect(new Embedding({ numEmbeddings: 4, embeddingDim: 2 }).paddingIdx).toBeNull();
  });

  test("forward before loading, after dispose", () => {
    const e = new Embedding({ numEmbeddings: 4, embeddingDim: 2 });
    expect(() => e.forward([0])).toThrow(StateError);
    e.loadStateDict({ weight: tensor(new Float32Array(8), [4, 2]) }).dispose();
    expect(() => e.forward([0])).toThrow(/was disposed/);
    expect(() => e.loadStateDict({ weight: tensor(new Float32Array(6), [3, 2]) })).toThrow(/was disposed/);
    expect(() => new Embedding({ numEmbeddings: 4, embeddingDim: 2 }).loadStateDict({ weight: tensor(new Float32Array(6), [3, 2]) })).toThrow(
      /"weight" has shape \[3, 2\], expected \[4, 2\]/,
    );
  });
});
