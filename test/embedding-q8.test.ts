// Embedding tables in q8 (and f16, q4), chosen as Linear weights are ({ weights }, quantize(),
// pre-quantized I8 + _scale): Embedding's gather against the dequantized rows exactly (each
// format's dequantize reference in FORMATS, test/support/quantized.ts); the LM head product of
// CausalLM's table (VocabTable.project) against the float64 oracle of the same math (q8: exact
// int8 sums, so only the float32 store rounds); odd sizes (vocab not a multiple of 8, dim 7 and
// 33) and a table of two blocks; weightBytes and liveBytes; tied and untied CausalLMs against f32
// (EncoderModel's three tables in each format: test/weights-quantized.test.ts); one thread against
// two; hostile ids and format names.
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { freshLibrary } from "./support/fresh.js";
import {
  ArgumentError,
  CausalLM,
  Embedding,
  type IntegerTensor,
  type StateDict,
  StateError,
  type Tensor,
  init,
  loadSafetensors,
  memoryStats,
  quantize,
} from "../src/index.js";
import { withScope } from "../src/module.js";
import { VocabTable } from "../src/vocab-table.js";
import { expectClose, freshSeed, rng } from "./reference.js";
import {
  largestAllocation,
  FORMAT,
  FORMATS,
  decoderFixture,
  dequantizeRows,
  halfBits,
  halfWeights,
  product,
  quantizeRows,
  relRms,
  safetensors,
} from "./support/quantized.js";

beforeAll(() => init());

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const up = (n: number, m: number) => Math.ceil(n / m) * m;

// rows of 33 floats: 31768 rows per block (2^20 floats rounded down to whole panels of 8), so this
// table is a full block and a tail of 13 rows (not a multiple of 8)
const TWO_BLOCKS = [31768 + 13, 33] as const;
const SIZES = [[1, 1], [3, 7], [13, 33], [67, 64 + 3], TWO_BLOCKS] as const;

describe("Embedding's gather: exactly the rows as held (q8: q * scale; f16: the halves; q4: q * d)", () => {
  for (const { name: format, dequantize } of FORMATS) {
    test.each(SIZES)(`${format} %i x %i`, (V, D) => {
      const seed = freshSeed();
      const w = rng(seed).floats(V * D, 0.5);
      const emb = new Embedding({ numEmbeddings: V, embeddingDim: D }).loadStateDict({ weight: { data: w, shape: [V, D] } }, "", { weights: format });
      expect(emb.weights).toBe(format);
      // every row of a small table; of the large one rows around the block boundary and the tail
      const ids = V < 100 ? Int32Array.from({ length: V }, (_, i) => (i * 5) % V) : Int32Array.of(0, 7, 8, 31767, 31768, 31775, 31776, 31780, 12345);
      const got = emb.forward(ids).data;
      const want = dequantize(w, V, D);
      ids.forEach((id, i) => {
        for (let c = 0; c < D; c++) {
          if (got[i * D + c] !== want[id * D + c])
            throw new Error(`${format} (seed ${seed}) at [row ${id}, ${c}]: got ${got[i * D + c]}, want ${want[id * D + c]}`);
        }
      });
      emb.dispose();
    });
  }
});

