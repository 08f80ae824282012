// Issue #10, the smaller ones: resident data in calls that grow the memory, init() and shutdown()
// in every order, foreign binaries, option names that are Object.prototype's, a module (or a
// resident input, or a cache) disposed during its own call, a getter that calls the library
// during a call, and objects kept across shutdown() + init(). Each test gets its own copy of the
// library (init state is per copy), as in test/init.test.ts.
import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { type Lib, freshLibrary } from "./support/fresh.js";
import { rng } from "./reference.js";
import { canary } from "./support/canary.js";

async function fresh(init = true): Promise<Lib> {
  const lib = await freshLibrary();
  if (init) await lib.init({ simd: "baseline" });
  return lib;
}

const r = rng(88);
const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const bits = (x: Float32Array) => Array.from(new Uint32Array(x.slice().buffer));
const floats = (shape: number[], scale = 1) => r.floats(size(shape), scale);
function loaded<M extends InstanceType<Lib["Module"]>>(lib: Lib, m: M): M {
  return m.loadStateDict(Object.fromEntries(m.params().map((p) => [p.key, lib.tensor(floats([...p.shape], 0.3), p.shape)])));
}

/** Runs `call`; it must return (then `check` its result) or throw a WasmAttentionError, never another error. */
function worksOrClearError<T>(lib: Lib, call: () => T, check: (x: T) => void): void {
  let out: T;
  try {
    out = call();
  } catch (e) {
    expect(e, `${(e as Error)?.name}: ${(e as Error)?.message}`).toBeInstanceOf(lib.WasmAttentionError);
    return;
  }
  check(out);
}

