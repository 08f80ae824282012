// linearAttention's update rules (ONNX LinearAttention, opset 27): the chunked form (linearAttention)
// and the recurrent one (LinearAttentionState.step, token by token) against a float64 reference of
// the recurrence written plainly below, and against each other; over chunk sizes that do and do not
// divide T, decays near 1 and near 0, both decay shapes, grouped heads, odd head sizes, an initial
// state in and the final state out.
import { beforeAll, describe, expect, test } from "vitest";
import * as lib from "../src/index.js";
import type { LinearAttentionRule, Tensor } from "../src/index.js";
import { expectClose, freshSeed, rng } from "./reference.js";

beforeAll(() => lib.init());

type Rule = Exclude<LinearAttentionRule, "normalized">;
const RULES: Rule[] = ["linear", "gated", "delta", "gated_delta"];
const gated = (rule: Rule) => rule === "gated" || rule === "gated_delta";
const delta = (rule: Rule) => rule === "delta" || rule === "gated_delta";

interface Inputs {
  q: Tensor; // [B, Hq, T, dk]
  k: Tensor; // [B, Hkv, T, dk]
  v: Tensor; // [B, Hkv, T, dv]
  decay?: Tensor; // [B, Hkv, T] or [B, Hkv, T, dk], log space
  beta?: Tensor; // [B, Hkv, T] or [B, 1, T]
  state?: Tensor; // [B, Hkv, dk, dv]
}

// ONNX LinearAttention's recurrence in float64, token by token: S = exp(g) S (row d by exp(g[d]) for
// a decay per key dimension); u = beta (v - S^T k) for the delta rules, else v; S += k u^T;
// o = scale S^T q for every query head h, which reads key/value head floor(h / (Hq / Hkv)).
// Returns output [B, Hq, T, dv] and the final state [B, Hkv, dk, dv].
function ruleRef(x: Inputs, rule: Rule, scale?: number) {
  const [B, Hq, T, dk] = x.q.shape;
  const Hkv = x.k.shape[1];
  const dv = x.v.shape[3];
  const group = Hq / Hkv;
  const s = scale ?? 1 / Math.sqrt(dk);
  const out = new Float64Array(B * Hq * T * dv);
  const S = x.state ? Float64Array.from(x.state.data) : new Float64Array(B * Hkv * dk * dv);
  for (let b = 0; b < B; b++) {
    for (let g = 0; g < Hkv; g++) {
      const head = b * Hkv + g;
      const at = (d: number, c: number) => (head * dk + d) * dv + c;
      for (let t = 0; t < T; t++) {
        const k = (d: number) => x.k.data[(head * T + t) * dk + d];
        if (gated(rule)) {
          const perDim = x.decay!.shape.length === 4;
          for (let d = 0; d < dk; d++) {
            const a = Math.exp(x.decay!.data[(head * T + t) * (perDim ? dk : 1) + (perDim ? d : 0)]);
            for (let c = 0; c < dv; c++) S[at(d, c)] *= a;
          }
        }
        const u = new Float64Array(dv);
        for (let c = 0; c < dv; c++) {
          u[c] = x.v.data[(head * T + t) * dv + c];
          if (delta(rule)) {
            let r = 0;
            for (let d = 0; d < dk; d++) r += S[at(d, c)] * k(d);
            const bh = x.beta!.shape[1] === 1 ? b : head;
            u[c] = x.beta!.data[bh * T + t] * (u[c] - r);
          }
        }
        for (let d = 0; d < dk; d++) for (let c = 0; c < dv; c++) S[at(d, c)] += k(d) * u[c];
        for (let h = g * group; h < (g + 1) * group; h++) {
          for (let c = 0; c < dv; c++) {
            let o = 0;
            for (let d = 0; d < dk; d++) o += x.q.data[((b * Hq + h) * T + t) * dk + d] * S[at(d, c)];
            out[((b * Hq + h) * T + t) * dv + c] = s * o;
          }
        }
      }
    }
  }
  return { out, state: S };
}

interface Case {
  rule: Rule;
  B: number;
  Hq: number;
  Hkv: number;
  T: number;
  dk: number;
  dv: number;
  /** g for every token and dimension, or "random" in [-3, 0) */
  g?: number | "random";
  perDim?: boolean;
  /** beta [B, 1, T] */
  betaShared?: boolean;
  withState?: boolean;
}

