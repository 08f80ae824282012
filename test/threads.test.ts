import { readFileSync } from "node:fs";
import { afterAll, describe, expect, test, vi } from "vitest";
import { freshLibrary } from "./support/fresh.js";
import { attentionRef, expectClose, freshSeed, rng } from "./reference.js";
import { MARKED, diesInMarkedCall, diesWhenIdle, faultyKernels } from "./support/faulty-workers.js";

const fresh = freshLibrary;

const one = await fresh();
await one.init({ threads: 1, simd: "baseline" });
const two = await fresh();
await two.init({ threads: 2, simd: "baseline" });
afterAll(() => two.shutdown());

describe("two threads give the same bits as one", () => {
  test("runtimeInfo reports the threads", () => {
    expect(one.runtimeInfo()).toEqual({ simd: "baseline", threads: 1 });
    expect(two.runtimeInfo()).toEqual({ simd: "baseline", threads: 2 });
  });

  const cases: [string, number[], number[], object][] = [
    ["one head, rows split across threads", [1, 1, 203, 32], [1, 1, 150, 32], {}],
    ["one head, causal, with weights", [1, 1, 97, 16], [1, 1, 97, 16], { isCausal: true, returnWeights: true }],
    ["many heads", [2, 6, 33, 17], [2, 6, 70, 17], {}],
    ["GQA, bottom-right causal", [1, 8, 9, 8], [1, 2, 40, 8], { enableGqa: true, isCausal: true, causalAlignment: "bottom-right" }],
    ["decode: one query", [1, 12, 1, 64], [1, 12, 300, 64], {}],
  ];
  for (const [name, qShape, kShape, options] of cases) {
    test(`scaledDotProductAttention: ${name}`, () => {
      const seed = freshSeed();
      const r = rng(seed);
      const q = one.tensor(r.floats(qShape.reduce((a, b) => a * b, 1)), qShape);
      const k = one.tensor(r.floats(kShape.reduce((a, b) => a * b, 1)), kShape);
      const a = one.scaledDotProductAttention(q, k, k, options) as unknown as {
        data?: Float32Array;
        output?: { data: Float32Array };
        weights?: { data: Float32Array };
      };
      const b = two.scaledDotProductAttention(q, k, k, options) as unknown as typeof a;
      expect(b.data ?? b.output!.data).toEqual(a.data ?? a.output!.data);
      if (a.weights) expect(b.weights!.data).toEqual(a.weights.data);
      const [B, Hq, Lq, E] = qShape;
      const ref = attentionRef(
        q.data,
        k.data,
        k.data,
        { batch: [B], Hq, Hk: kShape[1], Lq, Lk: kShape[2], E, Ev: E },
        { causalOffset: "isCausal" in options ? ("causalAlignment" in options ? kShape[2] - Lq : 0) : undefined },
      );
      expectClose(b.data ?? b.output!.data, ref.out, [B, Hq, Lq, E], { atol: 2e-6, rtol: 1e-5 }, `seed ${seed}`);
    });
  }

  test("block-sparse, dilated window, ALiBi and soft-cap: rows split across threads on block boundaries", () => {
    const r = rng(freshSeed());
    const q = one.tensor(r.floats(203 * 16), [1, 1, 203, 16]);
    const layout = one.blockSparseLayout(203, 203, 24, { pattern: "bigbird", window: 1, global: 1, random: 1, seed: 3 });
    expect(two.scaledDotProductAttention(q, q, q, { blockSparse: { layout, blockSize: 24 } }).data).toEqual(
      one.scaledDotProductAttention(q, q, q, { blockSparse: { layout, blockSize: 24 } }).data,
    );
    const extras = { window: [20, 20] as [number, number], dilation: 2, alibi: true, softcap: 3 };
    expect(two.scaledDotProductAttention(q, q, q, extras).data).toEqual(one.scaledDotProductAttention(q, q, q, extras).data);
  });

  test("an encoder stack and KV-cache decoding", () => {
    const r = rng(freshSeed());
    const options = { layer: { dModel: 64, nhead: 4, dimFeedforward: 256, activation: "gelu" as const }, numLayers: 2, norm: true };
    const [a, b] = [new one.TransformerEncoder(options), new two.TransformerEncoder(options)];
    const dict = Object.fromEntries(
      a.params().map((p) => [
        p.key,
        one.tensor(
          r.floats(
            p.shape.reduce((x, y) => x * y, 1),
            0.3,
          ),
          p.shape,
        ),
      ]),
    );
    a.loadStateDict(dict);
    b.loadStateDict(dict);
    const x = one.tensor(r.floats(2 * 77 * 64), [2, 77, 64]);
    expect(b.forward(x, { isCausal: true }).data).toEqual(a.forward(x, { isCausal: true }).data);
    const [ca, cb] = [new one.KVCache(), new two.KVCache()];
    const step = one.tensor(r.floats(2 * 64), [2, 1, 64]);
    a.forward(x, { isCausal: true, cache: ca });
    b.forward(x, { isCausal: true, cache: cb });
    expect(b.forward(step, { isCausal: true, cache: cb }).data).toEqual(a.forward(step, { isCausal: true, cache: ca }).data);
  });

  test("one row (a decoding step): Linear splits the columns across threads, with the same bits", () => {
    const r = rng(freshSeed());
    const [N, K] = [1003, 1100]; // N * K past the pool's threshold; N not a multiple of 8
    const dict = { weight: one.tensor(r.floats(N * K, 0.05), [N, K]), bias: one.tensor(r.floats(N), [N]) };
    const [a, b] = [
      new one.Linear({ inFeatures: K, outFeatures: N }).loadStateDict(dict),
      new two.Linear({ inFeatures: K, outFeatures: N }).loadStateDict(dict),
    ];
    const x = one.tensor(r.floats(K), [1, K]);
    expect(b.forward(x).data).toEqual(a.forward(x).data);
    a.dispose();
    b.dispose();
  });

  test("memory stays flat over many calls on the pool", () => {
    const r = rng(freshSeed());
    const q = two.tensor(r.floats(4 * 64 * 32), [4, 64, 32]);
    two.scaledDotProductAttention(q, q, q);
    const before = two.memoryStats();
    for (let i = 0; i < 2000; i++) two.scaledDotProductAttention(q, q, q, { isCausal: i % 2 === 0 });
    expect(two.memoryStats()).toEqual(before);
  });
});