describe("resident data in a call that grows WebAssembly memory: it works or gives a WasmAttentionError, never a raw 'detached ArrayBuffer' TypeError", () => {
  test("a resident float attnMask in scaledDotProductAttention", async () => {
    const lib = await fresh();
    const [Lq, Lk] = [64, 64];
    const maskData = Float32Array.from({ length: Lq * Lk }, (_, n) => (n % 7 === 0 ? -Infinity : (n % 5) / 10));
    const mask = lib.residentTensor([Lq, Lk], maskData);
    const q = lib.tensor(floats([16, Lq, 64]), [16, Lq, 64]); // copying it in grows the memory
    const before = lib.memoryStats().bufferBytes;
    worksOrClearError(
      lib,
      () => lib.scaledDotProductAttention(q, q, q, { attnMask: mask }),
      (out) => {
        expect(bits(out.data)).toEqual(bits(lib.scaledDotProductAttention(q, q, q, { attnMask: lib.tensor(maskData, [Lq, Lk]) }).data));
      },
    );
    expect(lib.memoryStats().bufferBytes, "the call was meant to grow the memory").toBeGreaterThan(before);
  });

  const mhaMasks: [string, boolean, boolean][] = [
    ["a resident attnMask", true, false],
    ["a resident keyPaddingMask", false, true],
    ["a resident attnMask and keyPaddingMask together", true, true],
  ];
  for (const [name, useAttn, usePad] of mhaMasks) {
    test(`${name} in MultiHeadAttention.forward`, async () => {
      const lib = await fresh();
      const mha = loaded(lib, new lib.MultiHeadAttention({ embedDim: 64, numHeads: 4 }));
      const [B, L] = [8, 64];
      const attnData = Float32Array.from({ length: L * L }, (_, n) => (n % 9 === 0 ? -Infinity : 0));
      const padData = Float32Array.from({ length: B * L }, (_, n) => (n % 11 === 3 ? -Infinity : 0));
      const resident = {
        attnMask: useAttn ? lib.residentTensor([L, L], attnData) : undefined,
        keyPaddingMask: usePad ? lib.residentTensor([B, L], padData) : undefined,
      };
      const plain = {
        attnMask: useAttn ? lib.tensor(attnData, [L, L]) : undefined,
        keyPaddingMask: usePad ? lib.tensor(padData, [B, L]) : undefined,
      };
      const x = lib.tensor(floats([B, L, 64]), [B, L, 64]);
      const before = lib.memoryStats().bufferBytes;
      worksOrClearError(
        lib,
        () => mha.forward(x, x, x, resident),
        (out) => {
          const want = mha.forward(x, x, x, plain);
          expect(bits(out.output.data)).toEqual(bits(want.output.data));
          expect(bits(out.weights!.data)).toEqual(bits(want.weights!.data));
        },
      );
      expect(lib.memoryStats().bufferBytes, "the call was meant to grow the memory").toBeGreaterThan(before);
    });
  }

  // tensor(resident.data, shape) is a plain tensor whose data is a view of WebAssembly memory

  const calls: [string, number[], (lib: Lib) => (t: { data: Float32Array; shape: readonly number[] }) => Float32Array][] = [
    ["scaledDotProductAttention", [4, 256, 256], (lib) => (t) => lib.scaledDotProductAttention(t, t, t).data],
    [
      "Linear.forward",
      [4, 256, 256],
      (lib) => {
        const m = loaded(lib, new lib.Linear({ inFeatures: 256, outFeatures: 256 }));
        return (t) => m.forward(t).data;
      },
    ],
    [
      "LayerNorm.forward",
      [4, 256, 256],
      (lib) => {
        const m = loaded(lib, new lib.LayerNorm({ normalizedShape: 256 }));
        return (t) => m.forward(t).data;
      },
    ],
    [
      "MultiHeadAttention.forward (query = key = value)",
      [4, 256, 64],
      (lib) => {
        const m = loaded(lib, new lib.MultiHeadAttention({ embedDim: 64, numHeads: 4 }));
        return (t) => m.forward(t, t, t).output.data;
      },
    ],
    [
      "MultiHeadAttention.forward (resident view as the key only)",
      [4, 256, 64],
      (lib) => {
        const m = loaded(lib, new lib.MultiHeadAttention({ embedDim: 64, numHeads: 4 }));
        const q = lib.tensor(floats([4, 8, 64]), [4, 8, 64]);
        return (t) => m.forward(q, t, t).output.data;
      },
    ],
    [
      "TransformerEncoderLayer.forward",
      [4, 256, 64],
      (lib) => {
        const m = loaded(lib, new lib.TransformerEncoderLayer({ dModel: 64, nhead: 4, dimFeedforward: 128 }));
        return (t) => m.forward(t).data;
      },
    ],
    ["linearAttention", [4, 256, 256], (lib) => (t) => lib.linearAttention(t, t, t).data],
  ];
  for (const [name, shape, make] of calls) {
    test(`tensor(resident.data, shape) through ${name}`, async () => {
      const lib = await fresh();
      const run = make(lib);
      const resident = lib.residentTensor(shape, floats(shape));
      const copy = resident.data.slice();
      const view = lib.tensor(resident.data, shape);
      const before = lib.memoryStats().bufferBytes;
      worksOrClearError(
        lib,
        () => run(view),
        (out) => expect(bits(out)).toEqual(bits(run(lib.tensor(copy, shape)))),
      );
      expect(lib.memoryStats().bufferBytes, "the call was meant to grow the memory").toBeGreaterThan(before);
    });
  }
});