// inputs of a case: keys L2-normalised for the delta rules (as ONNX asks), beta in (0.05, 0.95)
function inputs(c: Case, seed: number): Inputs {
  const r = rng(seed);
  const { B, Hq, Hkv, T, dk, dv } = c;
  const k = r.floats(B * Hkv * T * dk);
  if (delta(c.rule)) {
    for (let i = 0; i < B * Hkv * T; i++) {
      const row = k.subarray(i * dk, (i + 1) * dk);
      const n = Math.hypot(...row) || 1;
      for (let d = 0; d < dk; d++) row[d] /= n;
    }
  }
  const gDims = c.perDim ? [B, Hkv, T, dk] : [B, Hkv, T];
  const decayData = () =>
    Float32Array.from({ length: gDims.reduce((a, b) => a * b, 1) }, () => (c.g === "random" || c.g === undefined ? -3 * r.next() : c.g));
  return {
    q: lib.tensor(r.floats(B * Hq * T * dk), [B, Hq, T, dk]),
    k: lib.tensor(k, [B, Hkv, T, dk]),
    v: lib.tensor(r.floats(B * Hkv * T * dv), [B, Hkv, T, dv]),
    decay: gated(c.rule) ? lib.tensor(decayData(), gDims) : undefined,
    beta: delta(c.rule)
      ? lib.tensor(
          Float32Array.from({ length: B * (c.betaShared ? 1 : Hkv) * T }, () => 0.05 + 0.9 * r.next()),
          [B, c.betaShared ? 1 : Hkv, T],
        )
      : undefined,
    state: c.withState ? lib.tensor(r.floats(B * Hkv * dk * dv, 0.5), [B, Hkv, dk, dv]) : undefined,
  };
}

// tokens a..b of a [B, H, T, ...] tensor
function sliceT(t: Tensor | undefined, a: number, b: number): Tensor | undefined {
  if (!t) return undefined;
  const [B, H, T] = t.shape;
  const inner = t.shape.slice(3).reduce((x, y) => x * y, 1);
  const out = new Float32Array(B * H * (b - a) * inner);
  for (let i = 0; i < B * H; i++) out.set(t.data.subarray((i * T + a) * inner, (i * T + b) * inner), i * (b - a) * inner);
  return lib.tensor(out, [B, H, b - a, ...t.shape.slice(3)]);
}

// the recurrent form: LinearAttentionState stepped `piece` tokens at a time (fewer than its chunk
// size, so token by token inside), from the case's initial state; the outputs joined along T
function recurrent(x: Inputs, rule: Rule, piece: number, options: { scale?: number } = {}) {
  const [B, Hq, T] = x.q.shape;
  const [Hkv, dk] = [x.k.shape[1], x.k.shape[3]];
  const dv = x.v.shape[3];
  const st = new lib.LinearAttentionState([B, Hkv], dk, dv, { rule, ...options });
  if (x.state) st.setState(x.state);
  const out = new Float32Array(B * Hq * T * dv);
  for (let a = 0; a < T; a += piece) {
    const b = Math.min(T, a + piece);
    const o = st.step(sliceT(x.q, a, b)!, sliceT(x.k, a, b)!, sliceT(x.v, a, b)!, { decay: sliceT(x.decay, a, b), beta: sliceT(x.beta, a, b) });
    for (let i = 0; i < B * Hq; i++) out.set(o.data.subarray(i * (b - a) * dv, (i + 1) * (b - a) * dv), (i * T + a) * dv);
  }
  const state = st.state;
  st.dispose();
  return { out, state };
}

// |d| <= atol + rtol |ref| with atol a small fraction of the largest |ref| (states grow with T
// without decay, so a fixed atol would mean different things at different T)
function close(got: Float32Array, want: ArrayLike<number>, shape: readonly number[], what: string, rtol = 1e-4) {
  let big = 0;
  for (let i = 0; i < want.length; i++) big = Math.max(big, Math.abs(want[i]));
  expectClose(got, want, shape, { atol: 1e-5 * Math.max(big, 1), rtol }, what);
}

