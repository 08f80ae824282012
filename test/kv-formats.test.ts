// KV caches stored as f16 and q8 (KVCache / createCache / generate dtype, residentTensor's dtype
// for scaledDotProductAttention): decoding through
// MultiHeadAttention with identity projections (its heads are column slices of x, the key/value
// heads the first Hk of them) against a float64 oracle over the keys and values as stored
// (halves; int8 times the per-token, per-head scale, quantized by the rule of test/support/quantized.ts),
// at head sizes that take every path (read in place: 16, 64, 80; widened: 1, 7, 33), prefill,
// single tokens and chunks, batches and grouped heads; then NaN containment, bytes, errors, the
// decoder caches (fork, truncate, sliding windows stay exact), and greedy agreement.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import * as lib from "../src/index.js";
import { attentionRef, expectClose, freshSeed, rng } from "./reference.js";
import { quantizeRows, toHalf } from "./support/quantized.js";

beforeAll(() => lib.init());

type Dtype = "f32" | "f16" | "q8";

// rows (n, heads * hd) as a cache of `dtype` stores them, read back as numbers
function stored(x: Float32Array, n: number, heads: number, hd: number, dtype: Dtype): Float64Array {
  if (dtype === "f32") return Float64Array.from(x);
  if (dtype === "f16") return Float64Array.from(x, toHalf);
  const { q, scales } = quantizeRows(x, n * heads, hd);
  return Float64Array.from(q, (v, i) => v * scales[Math.floor(i / hd)]!);
}

// nn.MultiheadAttention whose projections are identities: q = x, k = v = the first kvDim columns of x
function identityMha(H: number, Hk: number, hd: number): lib.MultiHeadAttention {
  const E = H * hd;
  const kvDim = Hk * hd;
  const m = new lib.MultiHeadAttention({ embedDim: E, numHeads: H, numKvHeads: Hk, bias: false });
  const inProj = new Float32Array((E + 2 * kvDim) * E);
  for (let i = 0; i < E; i++) inProj[i * E + i] = 1;
  for (let part = 0; part < 2; part++) for (let i = 0; i < kvDim; i++) inProj[(E + part * kvDim + i) * E + i] = 1;
  const eye = Float32Array.from({ length: E * E }, (_, i) => (i % (E + 1) === 0 ? 1 : 0));
  return m.loadStateDict({ in_proj_weight: lib.tensor(inProj, [E + 2 * kvDim, E]), "out_proj.weight": lib.tensor(eye, [E, E]) });
}

// the oracle for the rows t0..t1 of every sequence, attending causally over the stored rows 0..t1
function oracle(
  x: Float32Array,
  keys: Float64Array[],
  B: number,
  L: number,
  H: number,
  Hk: number,
  hd: number,
  t0: number,
  t1: number,
): Float64Array {
  const E = H * hd;
  const kvDim = Hk * hd;
  const Lq = t1 - t0;
  const out = new Float64Array(B * Lq * E);
  for (let b = 0; b < B; b++) {
    // [H, Lq, hd] queries, [Hk, t1, hd] keys = values
    const q = Float32Array.from(
      { length: H * Lq * hd },
      (_, n) => x[(b * L + t0 + (Math.floor(n / hd) % Lq)) * E + Math.floor(n / (Lq * hd)) * hd + (n % hd)]!,
    );
    const kv = Float64Array.from(
      { length: Hk * t1 * hd },
      (_, n) => keys[b]![(Math.floor(n / hd) % t1) * kvDim + Math.floor(n / (t1 * hd)) * hd + (n % hd)]!,
    );
    const r = attentionRef(
      q,
      kv as unknown as Float32Array,
      kv as unknown as Float32Array,
      { batch: [1], Hq: H, Hk, Lq, Lk: t1, E: hd, Ev: hd },
      { causalOffset: t0 },
    );
    for (let h = 0; h < H; h++)
      for (let i = 0; i < Lq; i++) for (let e = 0; e < hd; e++) out[(b * Lq + i) * E + h * hd + e] = r.out[(h * Lq + i) * hd + e]!;
  }
  return out;
}