describe("init() and shutdown()", () => {
  test("shutdown() while init() is pending: the late load does not install itself; calls throw InitError until a new init()", async () => {
    const lib = await fresh(false);
    const x = lib.tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
    const loading = lib.init({ simd: "baseline" });
    lib.shutdown();
    await loading.catch(() => {}); // resolving or rejecting are both fine
    await new Promise((ok) => setTimeout(ok, 50));
    expect(() => lib.scaledDotProductAttention(x, x, x)).toThrow(lib.InitError);
    expect(() => lib.runtimeInfo()).toThrow(lib.InitError);
    await lib.init({ simd: "baseline" });
    expect(lib.scaledDotProductAttention(x, x, x).shape).toEqual([2, 2]);
  });

  test("shutdown() while init({ threads: 2 }) is pending: no pool installs itself", async () => {
    const lib = await fresh(false);
    const x = lib.tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
    const loading = lib.init({ simd: "baseline", threads: 2 });
    lib.shutdown();
    await loading.catch(() => {});
    await new Promise((ok) => setTimeout(ok, 50));
    expect(() => lib.scaledDotProductAttention(x, x, x)).toThrow(lib.InitError);
    await lib.init({ simd: "baseline" });
    expect(lib.runtimeInfo().threads).toBe(1);
    lib.shutdown();
  });

  const invalid: [string, unknown][] = [
    ['{ simd: "nope" }', { simd: "nope" }],
    ["{ threads: -1 }", { threads: -1 }],
    ["{ threads: 1.5 }", { threads: 1.5 }],
    ['{ deterministic: "yes" }', { deterministic: "yes" }],
    ["an unknown option { thread: 2 }", { thread: 2 }],
    ['{ simd: "relaxed", deterministic: true }', { simd: "relaxed", deterministic: true }],
  ];
  for (const [name, options] of invalid) {
    test(`init(${name}) after a successful init() rejects with an ArgumentError (and keeps the loaded module)`, async () => {
      const lib = await fresh();
      await expect(lib.init(options as never)).rejects.toThrow(lib.ArgumentError);
      const x = lib.tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
      expect(lib.scaledDotProductAttention(x, x, x).shape).toEqual([2, 2]);
    });
  }

  test("init() asking for other valid options than the loaded ones is an InitError naming what is loaded; the same options resolve", async () => {
    const lib = await fresh();
    await expect(lib.init({ simd: "relaxed" })).rejects.toThrow(lib.InitError);
    await expect(lib.init({ simd: "baseline", threads: 2 })).rejects.toThrow(/is loaded; this call asks for .*2 threads.*shutdown\(\) first/);
    await expect(lib.init({ simd: "baseline" })).resolves.toBeUndefined();
  });

  test("init(a string) after a successful init() rejects with a WasmAttentionError (before it, an ArgumentError), keeping the loaded module", async () => {
    const lib = await fresh();
    await expect(lib.init("kernels.wasm" as never)).rejects.toThrow(lib.WasmAttentionError);
    const x = lib.tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
    expect(lib.scaledDotProductAttention(x, x, x).shape).toEqual([2, 2]);
  });

  const foreign: [string, () => unknown][] = [
    ["a WebAssembly.Module with no exports", () => new WebAssembly.Module(new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]))],
    ["the bytes of a valid module with no exports", () => new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00])],
    // (module (memory (export "memory") 1)): a memory, none of the kernels
    [
      "a module that exports only a memory",
      () =>
        new WebAssembly.Module(
          new Uint8Array([
            0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x0a, 0x01, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79,
            0x02, 0x00,
          ]),
        ),
    ],
    ["a missing file: URL", () => new URL("./no-such-kernels.wasm", import.meta.url)],
    ["{ wasm: a missing file: URL }", () => ({ wasm: new URL("./no-such-kernels.wasm", import.meta.url) })],
  ];
  for (const [name, source] of foreign) {
    test(`init(${name}) rejects with an InitError (not a raw TypeError or ENOENT), and a later init() works`, async () => {
      const lib = await fresh(false);
      await expect(lib.init(source() as never)).rejects.toThrow(lib.InitError);
      await lib.init({ wasm: new WebAssembly.Module(readFileSync(new URL("../build/kernels.wasm", import.meta.url))) });
      const x = lib.tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
      expect(lib.scaledDotProductAttention(x, x, x).shape).toEqual([2, 2]);
    });
  }
});