// shapes (B, Hq, Hkv, dk, dv) taken in turn: grouped heads, odd and unit head sizes, B > 1
const SHAPES: [number, number, number, number, number][] = [
  [2, 4, 2, 7, 33],
  [1, 3, 1, 33, 7],
  [2, 2, 2, 1, 1],
  [1, 2, 1, 16, 8],
];
// T and chunk sizes that divide it or not (and a chunk longer than T)
const LENGTHS: [number, number][] = [
  [1, 16],
  [7, 16],
  [64, 64],
  [64, 33],
  [100, 16],
  [100, 33],
];

describe("the update rules: chunked, recurrent and the float64 reference agree", () => {
  let n = 0;
  for (const rule of RULES) {
    for (const [T, chunkSize] of LENGTHS) {
      const decays: (Partial<Case> | undefined)[] = gated(rule)
        ? [{ g: -1e-4 }, { g: -5, perDim: true }, { g: "random", perDim: n % 2 === 0 }]
        : [undefined];
      for (const decay of decays) {
        const [B, Hq, Hkv, dk, dv] = SHAPES[n++ % SHAPES.length];
        const c: Case = { rule, B, Hq, Hkv, T, dk, dv, ...decay, betaShared: n % 3 === 0, withState: n % 2 === 1 };
        const name = `${rule} T=${T} chunk=${chunkSize} [B, Hq, Hkv, dk, dv] = [${B}, ${Hq}, ${Hkv}, ${dk}, ${dv}]${decay ? ` g=${decay.g}${decay.perDim ? " per dim" : ""}` : ""}${c.withState ? ", initial state" : ""}${c.betaShared ? ", beta [B, 1, T]" : ""}`;
        test(name, () => {
          const seed = freshSeed();
          const x = inputs(c, seed);
          const want = ruleRef(x, rule);
          const chunked = lib.linearAttention(x.q, x.k, x.v, { rule, decay: x.decay, beta: x.beta, state: x.state, chunkSize, returnState: true });
          expect(chunked.output.shape).toEqual([B, Hq, T, dv]);
          expect(chunked.state.shape).toEqual([B, Hkv, dk, dv]);
          const steps = recurrent(x, rule, 1 + (seed % 5));
          close(chunked.output.data, want.out, chunked.output.shape, `chunked output (seed ${seed})`);
          close(chunked.state.data, want.state, chunked.state.shape, `chunked state (seed ${seed})`);
          close(steps.out, want.out, chunked.output.shape, `recurrent output (seed ${seed})`);
          close(steps.state.data, want.state, chunked.state.shape, `recurrent state (seed ${seed})`);
          close(chunked.output.data, steps.out, chunked.output.shape, `chunked vs recurrent (seed ${seed})`);
        });
      }
    }
  }

  test("a scale of one's own; the output alone without returnState", () => {
    const c: Case = { rule: "gated_delta", B: 1, Hq: 2, Hkv: 1, T: 20, dk: 8, dv: 5, g: "random" };
    const x = inputs(c, freshSeed());
    const out = lib.linearAttention(x.q, x.k, x.v, { rule: "gated_delta", decay: x.decay, beta: x.beta, scale: -0.3, chunkSize: 8 });
    expect(out.shape).toEqual([1, 2, 20, 5]);
    close(out.data, ruleRef(x, "gated_delta", -0.3).out, out.shape, "scale -0.3");
    close(recurrent(x, "gated_delta", 3, { scale: -0.3 }).out, ruleRef(x, "gated_delta", -0.3).out, out.shape, "recurrent, scale -0.3");
  });

  test("a longer sequence at a model's head size: gated delta rule, T = 300, dk = dv = 64, default chunks", () => {
    const c: Case = { rule: "gated_delta", B: 1, Hq: 1, Hkv: 1, T: 300, dk: 64, dv: 64, g: "random" };
    const x = inputs(c, freshSeed());
    const want = ruleRef(x, "gated_delta");
    const got = lib.linearAttention(x.q, x.k, x.v, { rule: "gated_delta", decay: x.decay, beta: x.beta, returnState: true });
    close(got.output.data, want.out, got.output.shape, "output");
    close(got.state.data, want.state, got.state.shape, "state");
  });
});