// float32 and halves: float32 rounding; q8: the kernel also rounds queries and the probabilities
// times value scales to int16 levels (relative 2^-16 of each row's largest), see assembly/kv.ts
const TOL: Record<Dtype, { atol: number; rtol: number }> = {
  f32: { atol: 2e-6, rtol: 1e-5 },
  f16: { atol: 2e-6, rtol: 1e-5 },
  q8: { atol: 1e-4, rtol: 1e-4 },
};

describe("KVCache dtype: decoding against a float64 oracle over the stored keys and values", () => {
  const shapes: [H: number, Hk: number, hd: number, B: number][] = [
    [2, 1, 1, 1],
    [3, 3, 7, 2],
    [4, 2, 16, 2],
    [2, 2, 33, 1],
    [4, 1, 64, 1],
    [2, 1, 80, 2],
  ];
  for (const dtype of ["f16", "q8"] as const) {
    for (const [H, Hk, hd, B] of shapes) {
      test(`${dtype}: ${H} heads over ${Hk}, head size ${hd}, batch ${B}: prefill 5, 3 single tokens, a chunk of 3, one more`, () => {
        const seed = freshSeed();
        const r = rng(seed);
        const E = H * hd;
        const kvDim = Hk * hd;
        const chunks = [5, 1, 1, 1, 3, 1];
        const L = chunks.reduce((a, b) => a + b, 0) + 64; // the last token sees 2 tiles of keys and more
        chunks.push(64);
        const x = r.floats(B * L * E);
        const mha = identityMha(H, Hk, hd);
        const cache = new lib.KVCache({ dtype, capacity: 4 });
        const keys = Array.from({ length: B }, () => new Float64Array(L * kvDim));
        let t0 = 0;
        for (const n of chunks) {
          const rows = Float32Array.from({ length: B * n * E }, (_, i) => x[(Math.floor(i / (n * E)) * L + t0) * E + (i % (n * E))]!);
          for (let b = 0; b < B; b++) {
            const kv = Float32Array.from({ length: n * kvDim }, (_, i) => x[(b * L + t0 + Math.floor(i / kvDim)) * E + (i % kvDim)]!);
            keys[b]!.set(stored(kv, n, Hk, hd, dtype), t0 * kvDim);
          }
          const t = lib.tensor(rows, [B, n, E]);
          const got = mha.forward(t, t, t, { isCausal: true, cache, needWeights: false }).output.data;
          expectClose(got, oracle(x, keys, B, L, H, Hk, hd, t0, t0 + n), [B, n, E], TOL[dtype], `seed ${seed}, tokens ${t0}..${t0 + n}`);
          t0 += n;
        }
        expect(cache.length).toBe(t0);
        cache.dispose();
        mha.dispose();
      });
    }
  }

  test("bytes: f16 half of f32, q8 a quarter plus a float32 scale per token and head", () => {
    const [H, Hk, hd, L] = [4, 2, 16, 20];
    const mha = identityMha(H, Hk, hd);
    const x = lib.tensor(rng(1).floats(L * H * hd), [1, L, H * hd]);
    const bytes = (["f32", "f16", "q8"] as const).map((dtype) => {
      const cache = new lib.KVCache({ dtype, capacity: 32 });
      mha.forward(x, x, x, { isCausal: true, cache, needWeights: false });
      const n = cache.byteLength;
      cache.dispose();
      return n;
    });
    expect(bytes).toEqual([2 * 32 * 4 * Hk * hd, 2 * 32 * 2 * Hk * hd, 2 * 32 * (Hk * hd + 4 * Hk)]);
    mha.dispose();
  });

  test("a NaN reaches only the rows that read it", () => {
    const [H, Hk, hd] = [2, 1, 64];
    const E = H * hd;
    const mha = identityMha(H, Hk, hd);
    for (const dtype of ["f16", "q8"] as const) {
      const x = rng(2).floats(10 * E);
      x[6 * E + 3] = Number.NaN; // token 6's key and value of head 0
      const cache = new lib.KVCache({ dtype });
      const prefix = lib.tensor(x.slice(0, 6 * E), [1, 6, E]);
      mha.forward(prefix, prefix, prefix, { isCausal: true, cache, needWeights: false });
      for (let t = 6; t < 10; t++) {
        const one = lib.tensor(x.slice(t * E, (t + 1) * E), [1, 1, E]);
        const out = mha.forward(one, one, one, { isCausal: true, cache, needWeights: false }).output.data;
        // every head reads key/value head 0; token 7 on: their queries are finite, the key of 6 is not
        if (t > 6) expect(Array.from(out).every(Number.isNaN), `${dtype} token ${t}`).toBe(true);
      }
      const before = new lib.KVCache({ dtype });
      const out = mha.forward(prefix, prefix, prefix, { isCausal: true, cache: before, needWeights: false }).output.data;
      expect(Array.from(out).every(Number.isFinite), dtype).toBe(true);
      cache.dispose();
      before.dispose();
    }
    mha.dispose();
  });

  test("bad dtypes and what a stored cache cannot do are ArgumentErrors before anything runs", () => {
    expect(() => new lib.KVCache({ dtype: "bf16" as Dtype })).toThrow(lib.ArgumentError);
    expect(() => new lib.KVCache({ dtype: "bf16" as Dtype })).toThrow('KVCache dtype: expected "f32", "f16" or "q8", got string bf16');
    const E = 8;
    const linear = new lib.MultiHeadAttention({ embedDim: E, numHeads: 2, attention: { linear: { rule: "linear" } } });
    const dict = Object.fromEntries(linear.params().map((p) => [p.key, lib.tensor(rng(3).floats(p.shape.reduce((a, b) => a * b, 1)), p.shape)]));
    linear.loadStateDict(dict);
    const x = lib.tensor(rng(4).floats(3 * E), [1, 3, E]);
    const cache = new lib.KVCache({ dtype: "q8" });
    expect(() => linear.forward(x, x, x, { isCausal: true, cache, needWeights: false })).toThrow(
      'cache: expected an "f32" cache with linear attention, got a "q8" cache',
    );
    const plain = new lib.MultiHeadAttention({ embedDim: E, numHeads: 2, attention: { window: [2, 0] } });
    plain.loadStateDict(dict);
    expect(() => plain.forward(x, x, x, { isCausal: true, cache, needWeights: false, globalTokens: [0] })).toThrow(
      'cache: expected an "f32" cache with globalTokens, got a "q8" cache',
    );
    expect(cache.length).toBe(0);
    expect(cache.byteLength).toBe(0);
    linear.dispose();
    plain.dispose();
  });
});