describe("option values that are names on Object.prototype", () => {
  for (const featureMap of ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"]) {
    test(`linearAttention featureMap "${featureMap}" is an ArgumentError (also in LinearAttentionState and attention.linear)`, async () => {
      const lib = await fresh();
      const x = lib.tensor(floats([2, 5, 4]), [2, 5, 4]);
      expect(() => lib.linearAttention(x, x, x, { featureMap: featureMap as never })).toThrow(lib.ArgumentError);
      expect(() => new lib.LinearAttentionState([2], 4, 4, { featureMap: featureMap as never })).toThrow(lib.ArgumentError);
      expect(() => new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2, attention: { linear: { featureMap: featureMap as never } } })).toThrow(
        lib.ArgumentError,
      );
    });
  }
});

describe("dispose() from inside the module's own forward (a getter of its input): a StateError or the right answer, never a silent wrong one", () => {
  // a tensor whose `shape` (or `data`) getter calls dispose() on its `read`-th read
  function disposing(x: { data: Float32Array; shape: readonly number[] }, what: "shape" | "data", read: number, dispose: () => void) {
    let reads = 0;
    const get = (value: unknown) => () => {
      if (++reads === read) dispose();
      return value;
    };
    return Object.defineProperties(
      {},
      {
        data: what === "data" ? { get: get(x.data), enumerable: true } : { value: x.data, enumerable: true },
        shape: what === "shape" ? { get: get(x.shape), enumerable: true } : { value: x.shape, enumerable: true },
      },
    ) as { data: Float32Array; shape: readonly number[] };
  }

  const modules: [
    string,
    (lib: Lib) => { module: { dispose(): void }; input: number[]; run: (x: { data: Float32Array; shape: readonly number[] }) => Float32Array },
  ][] = [
    [
      "MultiHeadAttention",
      (lib) => {
        const m = loaded(lib, new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 }));
        const kv = lib.tensor(floats([2, 5, 8]), [2, 5, 8]);
        return { module: m, input: [2, 4, 8], run: (x) => m.forward(x, kv, kv).output.data };
      },
    ],
    [
      "Linear",
      (lib) => {
        const m = loaded(lib, new lib.Linear({ inFeatures: 8, outFeatures: 3 }));
        return { module: m, input: [2, 4, 8], run: (x) => m.forward(x).data };
      },
    ],
    [
      "LayerNorm",
      (lib) => {
        const m = loaded(lib, new lib.LayerNorm({ normalizedShape: 8 }));
        return { module: m, input: [2, 4, 8], run: (x) => m.forward(x).data };
      },
    ],
    [
      "TransformerEncoder",
      (lib) => {
        const m = loaded(lib, new lib.TransformerEncoder({ layer: { dModel: 8, nhead: 2, dimFeedforward: 16 }, numLayers: 2 }));
        return { module: m, input: [2, 4, 8], run: (x) => m.forward(x).data };
      },
    ],
  ];
  for (const [name, make] of modules) {
    for (const what of ["shape", "data"] as const) {
      for (const read of [1, 2, 3]) {
        test(`${name}: the input's ${what} getter disposes the module on its read ${read}`, async () => {
          const lib = await fresh();
          const base = lib.memoryStats().liveBytes;
          const { module, input, run } = make(lib);
          const x = lib.tensor(floats(input), input);
          const want = run(x);
          const check = canary(lib);
          let disposed = false;
          const hostile = disposing(x, what, read, () => {
            module.dispose();
            disposed = true;
          });
          worksOrClearError(
            lib,
            () => run(hostile),
            (got) => expect(bits(got), "a forward that returned after its module was disposed").toEqual(bits(want)),
          );
          check();
          check.dispose();
          if (!disposed) module.dispose(); // the getter was not read that often: nothing to test past this
          expect(() => run(x)).toThrow(lib.StateError);
          expect(lib.memoryStats().liveBytes).toBe(base);
        });
      }
    }
  }

  test("scaledDotProductAttention: a resident query disposed by the key's shape getter", async () => {
    const lib = await fresh();
    const base = lib.memoryStats().liveBytes;
    const q = lib.residentTensor([2, 6, 8], floats([2, 6, 8]));
    const k = lib.tensor(floats([2, 9, 8]), [2, 9, 8]);
    const want = lib.scaledDotProductAttention(q, k, k).data;
    const check = canary(lib);
    for (const read of [1, 2, 3]) {
      const q2 = lib.residentTensor([2, 6, 8], q.data);
      worksOrClearError(
        lib,
        () =>
          lib.scaledDotProductAttention(
            q2,
            disposing(k, "shape", read, () => {
              q2.dispose();
              lib.residentTensor([2, 6, 8]); // reuses q2's bytes if they were freed
            }),
            k,
          ),
        (got) => expect(bits(got.data)).toEqual(bits(want)),
      );
    }
    check();
    check.dispose();
    q.dispose();
    // q2s were disposed by the getters; the blocks the getters made are the only ones left
    expect(lib.memoryStats().liveBytes).toBe(base + 3 * 2 * 6 * 8 * 4);
  });

  test("MultiHeadAttention decoding: the cache disposed by the input's getter is a StateError or the right answer, freed once", async () => {
    const lib = await fresh();
    const m = loaded(lib, new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 }));
    const x = lib.tensor(floats([1, 3, 8]), [1, 3, 8]);
    const want = m.forward(x, x, x, { isCausal: true, cache: new lib.KVCache() }).output.data;
    const base = lib.memoryStats().liveBytes;
    for (const read of [1, 2, 3, 4]) {
      const cache = new lib.KVCache();
      const hostile = disposing(x, "data", read, () => cache.dispose());
      worksOrClearError(
        lib,
        () => m.forward(hostile, hostile, hostile, { isCausal: true, cache }).output.data,
        (got) => expect(bits(got)).toEqual(bits(want)),
      );
      expect(() => cache.dispose()).not.toThrow();
      expect(lib.memoryStats().liveBytes).toBe(base);
    }
  });
});