describe("decoding: LinearAttentionState", () => {
  test("prefill with linearAttention, load its state, decode token by token: equals the whole sequence at once", () => {
    const c: Case = { rule: "gated_delta", B: 2, Hq: 4, Hkv: 2, T: 40, dk: 12, dv: 9, g: "random", perDim: true };
    const x = inputs(c, freshSeed());
    const whole = lib.linearAttention(x.q, x.k, x.v, { rule: "gated_delta", decay: x.decay, beta: x.beta, returnState: true });
    const P = 29;
    const prefix = lib.linearAttention(sliceT(x.q, 0, P)!, sliceT(x.k, 0, P)!, sliceT(x.v, 0, P)!, {
      rule: "gated_delta",
      decay: sliceT(x.decay, 0, P),
      beta: sliceT(x.beta, 0, P),
      returnState: true,
    });
    const st = new lib.LinearAttentionState([2, 2], 12, 9, { rule: "gated_delta" });
    st.setState(prefix.state);
    expect(st.state.data).toEqual(prefix.state.data);
    for (let t = P; t < 40; t++) {
      const o = st.step(sliceT(x.q, t, t + 1)!, sliceT(x.k, t, t + 1)!, sliceT(x.v, t, t + 1)!, {
        decay: sliceT(x.decay, t, t + 1),
        beta: sliceT(x.beta, t, t + 1),
      });
      close(o.data, sliceT(whole.output, t, t + 1)!.data, o.shape, `token ${t}`);
    }
    close(st.state.data, whole.state.data, whole.state.shape, "final state");
    // a step of many tokens (chunked inside) continues the same way
    st.setState(prefix.state);
    const rest = st.step(sliceT(x.q, P, 40)!, sliceT(x.k, P, 40)!, sliceT(x.v, P, 40)!, {
      decay: sliceT(x.decay, P, 40),
      beta: sliceT(x.beta, P, 40),
    });
    close(rest.data, sliceT(whole.output, P, 40)!.data, rest.shape, "the rest in one step");
    st.reset();
    expect(st.state.data.every((y) => y === 0)).toBe(true);
    const live = lib.memoryStats().liveBytes;
    st.dispose();
    expect(lib.memoryStats().liveBytes).toBeLessThan(live);
    expect(() => st.state).toThrow(lib.StateError);
  });

  test("a step of at least chunkSize tokens takes the chunked form, and agrees", () => {
    const c: Case = { rule: "delta", B: 1, Hq: 1, Hkv: 1, T: 50, dk: 9, dv: 6 };
    const x = inputs(c, freshSeed());
    const st = new lib.LinearAttentionState([1, 1], 9, 6, { rule: "delta", chunkSize: 16 });
    const o = st.step(x.q, x.k, x.v, { beta: x.beta });
    const want = ruleRef(x, "delta");
    close(o.data, want.out, o.shape, "output");
    close(st.state.data, want.state, [1, 1, 9, 6], "state");
    st.dispose();
  });

  test("the normalised form's state reads and loads as [...lead, E, Ev + 1]", () => {
    const r = rng(freshSeed());
    const [H, L, E, Ev] = [3, 12, 5, 4];
    const t = (n: number, D: number) => lib.tensor(r.floats(H * n * D), [H, n, D]);
    const [q, k, v] = [t(L, E), t(L, E), t(L, Ev)];
    const a = new lib.LinearAttentionState([H], E, Ev);
    a.step(q, k, v);
    const saved = a.state;
    expect(saved.shape).toEqual([H, E, Ev + 1]);
    const b = new lib.LinearAttentionState([H], E, Ev);
    b.setState(saved);
    expect(b.state.data).toEqual(saved.data);
    const next = [t(1, E), t(1, E), t(1, Ev)] as const;
    expect(b.step(...next).data).toEqual(a.step(...next).data);
    a.dispose();
    b.dispose();
  });
});