describe("residentTensor dtype: keys and values stored for scaledDotProductAttention", () => {
  // [B, H, L, D] rows as stored, per row of D
  const storedRows = (x: Float32Array, D: number, dtype: Dtype) => stored(x, x.length / D, 1, D, dtype);
  const cases: [B: number, Hq: number, Hk: number, Lq: number, Lk: number, E: number, Ev: number][] = [
    [1, 12, 12, 1, 300, 64, 64],
    [2, 4, 2, 1, 70, 16, 32],
    [1, 3, 3, 5, 33, 7, 9],
    [2, 2, 1, 3, 129, 80, 80],
    [1, 1, 1, 1, 1, 1, 1],
  ];
  for (const dtype of ["f16", "q8"] as const) {
    for (const [B, Hq, Hk, Lq, Lk, E, Ev] of cases) {
      test(`${dtype}: [${B}, ${Hq}/${Hk}, ${Lq} x ${Lk}], E ${E}, Ev ${Ev}, bottom-right causal and not`, () => {
        const seed = freshSeed();
        const r = rng(seed);
        const q = lib.tensor(r.floats(B * Hq * Lq * E), [B, Hq, Lq, E]);
        const k = r.floats(B * Hk * Lk * E);
        const v = r.floats(B * Hk * Lk * Ev);
        const rk = lib.residentTensor([B, Hk, Lk, E], k, { dtype });
        const rv = lib.residentTensor([B, Hk, Lk, Ev], v, { dtype });
        expect(rk.dtype).toBe(dtype);
        // data: a float32 copy of what is stored
        expect(Array.from(rk.data)).toEqual(Array.from(storedRows(k, E, dtype), Math.fround));
        const [kd, vd] = [storedRows(k, E, dtype), storedRows(v, Ev, dtype)] as unknown as Float32Array[];
        const d = { batch: [B], Hq, Hk, Lq, Lk, E, Ev };
        for (const isCausal of [false, true]) {
          const got = lib.scaledDotProductAttention(q, rk, rv, { isCausal, causalAlignment: "bottom-right", enableGqa: Hq !== Hk }) as lib.Tensor;
          const want = attentionRef(q.data, kd!, vd!, d, isCausal ? { causalOffset: Lk - Lq } : {}).out;
          expectClose(got.data, want, [B, Hq, Lq, Ev], TOL[dtype], `seed ${seed}, causal ${isCausal}`);
        }
        rk.dispose();
        rv.dispose();
      });
    }
  }

  test("f16 without Infinity or NaN takes the unchecked widening: the same bits as the checked one", () => {
    const r = rng(freshSeed());
    const [H, Lk, E] = [4, 200, 64];
    const q = lib.tensor(r.floats(H * E, 3), [1, H, 1, E]);
    const k = r.floats(H * (Lk + 1) * E, 2);
    const v = r.floats(H * (Lk + 1) * E, 5);
    // the same keys and values, plus one more each: finite, or Infinity / NaN (never read: keyLengths)
    const run = (extra: number) => {
      const [k2, v2] = [k.slice(), v.slice()];
      for (let h = 0; h < H; h++) {
        k2[(h * (Lk + 1) + Lk) * E] = extra;
        v2[(h * (Lk + 1) + Lk) * E + 1] = extra;
      }
      const rk = lib.residentTensor([1, H, Lk + 1, E], k2, { dtype: "f16" });
      const rv = lib.residentTensor([1, H, Lk + 1, E], v2, { dtype: "f16" });
      const out = (lib.scaledDotProductAttention(q, rk, rv, { keyLengths: Int32Array.of(Lk) }) as lib.Tensor).data;
      rk.dispose();
      rv.dispose();
      return out;
    };
    const fast = run(0.5);
    expect(run(Number.POSITIVE_INFINITY)).toEqual(fast);
    expect(run(Number.NaN)).toEqual(fast);
    expect(run(1e6)).toEqual(fast); // beyond a half's range: stored as Infinity
    // queries beyond 2^16 would overflow times 2^112: the checked widening, still finite and right
    const big = lib.tensor(
      q.data.map((x) => x * 1e5),
      q.shape,
    );
    const rk = lib.residentTensor([1, H, Lk + 1, E], k, { dtype: "f16" });
    const rv = lib.residentTensor([1, H, Lk + 1, E], v, { dtype: "f16" });
    const got = (lib.scaledDotProductAttention(big, rk, rv, { keyLengths: Int32Array.of(Lk) }) as lib.Tensor).data;
    expect(Array.from(got).every(Number.isFinite)).toBe(true);
    rk.dispose();
    rv.dispose();
  });

  test("stored tensors: key and value alike, no rope or globalTokens, and no other function takes one", () => {
    const q = lib.tensor(rng(1).floats(2 * 3 * 16), [1, 2, 3, 16]);
    const f32 = lib.tensor(rng(2).floats(2 * 3 * 16), [1, 2, 3, 16]);
    const q8 = lib.residentTensor([1, 2, 3, 16], f32.data, { dtype: "q8" });
    const f16 = lib.residentTensor([1, 2, 3, 16], f32.data, { dtype: "f16" });
    expect(() => lib.scaledDotProductAttention(q, q8, f32)).toThrow(
      'value: expected keys and values stored alike (float32, or ResidentTensors of one dtype), got key a ResidentTensor of dtype "q8" and value Float32Array',
    );
    expect(() => lib.scaledDotProductAttention(q, q8, f16)).toThrow(lib.ArgumentError);
    expect(() => lib.scaledDotProductAttention(q, q8, q8, { rope: {} })).toThrow(
      'key: expected a float32 tensor with rope (it rotates a copy), got a ResidentTensor of dtype "q8"',
    );
    expect(() => lib.scaledDotProductAttention(q8, f32, f32)).toThrow('query: expected a float32 tensor, got a ResidentTensor of dtype "q8"');
    expect(() => lib.linearAttention(q, f16, f16)).toThrow('key: expected a float32 tensor, got a ResidentTensor of dtype "f16"');
    expect(() => lib.residentTensor([2], [1, 2], { dtype: "q4" as Dtype })).toThrow(
      'residentTensor dtype: expected "f32", "f16" or "q8", got string q4',
    );
    expect(() => lib.residentTensor([], [1], { dtype: "q8" })).toThrow(lib.ShapeError);
    expect(lib.residentTensor([2, 0], undefined, { dtype: "q8" }).data).toHaveLength(0);
    const zeros = lib.residentTensor([3, 16], undefined, { dtype: "f16" });
    expect(Array.from(zeros.data)).toEqual(new Array(48).fill(0));
    for (const t of [q8, f16, zeros]) t.dispose();
    expect(() => q8.data).toThrow(lib.StateError);
  });

  test("rows past the kernels' i32: an OutOfMemoryError, as for float32, never a tensor over fewer bytes than its rows", () => {
    const before = lib.memoryStats().liveBytes;
    // 2^31 halves in a row are 2^32 bytes: counted in 32 bits they were 0 (a 1-byte tensor of 2^31 elements)
    const cases: [number[], Dtype][] = [
      [[1, 2 ** 31], "f32"],
      [[1, 2 ** 31], "f16"],
      [[2, 3 * 2 ** 30], "f16"],
      [[2, 2 ** 31], "q8"],
    ];
    for (const [shape, dtype] of cases) {
      expect(() => lib.residentTensor(shape, undefined, { dtype }), `${dtype} ${shape}`).toThrow(lib.OutOfMemoryError);
    }
    expect(lib.memoryStats().liveBytes).toBe(before);
  });
});