describe("the LM head: VocabTable.project on the format's product against the float64 oracle", () => {
  // into (M, V) = a (M, D) . table^T, through the table's project()
  const project = (t: VocabTable, a: Float32Array, M: number) =>
    withScope((ctx) => {
      const into = new Float32Array(M * t.rows);
      t.project(ctx, into, ctx.scope.put(a), M);
      return into;
    });

  // q8: int8 activations per row, exact integer sums, times both scales; q4: an exact integer sum per block
  test.each(
    FORMATS.flatMap(({ name }) =>
      [
        [1, 1, 1],
        [3, 13, 7],
        [5, 67, 33],
        [1, ...TWO_BLOCKS],
        [2, ...TWO_BLOCKS],
        [6, ...TWO_BLOCKS],
      ].map(([M, V, D]) => [name, M!, V!, D!] as const),
    ),
  )("%s M=%i V=%i D=%i", (format, M, V, D) => {
    const seed = freshSeed();
    const r = rng(seed);
    const w = r.floats(V * D, 0.1);
    const a = r.floats(M * D, 2);
    const t = new VocabTable(V, D).loadStateDict({ weight: { data: w, shape: [V, D] } }, "", { weights: format });
    expect(t.weights).toBe(format);
    const { x } = product(format, a, w, M, V, D);
    const max = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expectClose(project(t, a, M), x, [M, V], FORMAT[format].oracle(max, 0), `${format} (seed ${seed})`);
    t.dispose();
  });

  test("no float32 copy of a q8 table: the largest block project() allocates is its output", () => {
    const [V, D] = TWO_BLOCKS;
    const t = new VocabTable(V, D).loadStateDict({ weight: { data: rng(1).floats(V * D), shape: [V, D] } }, "", { weights: "q8" });
    const [, largest] = largestAllocation(() => project(t, rng(2).floats(D), 1));
    // the logits row (4 V bytes plus the tail block's padding to blockRows); a float32 block alone would be 4 * 31768 * D
    expect(largest).toBeLessThanOrEqual(4 * 2 * 31768);
    t.dispose();
  });
});

describe("bytes: weightBytes and liveBytes show each table as held", () => {
  // per block of n rows: f32 panels of 8 rows (4 bytes each); q8 int8 panels of 8 rows and K4 columns, then n scales
  const bytes = (format: "f32" | "q8", V: number, D: number) => {
    const R = Math.max(8, Math.floor(2 ** 20 / D / 8) * 8);
    let total = 0;
    for (let first = 0; first < V; first += R) {
      const n = Math.min(R, V - first);
      total += format === "f32" ? 4 * up(n, 32) * D : up(n, 8) * up(D, 4) + 4 * n;
    }
    return total;
  };

  test.each([[67, 48], [13, 33], TWO_BLOCKS] as const)("%i x %i: q8 about a quarter of f32; the memory comes back on dispose()", (V, D) => {
    const w = rng(freshSeed()).floats(V * D);
    const live = memoryStats().liveBytes;
    const f32 = new Embedding({ numEmbeddings: V, embeddingDim: D }).loadStateDict({ weight: { data: w, shape: [V, D] } });
    const f32Live = memoryStats().liveBytes - live;
    const q8 = new Embedding({ numEmbeddings: V, embeddingDim: D }).loadStateDict({ weight: { data: w, shape: [V, D] } }, "", { weights: "q8" });
    const q8Live = memoryStats().liveBytes - live - f32Live;
    console.log(
      `table ${V} x ${D}: f32 ${f32.weightBytes()} bytes, q8 ${q8.weightBytes()} bytes (${((100 * q8.weightBytes()) / f32.weightBytes()).toFixed(1)}%)`,
    );
    expect(f32.weightBytes()).toBe(bytes("f32", V, D));
    expect(q8.weightBytes()).toBe(bytes("q8", V, D));
    // what the heap holds: each block rounded up to 16 bytes
    const blocks = Math.ceil(V / Math.max(8, Math.floor(2 ** 20 / D / 8) * 8));
    expect(f32Live - f32.weightBytes()).toBeLessThan(16 * blocks);
    expect(q8Live - q8.weightBytes()).toBeLessThan(16 * blocks);
    expect(q8.weightBytes() / f32.weightBytes()).toBeLessThan(D % 4 ? 0.35 : 0.28);
    f32.dispose();
    q8.dispose();
    expect(f32.weightBytes()).toBe(0);
    expect(memoryStats().liveBytes).toBe(live);
  });
});