describe("a getter of an input that calls the library during the call (grows the memory, runs another call)", () => {
  test("every forward gives the bits of the honest call or a WasmAttentionError, and writes nothing outside its memory", async () => {
    const lib = await fresh();
    const mha = loaded(lib, new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 }));
    const enc = loaded(lib, new lib.TransformerEncoderLayer({ dModel: 8, nhead: 2, dimFeedforward: 16 }));
    const dec = loaded(lib, new lib.TransformerDecoderLayer({ dModel: 8, nhead: 2, dimFeedforward: 16 }));
    const lin = loaded(lib, new lib.Linear({ inFeatures: 8, outFeatures: 3 }));
    const x = lib.tensor(floats([2, 6, 8]), [2, 6, 8]);
    const m = lib.tensor(floats([2, 5, 8]), [2, 5, 8]);
    const q4 = lib.tensor(floats([1, 2, 6, 8]), [1, 2, 6, 8]);
    const held: { dispose(): void }[] = [];
    const actions: Record<string, () => void> = {
      "grows the memory": () => held.push(lib.residentTensor([1 << 20])),
      "grows and frees": () => lib.residentTensor([1 << 21]).dispose(),
      "runs scaledDotProductAttention": () => void lib.scaledDotProductAttention(q4, q4, q4, { returnWeights: true }),
      "runs the same module": () => void mha.forward(x, m, m),
    };
    type T = { data: Float32Array; shape: readonly number[] };
    const calls: [string, T, (t: T) => Float32Array][] = [
      ["scaledDotProductAttention query", q4, (t) => lib.scaledDotProductAttention(t, q4, q4).data],
      ["scaledDotProductAttention value", q4, (t) => lib.scaledDotProductAttention(q4, q4, t).data],
      ["MultiHeadAttention query", x, (t) => mha.forward(t, m, m).output.data],
      ["MultiHeadAttention key", m, (t) => mha.forward(x, t, m).output.data],
      ["TransformerEncoderLayer src", x, (t) => enc.forward(t).data],
      ["TransformerDecoderLayer memory", m, (t) => dec.forward(x, t).data],
      ["Linear x", x, (t) => lin.forward(t).data],
      ["linearAttention query", q4, (t) => lib.linearAttention(t, q4, q4).data],
    ];
    const failures: string[] = [];
    for (const [name, input, call] of calls) {
      const want = bits(call(input));
      for (const [actName, act] of Object.entries(actions)) {
        for (const which of ["data", "shape"] as const) {
          for (let read = 1; read <= 3; read++) {
            let reads = 0;
            const hostile = Object.defineProperties(
              {},
              {
                data:
                  which === "data"
                    ? {
                        get: () => {
                          if (++reads === read) act();
                          return input.data;
                        },
                        enumerable: true,
                      }
                    : { value: input.data, enumerable: true },
                shape:
                  which === "shape"
                    ? {
                        get: () => {
                          if (++reads === read) act();
                          return input.shape;
                        },
                        enumerable: true,
                      }
                    : { value: input.shape, enumerable: true },
              },
            ) as T;
            const guard = canary(lib);
            const what = `${name}: the ${which} getter ${actName} on its read ${read}`;
            try {
              if (JSON.stringify(bits(call(hostile))) !== JSON.stringify(want)) failures.push(`${what}: a wrong answer`);
            } catch (e) {
              if (!(e instanceof lib.WasmAttentionError)) failures.push(`${what}: ${(e as Error)?.name}: ${(e as Error)?.message}`);
            }
            try {
              guard();
            } catch (e) {
              failures.push(`${what}: ${(e as Error).message}`);
            }
            guard.dispose();
          }
        }
      }
    }
    held.forEach((h) => h.dispose());
    expect(failures).toEqual([]);
  });
});