describe('the update rules in MultiHeadAttention: attention { linear: { rule: "linear" } }', () => {
  // identity projections: the heads are column slices of x, the key/value heads the first Hkv of them
  const [B, L, H, Hkv, hd] = [2, 45, 4, 2, 6];
  const E = H * hd;
  function identityMha(attention: lib.AttentionVariant) {
    const m = new lib.MultiHeadAttention({ embedDim: E, numHeads: H, numKvHeads: Hkv, bias: false, attention });
    const inProj = new Float32Array((E + 2 * Hkv * hd) * E);
    for (let i = 0; i < E; i++) inProj[i * E + i] = 1;
    for (let part = 0; part < 2; part++) for (let i = 0; i < Hkv * hd; i++) inProj[(E + part * Hkv * hd + i) * E + i] = 1;
    const eye = Float32Array.from({ length: E * E }, (_, i) => (i % (E + 1) === 0 ? 1 : 0));
    return m.loadStateDict({ in_proj_weight: lib.tensor(inProj, [E + 2 * Hkv * hd, E]), "out_proj.weight": lib.tensor(eye, [E, E]) });
  }
  // [B, L, E] -> [B, heads, L, hd], the first `heads` heads
  const split = (x: Float32Array, heads: number) =>
    lib.tensor(
      Float32Array.from({ length: B * heads * L * hd }, (_, n) => {
        const d = n % hd,
          l = Math.floor(n / hd) % L,
          h = Math.floor(n / (hd * L)) % heads,
          b = Math.floor(n / (hd * L * heads));
        return x[(b * L + l) * E + h * hd + d];
      }),
      [B, heads, L, hd],
    );
  const merge = (x: Float32Array) =>
    Float32Array.from({ length: x.length }, (_, n) => {
      const c = n % E,
        l = Math.floor(n / E) % L,
        b = Math.floor(n / (E * L));
      return x[((b * H + Math.floor(c / hd)) * L + l) * hd + (c % hd)];
    });

  test("equals linearAttention on the split heads (grouped), and decodes with a cache as its full forward", () => {
    const r = rng(freshSeed());
    const x = lib.tensor(r.floats(B * L * E), [B, L, E]);
    const mha = identityMha({ linear: { rule: "linear", chunkSize: 16 } });
    const { output, weights } = mha.forward(x, x, x, { isCausal: true });
    expect(weights).toBeNull();
    const want = lib.linearAttention(split(x.data, H), split(x.data, Hkv), split(x.data, Hkv), { rule: "linear" });
    close(output.data, merge(want.data), [B, L, E], "module vs function");
    close(
      output.data,
      merge(Float32Array.from(ruleRef({ q: split(x.data, H), k: split(x.data, Hkv), v: split(x.data, Hkv) }, "linear").out)),
      [B, L, E],
      "module vs float64",
    );
    const cache = new lib.KVCache();
    const got = new Float32Array(B * L * E);
    const rows = (a: number, b: number) =>
      lib.tensor(
        Float32Array.from({ length: B * (b - a) * E }, (_, n) => x.data[(Math.floor(n / ((b - a) * E)) * L + a) * E + (n % ((b - a) * E))]),
        [B, b - a, E],
      );
    for (const [a, b] of [
      [0, 20],
      [20, 21],
      [21, 22],
      [22, L],
    ]) {
      const piece = rows(a, b);
      const o = mha.forward(piece, piece, piece, { isCausal: true, cache }).output;
      for (let i = 0; i < B; i++) got.set(o.data.subarray(i * (b - a) * E, (i + 1) * (b - a) * E), (i * L + a) * E);
    }
    close(got, output.data, [B, L, E], "decoding with a cache");
    cache.dispose();
    mha.dispose();
  });

  test("rules with per-token inputs are linearAttention's alone; the rules are causal self-attention", () => {
    for (const rule of ["gated", "delta", "gated_delta"] as const) {
      expect(() => new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2, attention: { linear: { rule } } })).toThrow(
        new RegExp(
          `attention.linear.rule: expected "normalized" or "linear" \\(rule "${rule}" needs a decay and/or beta for every token.*\\), got string ${rule}`,
        ),
      );
    }
    const mha = identityMha({ linear: { rule: "linear" } });
    const x = lib.tensor(new Float32Array(B * L * E), [B, L, E]);
    expect(() => mha.forward(x, x, x)).toThrow(
      /isCausal: expected true and as many keys as queries \(linear attention by rule "linear" is causal self-attention only\), got false/,
    );
    expect(() => new lib.MultiHeadAttention({ embedDim: 8, numHeads: 2, attention: { linear: { rule: "linear", featureMap: "relu" } } })).toThrow(
      /featureMap: not together with rule "linear" \(only with rule "normalized", the feature-map form\)/,
    );
    mha.dispose();
  });
});