describe("chosen as Linear weights are: quantize(), later loads, pre-quantized tensors", () => {
  const [V, D] = [13, 33];
  const ids = Int32Array.from({ length: V }, (_, i) => i);

  test("quantize(embedding, format) gives the same bits as loading with { weights: format }; f32 -> f16 -> q8 quantizes the halves", () => {
    const w = rng(freshSeed()).floats(V * D);
    const dict = { weight: { data: w, shape: [V, D] } };
    for (const { name: format } of FORMATS) {
      const a = quantize(new Embedding({ numEmbeddings: V, embeddingDim: D }).loadStateDict(dict), format);
      const b = new Embedding({ numEmbeddings: V, embeddingDim: D }).loadStateDict(dict, "", { weights: format });
      expect(a.weights).toBe(format);
      expect(a.forward(ids).data).toEqual(b.forward(ids).data);
      expect(a.weightBytes()).toBe(b.weightBytes());
      // not loaded yet: later loads take the format, unless they ask for another
      const later = quantize(new Embedding({ numEmbeddings: V, embeddingDim: D }), format).loadStateDict(dict);
      expect(later.forward(ids).data).toEqual(b.forward(ids).data);
      const asked = quantize(new Embedding({ numEmbeddings: V, embeddingDim: D }), format).loadStateDict(dict, "", { weights: "f32" });
      expect(asked.forward(ids).data).toEqual(w);
      for (const m of [a, b, later, asked]) m.dispose();
    }
    const viaHalf = quantize(quantize(new Embedding({ numEmbeddings: V, embeddingDim: D }).loadStateDict(dict), "f16"), "q8");
    const fromHalves = new Embedding({ numEmbeddings: V, embeddingDim: D }).loadStateDict({ weight: { data: halfWeights(w), shape: [V, D] } }, "", {
      weights: "q8",
    });
    expect(viaHalf.forward(ids).data).toEqual(fromHalves.forward(ids).data);
    // q8 -> f32, f16 or q4: the values are gone
    expect(() => quantize(viaHalf, "f32")).toThrow(ArgumentError);
    expect(() => quantize(viaHalf, "f32")).toThrow(
      /quantize format: expected one the weights held can go to, got string f32: 1 embedding table holds q8 weights; their float32 values are gone/,
    );
    expect(() => quantize(viaHalf, "q4")).toThrow(/1 embedding table holds q8 weights; their float32 \(or half\) values are gone/);
    expect(viaHalf.weights).toBe("q8");
    viaHalf.dispose();
    fromHalves.dispose();
  });

  test("pre-quantized: an I8 weight with its weight_scale loads as q8, its int8 rows as they are (-128 and rows below 127 too)", () => {
    const r = rng(freshSeed());
    const q = Int8Array.from({ length: V * D }, (_, i) => (i % 11 === 0 ? -128 : Math.round((r.next() * 2 - 1) * 60)));
    const scales = r.floats(V, 0.01).map(Math.abs);
    const dict = () => ({ weight: { data: q, shape: [V, D], dtype: "I8" } as IntegerTensor, weight_scale: { data: scales, shape: [V] } });
    const emb = new Embedding({ numEmbeddings: V, embeddingDim: D }).loadStateDict(dict());
    expect(emb.weights).toBe("q8");
    const want = dequantizeRows({ q, scales }, D);
    expect(emb.forward(ids).data).toEqual(want);
    expect(emb.weightBytes()).toBe(up(V, 8) * up(D, 4) + 4 * V);
    // with { weights: "f32" }: dequantized (q * scale, rounded once), held in float32
    const f = new Embedding({ numEmbeddings: V, embeddingDim: D }).loadStateDict(dict(), "", { weights: "f32" });
    expect(f.weights).toBe("f32");
    expect(f.forward(ids).data).toEqual(want);
    emb.dispose();
    f.dispose();
  });

  test("a file's F16 table of two blocks into q8, a block at a time: the same bits as from float32 arrays", () => {
    const [V2, D2] = TWO_BLOCKS;
    const values = halfWeights(rng(freshSeed()).floats(V2 * D2));
    const file = safetensors({ weight: { dtype: "F16", shape: [V2, D2], bytes: new Uint8Array(halfBits(values).buffer) } });
    const a = new Embedding({ numEmbeddings: V2, embeddingDim: D2 }).loadStateDict(loadSafetensors(file), "", { weights: "q8" });
    const b = new Embedding({ numEmbeddings: V2, embeddingDim: D2 }).loadStateDict({ weight: { data: values, shape: [V2, D2] } }, "", {
      weights: "q8",
    });
    const some = Int32Array.of(0, 31767, 31768, 31780);
    expect(a.forward(some).data).toEqual(b.forward(some).data);
    expect(a.weightBytes()).toBe(b.weightBytes());
    a.dispose();
    b.dispose();
  });
});