describe("thread options", () => {
  test("threads is a positive integer", async () => {
    const lib = await fresh();
    await expect(lib.init({ threads: 0 })).rejects.toThrow(/init threads: expected an integer from 1 to 64, got number 0/);
    await expect(lib.init({ threads: 1.5 })).rejects.toThrow(/init threads: expected an integer from 1 to 64, got number 1.5/);
  });

  test("without SharedArrayBuffer: one warning, one thread, same results", async () => {
    const lib = await fresh();
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    vi.stubGlobal("SharedArrayBuffer", undefined);
    try {
      await lib.init({ threads: 2 });
    } finally {
      vi.unstubAllGlobals();
    }
    expect(lib.runtimeInfo().threads).toBe(1);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0][0])).toMatch(/running on one thread instead of 2: SharedArrayBuffer is not available/);
    warn.mockRestore();
  });

  test("a binary with its own memory cannot run threads", async () => {
    const lib = await fresh();
    await expect(lib.init({ wasm: new Uint8Array(readFileSync(new URL("../build/kernels.wasm", import.meta.url))), threads: 2 })).rejects.toThrow(
      /threads need a shared-memory build/,
    );
  });
});

describe("a worker that dies", () => {
  // A library on two threads whose pool is swapped for one running a faulty worker script (the
  // pool's own behind a prelude: test/support/faulty-workers.ts) with a hang timeout of 500 ms.
  async function faultyPool(workerSource: (source: string) => string) {
    const lib = await fresh();
    await lib.init({ threads: 2, simd: "baseline" });
    const [{ runtime }, { Pool }] = await Promise.all([import("../src/init.js"), import("../src/threads.js")]);
    const rt = runtime();
    const module = new WebAssembly.Module(readFileSync(new URL("../build/kernels-threads.wasm", import.meta.url)));
    const { kernels, marked } = faultyKernels(rt.kernels);
    rt.pool.close();
    rt.pool = await Pool.start(kernels, module, rt.heap.memory, 2, { hangMs: 500, workerSource });
    return { lib, pool: rt.pool, marked };
  }
  const q = one.tensor(
    Float32Array.from({ length: 4 * 64 * 16 }, (_, i) => Math.sin(i)),
    [4, 64, 16],
  );
  const want = one.scaledDotProductAttention(q, q, q).data;
  const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));
  const marks = () => Array.from({ length: 6 }, () => [MARKED]);

  test("holding a task: the call fails with a ThreadError within the timeout, the workers are replaced, and later calls give the same bits", async () => {
    const { lib, pool, marked } = await faultyPool(diesInMarkedCall);
    expect(lib.scaledDotProductAttention(q, q, q).data).toEqual(want);
    for (const round of ["the first worker", "its replacement"]) {
      // a replacement takes part once it has started; until then this thread runs every task
      let error: unknown = null;
      let ms = 0;
      for (let tries = 0; ; tries++) {
        expect(tries, `${round} never took a task`).toBeLessThan(50);
        marked.calls = 0;
        const t0 = performance.now();
        try {
          pool.run(marks());
        } catch (e) {
          [error, ms] = [e, performance.now() - t0];
          break;
        }
        expect(marked.calls, "with no worker, this thread runs every task").toBe(6);
        await sleep(100);
      }
      expect(error, round).toBeInstanceOf(lib.ThreadError);
      expect(String(error), round).toMatch(/stopped before finishing its task \(no progress for 500 ms\).*replaced/);
      expect(ms, round).toBeLessThan(5_000);
      expect(marked.calls, `${round} took a task (and died in it)`).toBeLessThan(6);
      // at once, while the replacement starts, and after
      expect(lib.scaledDotProductAttention(q, q, q).data).toEqual(want);
      await sleep(200);
      for (let i = 0; i < 20; i++) expect(lib.scaledDotProductAttention(q, q, q).data).toEqual(want);
    }
    expect(lib.memoryStats().liveBytes).toBe(0);
    lib.shutdown();
  });

  test("work below Pool.dispatchMin stays on this thread: no worker is woken", async () => {
    const { lib, pool, marked } = await faultyPool(diesInMarkedCall);
    const { Pool } = await import("../src/threads.js");
    const setting = Pool.dispatchMin; // 0 in the tests (test/setup.ts, test/support/fresh.ts)
    Pool.dispatchMin = 2 ** 21;
    try {
      marked.calls = 0;
      pool.run(marks(), undefined, 2 ** 21 - 1); // no ThreadError: the worker that dies in a marked call gets none
      expect(marked.calls).toBe(6);
    } finally {
      Pool.dispatchMin = setting;
      lib.shutdown();
    }
  });

  test("idle: it costs nothing, this thread takes its share", async () => {
    const { lib, pool, marked } = await faultyPool(diesWhenIdle);
    pool.run(marks()); // no ThreadError: nothing waits for the dead worker
    expect(marked.calls, "tasks run on this thread").toBe(6);
    for (let i = 0; i < 20; i++) expect(lib.scaledDotProductAttention(q, q, q).data).toEqual(want);
    lib.shutdown();
  });
});