describe("checks", () => {
  const t = (...shape: number[]) => lib.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
  const [q, k, v] = [t(1, 4, 5, 3), t(1, 2, 5, 3), t(1, 2, 5, 2)];

  test("every input is checked, its shape named, before any kernel", () => {
    const live = lib.memoryStats().liveBytes;
    const cases: [() => unknown, RegExp][] = [
      [() => lib.linearAttention(q, k, v, { rule: "gated_delta", decay: t(1, 2, 5), beta: t(1, 2, 5), bogus: 1 } as never), /unknown option "bogus"/],
      [
        () => lib.linearAttention(q, k, v, { rule: "fast" as never }),
        /rule: expected "normalized" or "linear" or "gated" or "delta" or "gated_delta", got string fast/,
      ],
      [() => lib.linearAttention(q, k, v, { decay: t(1, 2, 5) }), /decay: not together with rule "normalized" \(only with an update rule/],
      [() => lib.linearAttention(q, k, v, { returnState: true }), /returnState: not together with rule "normalized" \(only with an update rule/],
      [
        () => lib.linearAttention(q, k, v, { rule: "linear", featureMap: "relu" }),
        /featureMap: not together with rule "linear" \(only with rule "normalized"/,
      ],
      [
        () => lib.linearAttention(q, k, v, { rule: "linear", causal: false }),
        /causal: expected true with rule "linear" \(causal by definition; causal: false needs rule "normalized"\), got false/,
      ],
      [
        () => lib.linearAttention(q, k, v, { rule: "gated" }),
        /decay: expected a tensor \[B, Hkv, T\] or \[B, Hkv, T, dk\] in log space for rule "gated", got undefined/,
      ],
      [() => lib.linearAttention(q, k, v, { rule: "delta" }), /beta: expected a tensor \[B, Hkv, T\] or \[B, 1, T\] for rule "delta", got undefined/],
      [
        () => lib.linearAttention(q, k, v, { rule: "linear", decay: t(1, 2, 5) }),
        /decay: not together with rule "linear" \("gated" and "gated_delta" take one\)/,
      ],
      [
        () => lib.linearAttention(q, k, v, { rule: "gated", decay: t(1, 2, 5), beta: t(1, 2, 5) }),
        /beta: not together with rule "gated" \("delta" and "gated_delta" take one\)/,
      ],
      [() => lib.linearAttention(q, k, v, { rule: "linear", chunkSize: 0 }), /chunkSize: expected an integer from 1 to 1024, got number 0/],
      [() => lib.linearAttention(q, k, v, { rule: "linear", scale: 0 }), /scale: expected a finite number other than 0 .*, got number 0/],
      [() => lib.linearAttention(q, k, v, { rule: "linear", scale: NaN }), /scale: expected a finite number/],
      [() => lib.linearAttention(t(4, 5, 3), k, v, { rule: "linear" }), /query: expected \[B, Hq, T, dk\], got \[4, 5, 3\]/],
      [() => lib.linearAttention(q, t(1, 2, 6, 3), v, { rule: "linear" }), /key: expected \[1, Hkv, 5, 3\], got \[1, 2, 6, 3\]/],
      [() => lib.linearAttention(q, k, t(1, 3, 5, 2), { rule: "linear" }), /value: expected \[1, 2, 5, dv\], got \[1, 3, 5, 2\]/],
      [
        () => lib.linearAttention(t(1, 3, 5, 3), k, v, { rule: "linear" }),
        /query: expected a number of heads that is a multiple of key's 2 \(\[1, 2, 5, 3\]\), got 3 in \[1, 3, 5, 3\]/,
      ],
      [
        () => lib.linearAttention(q, k, v, { rule: "gated", decay: t(1, 2, 5, 2) }),
        /decay: expected \[B, Hkv, T\] = \[1, 2, 5\] or \[B, Hkv, T, dk\] = \[1, 2, 5, 3\], got \[1, 2, 5, 2\]/,
      ],
      [
        () => lib.linearAttention(q, k, v, { rule: "delta", beta: t(1, 4, 5) }),
        /beta: expected \[B, Hkv, T\] = \[1, 2, 5\] or \[B, 1, T\] = \[1, 1, 5\], got \[1, 4, 5\]/,
      ],
      [
        () => lib.linearAttention(q, k, v, { rule: "linear", state: t(1, 2, 2, 3) }),
        /state: expected \[B, Hkv, dk, dv\] = \[1, 2, 3, 2\], got \[1, 2, 2, 3\]/,
      ],
      [() => lib.linearAttention(q, k, v, { rule: "linear", returnState: 1 as never }), /returnState: expected a boolean/],
      [
        () => lib.linearAttention(q, k, v, { rule: "delta", beta: { data: [1, 2], shape: [1, 1, 2] } as never }),
        /beta: expected data of type Float32Array/,
      ],
      [
        () => new lib.LinearAttentionState([1, 2, 1], 3, 2, { rule: "linear" }),
        /LinearAttentionState lead: expected \[B, Hkv\] \(rule "linear" keeps a state \[B, Hkv, dk, dv\]\), got \[1, 2, 1\]/,
      ],
      [() => new lib.LinearAttentionState([2], 3, 2, { chunkSize: 8 }), /chunkSize: not together with rule "normalized"/],
    ];
    for (const [call, message] of cases) expect(call).toThrow(message);
    const st = new lib.LinearAttentionState([1, 2], 3, 2, { rule: "gated" });
    expect(() => st.step(q, k, v)).toThrow(/decay: expected a tensor .* for rule "gated", got undefined/);
    expect(() => st.step(q, k, v, { decay: t(1, 2, 5), beta: t(1, 2, 5) })).toThrow(/beta: not together with rule "gated"/);
    expect(() => st.step(t(1, 4, 5, 4), t(1, 2, 5, 4), v, { decay: t(1, 2, 5) })).toThrow(/query: expected \[1, Hq, T, 3\], got \[1, 4, 5, 4\]/);
    expect(() => st.step(q, t(1, 1, 5, 3), t(1, 1, 5, 2), { decay: t(1, 1, 5) })).toThrow(/key: expected \[1, 2, 5, 3\], got \[1, 1, 5, 3\]/);
    expect(() => st.step(q, k, v, { decay: t(1, 2, 5), bogus: 1 } as never)).toThrow(/unknown option "bogus"/);
    expect(() => st.setState(t(1, 2, 3, 3))).toThrow(/LinearAttentionState.setState state: expected \[1, 2, 3, 2\], got \[1, 2, 3, 3\]/);
    st.dispose();
    expect(lib.memoryStats().liveBytes).toBe(live);
  });

  test("empty work returns at once: no token keeps the state, no head or head size gives zeros", () => {
    const state = lib.tensor(
      Float32Array.from({ length: 12 }, (_, i) => i),
      [1, 2, 3, 2],
    );
    const none = lib.linearAttention(t(1, 4, 0, 3), t(1, 2, 0, 3), t(1, 2, 0, 2), {
      rule: "gated_delta",
      decay: t(1, 2, 0),
      beta: t(1, 2, 0),
      state,
      returnState: true,
    });
    expect(none.output.shape).toEqual([1, 4, 0, 2]);
    expect(none.state.data).toEqual(state.data);
    expect(lib.linearAttention(t(0, 4, 5, 3), t(0, 2, 5, 3), t(0, 2, 5, 2), { rule: "linear" }).shape).toEqual([0, 4, 5, 2]);
    const noKey = lib.linearAttention(t(1, 4, 5, 0), t(1, 2, 5, 0), v, { rule: "linear", returnState: true });
    expect(noKey.output.data).toEqual(new Float32Array(40));
    expect(noKey.state.shape).toEqual([1, 2, 0, 2]);
    // no query head: the state still moves
    const x = inputs({ rule: "delta", B: 1, Hq: 0, Hkv: 2, T: 6, dk: 3, dv: 2 }, 7);
    const moved = lib.linearAttention(lib.tensor(new Float32Array(0), [1, 0, 6, 3]), x.k, x.v, { rule: "delta", beta: x.beta, returnState: true });
    expect(moved.output.shape).toEqual([1, 0, 6, 2]);
    close(
      moved.state.data,
      ruleRef({ ...x, q: lib.tensor(new Float32Array(0), [1, 0, 6, 3]) }, "delta").state,
      [1, 2, 3, 2],
      "state without queries",
    );
  });

  test("the normalised form is unchanged by default", () => {
    const r = rng(freshSeed());
    const [qq, kk, vv] = [
      lib.tensor(r.floats(2 * 5 * 3), [2, 5, 3]),
      lib.tensor(r.floats(2 * 5 * 3), [2, 5, 3]),
      lib.tensor(r.floats(2 * 5 * 4), [2, 5, 4]),
    ];
    expect(lib.linearAttention(qq, kk, vv, { causal: true }).data).toEqual(
      lib.linearAttention(qq, kk, vv, { rule: "normalized", causal: true }).data,
    );
  });
});