describe("models", () => {
  test.each(["llama-tied", "llama-untied", "gemma2"])(
    'CausalLM %s with { weights: "q8" }: logits close to f32; lastOnly the last row\'s bits; quantize() the same bits',
    (name) => {
      const { config, dict } = decoderFixture(name);
      const f32 = CausalLM.fromConfig(config).loadStateDict(dict);
      const q8 = CausalLM.fromConfig(config).loadStateDict(dict, "", { weights: "q8" });
      const V = Number(config.vocab_size);
      const ids = Int32Array.from({ length: 11 }, (_, i) => (i * 5 + 1) % V);
      const got = q8.forward(ids).data;
      const want = f32.forward(ids).data;
      const err = relRms(got, want);
      // the same model with only the Linear layers in q8 (each decoder layer quantized, the tables float32)
      const linears = CausalLM.fromConfig(config).loadStateDict(dict);
      for (const l of linears.layers) quantize(l, "q8");
      const errLinears = relRms(linears.forward(ids).data, want);
      console.log(
        `q8 vs f32, the ${name} fixture's logits (${q8.tieWordEmbeddings ? "tied" : "untied"}): ${(100 * err).toFixed(3)}% relative RMS with the tables in q8, ${(100 * errLinears).toFixed(3)}% without`,
      );
      expect(err).toBeGreaterThan(0);
      // the Llama fixture's bound in q8 (FORMATS, as test/weights-quantized.test.ts holds it); Gemma 2's
      // (sandwich norms, soft-capping) is 11% with the Linear layers alone
      expect(err).toBeLessThan(name === "gemma2" ? 0.15 : FORMAT.q8.relRms.llamaFixture);
      expect(err).toBeLessThan(errLinears + 0.03); // what the tables add
      linears.dispose();
      // the head's product for one row (a decode step) gives that row's bits of the whole product
      expect(q8.forward(ids, { lastOnly: true }).data).toEqual(got.subarray(10 * V));
      const q = quantize(CausalLM.fromConfig(config).loadStateDict(dict), "q8");
      expect(q.forward(ids).data).toEqual(got);
      expect(q.weightBytes()).toBe(q8.weightBytes());
      for (const m of [f32, q8, q]) m.dispose();
    },
  );

  test("a tied CausalLM whose only q8 weight is its table (pre-quantized): the embedding reads the dequantized rows exactly, the head adds int8 activations' error only", () => {
    const { config, dict } = decoderFixture("llama-tied");
    const w = dict["model.embed_tokens.weight"] as Tensor;
    const [V, H] = w.shape as [number, number];
    const { q, scales } = quantizeRows(w.data, V, H);
    const pre: StateDict = {
      ...dict,
      "model.embed_tokens.weight": { data: q, shape: [V, H], dtype: "I8" } as IntegerTensor,
      "model.embed_tokens.weight_scale": { data: scales, shape: [V] },
    };
    const tableQ8 = CausalLM.fromConfig(config).loadStateDict(pre);
    // the same model in float32 with the table's dequantized values
    const deq = dequantizeRows({ q, scales }, H);
    const f32 = CausalLM.fromConfig(config).loadStateDict({ ...dict, "model.embed_tokens.weight": { data: deq, shape: [V, H] } });
    // the models differ in their table only: f32 4 bytes a weight (rows padded to 32), q8 1 (rows padded to 8, dim to 4) and a scale per row
    const [f32Table, q8Table] = [4 * up(V, 32) * H, up(V, 8) * up(H, 4) + 4 * V];
    console.log(
      `the llama-tied fixture's table (${V} x ${H}): f32 ${f32Table} bytes, q8 ${q8Table} bytes; the model ${f32.weightBytes()} -> ${tableQ8.weightBytes()} bytes`,
    );
    expect(f32.weightBytes() - tableQ8.weightBytes()).toBe(f32Table - q8Table);
    const ids = Int32Array.from({ length: 9 }, (_, i) => (i * 7 + 3) % V);
    const err = relRms(tableQ8.forward(ids).data, f32.forward(ids).data);
    console.log(`tied table in q8 vs the same dequantized table in f32: ${(100 * err).toFixed(3)}% relative RMS of the logits`);
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(0.01);
    tableQ8.dispose();
    f32.dispose();
  });

  test.each([true, false])("a random CausalLM of odd sizes (hidden 33, vocab 37), tied %s: q8 close to f32", (tied) => {
    const config = {
      model_type: "llama",
      hidden_size: 33,
      num_attention_heads: 3,
      num_key_value_heads: 1,
      head_dim: 10,
      intermediate_size: 19,
      num_hidden_layers: 2,
      vocab_size: 37,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      max_position_embeddings: 64,
      hidden_act: "silu",
      tie_word_embeddings: tied,
    };
    const r = rng(freshSeed());
    const model = CausalLM.fromConfig(config);
    const dict: Record<string, Tensor> = Object.fromEntries(
      model
        .params()
        .map((p) => [
          p.key,
          { data: p.key.endsWith("norm.weight") ? new Float32Array(size(p.shape)).fill(1) : r.floats(size(p.shape), 0.3), shape: [...p.shape] },
        ]),
    );
    model.loadStateDict(dict);
    const q8 = CausalLM.fromConfig(config).loadStateDict(dict, "", { weights: "q8" });
    expect(q8.tieWordEmbeddings).toBe(tied);
    const ids = { data: Int32Array.from({ length: 2 * 6 }, (_, i) => (i * 11 + 4) % 37), shape: [2, 6] };
    const err = relRms(q8.forward(ids).data, model.forward(ids).data);
    console.log(`q8 vs f32, a random CausalLM of hidden 33, vocab 37, ${tied ? "tied" : "untied"}: ${(100 * err).toFixed(3)}% relative RMS`);
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(0.05);
    // tied: one q8 table; untied: two
    const tables = (tied ? 1 : 2) * (up(37, 8) * up(33, 4) + 4 * 37);
    const others = model.params().filter((p) => !/embed_tokens|lm_head/.test(p.key));
    const linears = others.filter((p) => p.shape.length === 2).reduce((n, p) => n + up(p.shape[0]!, 8) * up(p.shape[1]!, 4) + 4 * p.shape[0]!, 0);
    const norms = others.filter((p) => p.shape.length === 1).reduce((n, p) => n + 4 * p.shape[0]!, 0);
    expect(q8.weightBytes()).toBe(tables + linears + norms);
    model.dispose();
    q8.dispose();
  });
});