describe("CausalLM caches in f16 and q8", () => {
  const dir = new URL("./fixtures/decoders/", import.meta.url);
  const read = (name: string) => readFileSync(new URL(name, dir));
  const load = (name: string) =>
    lib.CausalLM.fromConfig(JSON.parse(read(`${name}.config.json`).toString("utf8"))).loadStateDict(lib.loadSafetensors(read(`${name}.safetensors`)));
  const prompt = [5, 17, 33, 8, 41, 12, 60, 9, 27];
  const tokens = [3, 50, 7, 22, 61, 14, 2, 38, 19, 44, 6, 30];

  // gemma2 and mistral slide over windows shorter than the 21 positions here
  for (const name of ["llama-tied", "gemma2", "mistral", "qwen3"]) {
    // a fork's or a truncated cache's new rows start a segment of their own: attention then merges
    // two runs of keys, a rounding apart (q8 in place: its int16 levels are per tile of keys)
    test(`${name}: fork, truncate and sliding windows read what a cache fed the same tokens reads`, () => {
      const model = load(name);
      for (const dtype of ["f16", "q8"] as const) {
        const a = model.createCache({ dtype });
        expect(a.dtype).toBe(dtype);
        model.forward(prompt, { cache: a });
        const fork = a.fork();
        expect(fork.dtype).toBe(dtype);
        const steps = tokens.map((t) => model.forward([t], { cache: a, lastOnly: true }).data);
        const near = (got: Float32Array, want: Float32Array, what: string) => {
          const max = Math.max(...Array.from(want, Math.abs));
          const tol = dtype === "q8" ? 5e-4 : 5e-5;
          want.forEach((w, i) => expect(Math.abs(got[i]! - w), `${dtype} ${what}, logit ${i}`).toBeLessThanOrEqual(tol * max));
        };
        tokens.forEach((t, i) => near(model.forward([t], { cache: fork, lastOnly: true }).data, steps[i]!, `fork step ${i}`));
        // back one column (sliding windows hold only the last few), the last token again
        const n = tokens.length - 1;
        a.truncate(prompt.length + n);
        tokens.slice(n).forEach((t, i) => near(model.forward([t], { cache: a, lastOnly: true }).data, steps[i + n]!, `truncated step ${i}`));
        // bytes: the same rows in a quarter (q8, with scales) or half (f16) of f32's
        const f32 = model.createCache();
        model.forward(prompt, { cache: f32 });
        const fresh = model.createCache({ dtype });
        model.forward(prompt, { cache: fresh });
        const { numKvHeads: heads, headDim } = model.config;
        const ratio = dtype === "f16" ? 0.5 : (heads * headDim + 4 * heads) / (4 * heads * headDim);
        expect(fresh.byteLength).toBe(f32.byteLength * ratio);
        for (const c of [a, fork, f32, fresh]) c.dispose();
      }
      model.dispose();
    });
  }

  test("decoding token by token reads what a prefill of the same tokens stores", () => {
    const model = load("qwen3");
    for (const dtype of ["f16", "q8"] as const) {
      const seq = [...prompt, ...tokens];
      const c = model.createCache({ dtype });
      model.forward(prompt, { cache: c });
      let last: Float32Array = new Float32Array(0);
      for (const t of tokens) last = model.forward([t], { cache: c, lastOnly: true }).data;
      // a prefill over the whole sequence stores the same rows; its last row attends over them
      const whole = model.createCache({ dtype });
      const want = model.forward(seq, { cache: whole, lastOnly: true }).data;
      const max = Math.max(...Array.from(want, Math.abs));
      for (let i = 0; i < want.length; i++) expect(Math.abs(last[i]! - want[i]!), `${dtype} logit ${i}`).toBeLessThanOrEqual(2e-4 * max);
      c.dispose();
      whole.dispose();
    }
    model.dispose();
  });

  test("createCache and generate take the dtype; anything else is an ArgumentError", () => {
    const model = load("llama-tied");
    expect(() => model.createCache({ dtype: "bf16" as Dtype })).toThrow('createCache dtype: expected "f32", "f16" or "q8", got string bf16');
    expect(() => model.generate(prompt, { cacheDtype: "int8" as Dtype })).toThrow(
      'generate cacheDtype: expected "f32", "f16" or "q8", got string int8',
    );
    const f32 = model.generate(prompt, { maxNewTokens: 8, eosTokenId: [] });
    expect(model.generate(prompt, { maxNewTokens: 8, eosTokenId: [], cacheDtype: "f16" })).toHaveLength(8);
    expect(f32).toHaveLength(8);
    model.dispose();
  });
});

