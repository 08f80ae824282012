// Property tests (fast-check) over random shapes, masks, options and values: the public functions
// agree with the float64 reference, and loadSafetensors survives any mangled file. `npm test` runs
// a fixed seed; `npm run fuzz` runs many more with a fresh one; FUZZ_SEED and FUZZ_RUNS choose
// (test/support/fuzz.ts), and a failure prints the command that replays it.
import fc from "fast-check";
import { beforeAll, describe, expect, test } from "vitest";
import * as lib from "../src/index.js";
import { attentionRef, expectClose, mhaRef } from "./reference.js";
import { FUZZ_RUNS, FUZZ_SEED, assertProperty } from "./support/fuzz.js";

beforeAll(() => lib.init());

const floats = (n: number, scale = 1) =>
  fc.float32Array({ minLength: n, maxLength: n, min: -scale, max: scale, noNaN: true, noDefaultInfinity: true });

describe(`properties (FUZZ_SEED=${FUZZ_SEED}, FUZZ_RUNS=${FUZZ_RUNS})`, () => {
  test("scaledDotProductAttention equals the float64 reference", ({ task }) => {
    const problem = fc
      .record({
        B: fc.integer({ min: 1, max: 2 }),
        Hk: fc.integer({ min: 1, max: 3 }),
        group: fc.integer({ min: 1, max: 3 }),
        Lq: fc.integer({ min: 1, max: 40 }),
        Lk: fc.integer({ min: 1, max: 80 }),
        E: fc.integer({ min: 1, max: 40 }),
        Ev: fc.integer({ min: 1, max: 20 }),
        mask: fc.constantFrom("none", "bool", "float", "padding"),
        causal: fc.constantFrom("none", "top-left", "bottom-right"),
        window: fc.option(fc.tuple(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 20 }))),
        dilation: fc.integer({ min: 1, max: 4 }),
        alibi: fc.boolean(),
        softcap: fc.option(fc.double({ min: 0.5, max: 10, noNaN: true })),
        scale: fc.option(fc.double({ min: 0.01, max: 2, noNaN: true })),
      })
      .chain((p) =>
        fc.record({
          p: fc.constant(p),
          q: floats(p.B * p.Hk * p.group * p.Lq * p.E, 2),
          k: floats(p.B * p.Hk * p.Lk * p.E, 2),
          v: floats(p.B * p.Hk * p.Lk * p.Ev),
          m: fc.uint8Array({ minLength: p.Lq * p.Lk, maxLength: p.Lq * p.Lk, max: 3 }),
        }),
      );
    assertProperty(
      task,
      fc.property(problem, ({ p, q, k, v, m }) => {
        const Hq = p.Hk * p.group;
        const qt = lib.tensor(q, [p.B, Hq, p.Lq, p.E]);
        const kt = lib.tensor(k, [p.B, p.Hk, p.Lk, p.E]);
        const vt = lib.tensor(v, [p.B, p.Hk, p.Lk, p.Ev]);
        const attnMask =
          p.mask === "bool"
            ? lib.tensor(
                m.map((x) => (x ? 1 : 0)),
                [p.Lq, p.Lk],
              )
            : p.mask === "float"
              ? lib.tensor(
                  Float32Array.from(m, (x) => (x === 0 ? -Infinity : x - 1.5)),
                  [p.Lq, p.Lk],
                )
              : p.mask === "padding"
                ? lib.tensor(
                    Uint8Array.from({ length: p.Lk }, (_, j) => (j % 3 === 2 ? 0 : 1)),
                    [1, 1, 1, p.Lk],
                  )
                : undefined;
        const causal = p.causal !== "none" && !attnMask;
        const diag = p.causal === "bottom-right" ? p.Lk - p.Lq : 0;
        const window: [number, number] | undefined = p.window ? [p.window[0], causal ? 0 : p.window[1]] : undefined;
        const dilation = window ? p.dilation : 1;
        const softcap = p.softcap === null ? undefined : Math.fround(p.softcap);
        const out = lib.scaledDotProductAttention(qt, kt, vt, {
          attnMask,
          isCausal: causal && !window,
          causalAlignment: p.causal === "none" ? undefined : p.causal,
          window,
          dilation,
          softcap,
          alibi: p.alibi,
          scale: p.scale ?? undefined,
          enableGqa: p.group > 1,
        });
        const ref = attentionRef(
          q,
          k,
          v,
          { batch: [p.B], Hq, Hk: p.Hk, Lq: p.Lq, Lk: p.Lk, E: p.E, Ev: p.Ev },
          {
            mask: attnMask,
            scale: p.scale ?? undefined,
            causalOffset: causal && !window ? diag : undefined,
            window,
            diag,
            dilation,
            softcap,
            slopes: p.alibi ? lib.alibiSlopes(Hq).map(Math.fround) : undefined,
          },
        );
        expectClose(out.data, ref.out, out.shape, { atol: 5e-6, rtol: 2e-5 });
      }),
    );
  });

  test("Linear and LayerNorm equal the float64 reference", ({ task }) => {
    const problem = fc
      .record({ M: fc.integer({ min: 1, max: 20 }), K: fc.integer({ min: 1, max: 70 }), N: fc.integer({ min: 1, max: 40 }) })
      .chain((p) =>
        fc.record({ p: fc.constant(p), x: floats(p.M * p.K, 3), w: floats(p.N * p.K), bias: floats(p.N), g: floats(p.K), beta: floats(p.K) }),
      );
    assertProperty(
      task,
      fc.property(problem, ({ p, x, w, bias, g, beta }) => {
        const lin = new lib.Linear({ inFeatures: p.K, outFeatures: p.N }).loadStateDict({
          weight: lib.tensor(w, [p.N, p.K]),
          bias: lib.tensor(bias, [p.N]),
        });
        const y = lin.forward(lib.tensor(x, [p.M, p.K]));
        const want = new Float64Array(p.M * p.N);
        for (let i = 0; i < p.M; i++)
          for (let j = 0; j < p.N; j++) {
            let acc = bias[j];
            for (let k = 0; k < p.K; k++) acc += x[i * p.K + k] * w[j * p.K + k];
            want[i * p.N + j] = acc;
          }
        expectClose(y.data, want, [p.M, p.N], { atol: 1e-5 * Math.max(1, p.K / 16), rtol: 1e-5 });
        lin.dispose();
        const ln = new lib.LayerNorm({ normalizedShape: p.K }).loadStateDict({ weight: lib.tensor(g, [p.K]), bias: lib.tensor(beta, [p.K]) });
        const z = ln.forward(lib.tensor(x, [p.M, p.K]));
        const wantLn = new Float64Array(p.M * p.K);
        for (let i = 0; i < p.M; i++) {
          const row = Array.from(x.subarray(i * p.K, (i + 1) * p.K));
          const mean = row.reduce((a, b) => a + b, 0) / p.K;
          const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / p.K;
          row.forEach((v, j) => (wantLn[i * p.K + j] = ((v - mean) / Math.sqrt(variance + 1e-5)) * g[j] + beta[j]));
        }
        expectClose(z.data, wantLn, [p.M, p.K], { atol: 1e-4, rtol: 1e-4 });
        ln.dispose();
      }),
    );
  });

  test("MultiHeadAttention equals the float64 reference (self and cross, GQA, padding, causal)", ({ task }) => {
    const problem = fc
      .record({
        B: fc.integer({ min: 1, max: 3 }),
        Hk: fc.integer({ min: 1, max: 3 }),
        group: fc.integer({ min: 1, max: 3 }),
        hd: fc.integer({ min: 1, max: 9 }),
        Lq: fc.integer({ min: 1, max: 20 }),
        Lk: fc.integer({ min: 1, max: 20 }),
        self: fc.boolean(),
        causal: fc.boolean(),
        padded: fc.boolean(),
        bias: fc.boolean(),
      })
      .chain((p) => {
        const H = p.Hk * p.group;
        const E = H * p.hd;
        const Lk = p.self ? p.Lq : p.Lk;
        return fc.record({
          p: fc.constant({ ...p, H, E, Lk }),
          q: floats(p.B * p.Lq * E, 2),
          kv: floats(p.B * Lk * E, 2),
          w: floats((E + 2 * p.Hk * p.hd) * E, 0.5),
          b: floats(E + 2 * p.Hk * p.hd, 0.5),
          ow: floats(E * E, 0.5),
          ob: floats(E, 0.5),
          pad: fc.uint8Array({ minLength: p.B * Lk, maxLength: p.B * Lk, max: 1 }),
        });
      });
    assertProperty(
      task,
      fc.property(problem, ({ p, q, kv, w, b, ow, ob, pad }) => {
        const m = new lib.MultiHeadAttention({ embedDim: p.E, numHeads: p.H, numKvHeads: p.Hk, bias: p.bias });
        const dict: Record<string, lib.Tensor> = {
          in_proj_weight: lib.tensor(w, [w.length / p.E, p.E]),
          "out_proj.weight": lib.tensor(ow, [p.E, p.E]),
        };
        if (p.bias) Object.assign(dict, { in_proj_bias: lib.tensor(b, [b.length]), "out_proj.bias": lib.tensor(ob, [p.E]) });
        m.loadStateDict(dict);
        const x = lib.tensor(q, [p.B, p.Lq, p.E]);
        const y = p.self ? x : lib.tensor(kv, [p.B, p.Lk, p.E]);
        const causal = p.causal && p.self;
        const { output, weights } = m.forward(x, y, y, {
          isCausal: causal,
          keyPaddingMask: p.padded ? lib.tensor(pad, [p.B, p.Lk]) : undefined,
          averageAttnWeights: false,
        });
        const ref = mhaRef(q, p.self ? q : kv, dict, {
          B: p.B,
          Lq: p.Lq,
          Lk: p.Lk,
          E: p.E,
          H: p.H,
          Hk: p.Hk,
          causal,
          padding: p.padded ? pad : undefined,
        });
        expectClose(output.data, ref.out, output.shape, { atol: 2e-5, rtol: 1e-4 });
        expectClose(weights!.data, ref.weights, weights!.shape, { atol: 1e-5, rtol: 1e-4 });
        m.dispose();
      }),
    );
  });

  test("loadSafetensors on mutated and truncated files: tensors or a library error, never anything else", ({ task }) => {
    const header = JSON.stringify({
      __metadata__: { a: "b" },
      x: { dtype: "F32", shape: [2, 2], data_offsets: [0, 16] },
      y: { dtype: "F16", shape: [3], data_offsets: [16, 22] },
      z: { dtype: "BF16", shape: [], data_offsets: [22, 24] },
    });
    const valid = new Uint8Array(8 + header.length + 24);
    new DataView(valid.buffer).setBigUint64(0, BigInt(header.length), true);
    valid.set(new TextEncoder().encode(header), 8);
    for (let i = 0; i < 24; i++) valid[8 + header.length + i] = (i * 37) & 255;
    expect(Object.keys(lib.loadSafetensors(valid))).toEqual(["x", "y", "z"]);
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant("flip" as const), at: fc.nat(valid.length - 1), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant("truncate" as const), at: fc.nat(valid.length), value: fc.constant(0) }),
      fc.record({ kind: fc.constant("length" as const), at: fc.constant(0), value: fc.integer({ min: 0, max: 2 ** 31 }) }),
    );
    assertProperty(
      task,
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (mutations) => {
        let bytes = valid.slice();
        for (const m of mutations) {
          if (m.kind === "flip") bytes[Math.min(m.at, bytes.length - 1)] = m.value;
          else if (m.kind === "truncate") bytes = bytes.slice(0, m.at);
          else if (bytes.length >= 8) new DataView(bytes.buffer).setUint32(0, m.value, true);
        }
        try {
          const tensors = lib.loadSafetensors(bytes);
          for (const t of Object.values(tensors)) expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
        } catch (e) {
          expect(e).toBeInstanceOf(lib.WasmAttentionError);
        }
      }),
      FUZZ_RUNS * 20,
    );
  });
});