describe("hostile inputs", () => {
  let emb: Embedding;
  let lm: CausalLM;
  beforeAll(() => {
    emb = new Embedding({ numEmbeddings: 13, embeddingDim: 7 }).loadStateDict({ weight: { data: rng(1).floats(13 * 7), shape: [13, 7] } }, "", {
      weights: "q8",
    });
    const { config, dict } = decoderFixture("llama-tied");
    lm = CausalLM.fromConfig(config).loadStateDict(dict, "", { weights: "q8" });
  });
  afterAll(() => {
    emb.dispose();
    lm.dispose();
  });

  test("ids out of range throw before any kernel: no gather, no product, no memory held", () => {
    const gather = vi.spyOn(VocabTable.prototype, "gather");
    const project = vi.spyOn(VocabTable.prototype, "project");
    const live = memoryStats().liveBytes;
    try {
      expect(() => emb.forward([0, 13])).toThrow("Embedding.forward ids[1]: expected an integer in [0, 13), got number 13");
      expect(() => emb.forward({ data: Int32Array.of(1, -1), shape: [1, 2] })).toThrow("ids[0, 1]: expected an integer in [0, 13), got number -1");
      expect(() => emb.forward([2 ** 31])).toThrow(ArgumentError);
      expect(() => lm.forward([1, 67])).toThrow("inputIds[1]: expected an integer in [0, 67), got number 67");
      expect(() => lm.forward([NaN])).toThrow("[0]: expected an integer in [0, 67), got number NaN");
      expect(() => lm.forward({ data: Int32Array.of(3, 2 ** 31 - 1), shape: [1, 2] })).toThrow(ArgumentError);
      expect(gather).not.toHaveBeenCalled();
      expect(project).not.toHaveBeenCalled();
      expect(memoryStats().liveBytes).toBe(live);
    } finally {
      gather.mockRestore();
      project.mockRestore();
    }
    // and the modules still work
    expect(emb.forward([12]).shape).toEqual([1, 7]);
    expect(lm.forward([66]).shape).toEqual([1, 67]);
  });

  test("bad format names: an ArgumentError naming the option and the formats; nothing loaded", () => {
    const e = new Embedding({ numEmbeddings: 3, embeddingDim: 2 });
    const dict = { weight: { data: new Float32Array(6), shape: [3, 2] } };
    for (const bad of ["int8", "Q8", "", null, 8]) {
      expect(() => e.loadStateDict(dict, "", { weights: bad as never })).toThrow(ArgumentError);
      expect(() => e.loadStateDict(dict, "", { weights: bad as never })).toThrow(
        /^Embedding\.loadStateDict weights: expected "f32" or "f16" or "q8" or "q4", got /,
      );
      expect(() => quantize(e, bad as never)).toThrow(/^quantize format: expected "f32" or "f16" or "q8" or "q4", got /);
    }
    expect(() => e.forward([0])).toThrow(StateError);
    expect(e.weightBytes()).toBe(0);
    e.dispose();
  });

  test("a disposed q8 table is a StateError, and quantize() of it too", () => {
    const e = new Embedding({ numEmbeddings: 3, embeddingDim: 2 }).loadStateDict({ weight: { data: new Float32Array(6), shape: [3, 2] } }, "", {
      weights: "q8",
    });
    e.dispose();
    expect(() => e.forward([0])).toThrow(StateError);
    expect(() => quantize(e, "q8")).toThrow(StateError);
  });
});