describe("greedy decoding with a q8 cache: tokens that change in 64 steps (teacher-forced on the f32 choices)", () => {
  const argmax = (a: Float32Array) => a.indexOf(Math.max(...a));
  const dir = new URL("./fixtures/decoders/", import.meta.url);
  const models: [string, URL, URL][] = [
    [
      "tiny-lm (trained)",
      new URL("../examples/tiny-lm/config.json", import.meta.url),
      new URL("../examples/tiny-lm/model.safetensors", import.meta.url),
    ],
    ...["llama-tied", "llama-untied", "mistral", "qwen2", "qwen3", "gemma2"].map(
      (n) => [n, new URL(`${n}.config.json`, dir), new URL(`${n}.safetensors`, dir)] as [string, URL, URL],
    ),
  ];
  const changed: Record<string, number> = {};
  afterAll(() => console.log(`greedy tokens changed by a q8 cache in 64 steps: ${JSON.stringify(changed)}`));
  for (const [name, config, weights] of models) {
    test(name, () => {
      const model = lib.CausalLM.fromConfig(JSON.parse(readFileSync(config, "utf8"))).loadStateDict(lib.loadSafetensors(readFileSync(weights)));
      const V = model.config.vocabSize;
      const prompt = Array.from({ length: 8 }, (_, i) => (i * 7 + 3) % V);
      const ref = model.createCache();
      const q8 = model.createCache({ dtype: "q8" });
      let a = model.forward(prompt, { cache: ref, lastOnly: true }).data;
      let b = model.forward(prompt, { cache: q8, lastOnly: true }).data;
      let n = 0;
      for (let s = 0; s < 64; s++) {
        const t = argmax(a);
        if (argmax(b) !== t) n++;
        a = model.forward([t], { cache: ref, lastOnly: true }).data;
        b = model.forward([t], { cache: q8, lastOnly: true }).data;
      }
      changed[name] = n;
      // the trained model: none; random-weight fixtures have near-ties, at most 2 of 64 measured
      expect(n).toBeLessThanOrEqual(name.startsWith("tiny-lm") ? 1 : 2);
      ref.dispose();
      q8.dispose();
      model.dispose();
    });
  }
});