describe("objects made before shutdown() and used after a new init(): a StateError, not silent wrong answers", () => {
  async function reinitialised() {
    const lib = await fresh();
    const mha = loaded(lib, new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 }));
    const x = lib.tensor(floats([1, 4, 8]), [1, 4, 8]);
    const cache = new lib.KVCache();
    mha.forward(x, x, x, { isCausal: true, cache });
    const resident = lib.residentTensor([1, 4, 8], floats([1, 4, 8]));
    const state = new lib.LinearAttentionState([1], 8, 8);
    lib.shutdown();
    await lib.init({ simd: "baseline" });
    return { lib, mha, x, cache, resident, state };
  }

  test("a module loaded before", async () => {
    const { lib, mha, x } = await reinitialised();
    expect(() => mha.forward(x, x, x)).toThrow(lib.StateError);
  });

  test("a KV cache filled before, with a module loaded after", async () => {
    const { lib, x, cache } = await reinitialised();
    const mha = loaded(lib, new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2 }));
    expect(() => mha.forward(x, x, x, { isCausal: true, cache })).toThrow(lib.StateError);
  });

  test("a resident tensor made before, as an input and through its data", async () => {
    const { lib, resident } = await reinitialised();
    expect(() => lib.scaledDotProductAttention(resident, resident, resident)).toThrow(lib.StateError);
    expect(() => resident.data).toThrow(lib.StateError);
  });

  test("a LinearAttentionState made before", async () => {
    const { lib, state } = await reinitialised();
    const q = lib.tensor(floats([1, 1, 8]), [1, 1, 8]);
    expect(() => state.step(q, q, q)).toThrow(lib.StateError);
  });

  test("disposing them after the new init() does not touch the new memory", async () => {
    const { lib, mha, cache, resident, state } = await reinitialised();
    const keep = lib.residentTensor([64], floats([64]));
    const snapshot = bits(keep.data);
    const live = lib.memoryStats().liveBytes;
    for (const o of [mha, cache, resident, state]) expect(() => o.dispose()).not.toThrow();
    expect(lib.memoryStats().liveBytes).toBe(live);
    expect(bits(keep.data)).toEqual(snapshot);
  });
});