describe("two threads give the same bits as one", () => {
  type Lib = typeof import("../src/index.js");
  let two: Lib;
  let TwoTable: typeof VocabTable;
  let twoScope: typeof withScope;
  beforeAll(async () => {
    two = await freshLibrary();
    TwoTable = (await import("../src/vocab-table.js")).VocabTable;
    twoScope = (await import("../src/module.js")).withScope;
    await two.init({ threads: 2, simd: "baseline" });
  });
  afterAll(() => two.shutdown());

  test.each(FORMATS.flatMap(({ name }) => [1, 5].map((M) => [name, M] as const)))("the LM head of a table of two blocks, %s, M = %i", (format, M) => {
    const [V, D] = TWO_BLOCKS;
    const r = rng(freshSeed());
    const dict = { weight: { data: r.floats(V * D, 0.1), shape: [V, D] } };
    const a = r.floats(M * D);
    const one = new VocabTable(V, D).loadStateDict(dict, "", { weights: format });
    const par = new TwoTable(V, D).loadStateDict(dict, "", { weights: format });
    const run = (t: VocabTable, scope: typeof withScope) =>
      scope((ctx) => {
        const into = new Float32Array(M * V);
        t.project(ctx, into, ctx.scope.put(a), M);
        return into;
      });
    expect(run(par, twoScope)).toEqual(run(one, withScope));
    one.dispose();
    par.dispose();
  });
});
