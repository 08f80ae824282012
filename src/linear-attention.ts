import { f32, int, oneOf } from "./check.js";
import { FeatureMap } from "./enums.js";
import { ArgumentError, ShapeError, StateError } from "./errors.js";
import { type Kernels, runtime } from "./init.js";
import type { Heap, Scope } from "./memory.js";
import { place } from "./resident.js";
import { type Snapshot, type Tensor, checkOptions, checkShape, checkTensor, describe, fmt, resultArray, size } from "./tensor.js";

/**
 * How linear attention attends: `rule` "normalized" (the default) is the normalised feature-map form
 * of Katharopoulos et al.; the other rules are ONNX LinearAttention's (opset 27) unnormalised state
 * S (dk, dv) per key/value head, updated token by token, with o_t = scale S_t^T q_t:
 * - "linear":      S_t = S_{t-1} + k_t v_t^T
 * - "gated":       S_t = exp(g_t) S_{t-1} + k_t v_t^T
 * - "delta":       S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T
 * - "gated_delta": S_t = exp(g_t) S_{t-1} + beta_t k_t (v_t - exp(g_t) S_{t-1}^T k_t)^T
 * A module's `attention.linear` variant takes these options too (rules "normalized" and "linear").
 */
export interface LinearAttentionOptions {
  /** Default "normalized". */
  rule?: LinearAttentionRule;
  /** "normalized": query i sees keys 0..i (prefix sums), needs Lq = Lk; default false. The rules are causal by definition (`false` is an error). */
  causal?: boolean;
  /** "normalized" only: the feature map phi, "elu+1" (default) or "relu". */
  featureMap?: "elu+1" | "relu";
  /** "normalized" only: added to the normaliser phi(q) . sum phi(k); default 1e-6. */
  eps?: number;
  /** The rules: multiplies S^T q; default 1 / sqrt(dk), as in ONNX. */
  scale?: number;
  /** The rules: tokens per chunk of the chunked form (1 to 1024, default 64); the results agree up to rounding. */
  chunkSize?: number;
}

export type LinearAttentionRule = "normalized" | "linear" | "gated" | "delta" | "gated_delta";

/** linearAttention's options: the form, and for the rules the per-token inputs and the state. */
export interface LinearAttentionCallOptions extends LinearAttentionOptions {
  /** Rules "gated" and "gated_delta" (required there): g in log space, [B, Hkv, T], or [B, Hkv, T, dk] to scale row d of S by exp(g_t[d]). */
  decay?: Tensor;
  /** Rules "delta" and "gated_delta" (required there): [B, Hkv, T], or [B, 1, T] for every head. */
  beta?: Tensor;
  /** The rules: the state before the first token, [B, Hkv, dk, dv]; default zeros. */
  state?: Tensor;
  /** The rules: return `{ output, state }` with the state after the last token. Default false. */
  returnState?: boolean;
}

/** LinearAttentionState.step's per-token inputs (see LinearAttentionCallOptions). */
export interface LinearAttentionStepOptions {
  decay?: Tensor;
  beta?: Tensor;
}

const MAPS = { "elu+1": FeatureMap.EluPlusOne, relu: FeatureMap.Relu } as const;
const RULES: readonly LinearAttentionRule[] = ["normalized", "linear", "gated", "delta", "gated_delta"];
const FORM = ["rule", "causal", "featureMap", "eps", "scale", "chunkSize"] as const;
const CALL = [...FORM, "decay", "beta", "state", "returnState"] as const;
const NORMALIZED_ONLY = ["featureMap", "eps"] as const;
const RULES_ONLY = ["scale", "chunkSize", "decay", "beta", "state", "returnState"] as const;

/** The form of linear attention, checked. */
interface Form {
  rule: LinearAttentionRule;
  causal: boolean;
  map: FeatureMap;
  eps: number;
  /** the rules' scale; undefined: 1 / sqrt(dk) */
  scale: number | undefined;
  chunkSize: number;
  /** the rules: a decay per token, a delta rule */
  gated: boolean;
  delta: boolean;
}

// the form from options already read once (checkOptions)
function readForm(o: LinearAttentionCallOptions): Form {
  const rule = oneOf<LinearAttentionRule>("rule", o.rule, RULES, "normalized");
  const normalized = rule === "normalized";
  for (const name of normalized ? RULES_ONLY : NORMALIZED_ONLY) {
    if (o[name] !== undefined) {
      throw new ArgumentError(
        normalized
          ? `${name}: not together with rule "normalized" (only with an update rule: "linear", "gated", "delta" or "gated_delta")`
          : `${name}: not together with rule "${rule}" (only with rule "normalized", the feature-map form)`,
      );
    }
  }
  const causal = o.causal ?? !normalized;
  if (typeof causal !== "boolean") throw new ArgumentError(`causal: expected a boolean, got ${describe(causal)}`);
  if (!normalized && !causal)
    throw new ArgumentError(`causal: expected true with rule "${rule}" (causal by definition; causal: false needs rule "normalized"), got false`);
  const featureMap = o.featureMap ?? "elu+1";
  if (typeof featureMap !== "string" || !Object.hasOwn(MAPS, featureMap))
    throw new ArgumentError(`featureMap: expected "elu+1" or "relu", got ${describe(featureMap)}`);
  const eps = o.eps ?? 1e-6;
  if (typeof eps !== "number" || !Number.isFinite(eps) || eps < 0)
    throw new ArgumentError(`eps: expected a finite number >= 0, got ${describe(eps)}`);
  let scale: number | undefined;
  if (o.scale !== undefined) {
    scale = f32("scale", o.scale);
    if (scale === 0)
      throw new ArgumentError(
        "scale: expected a finite number other than 0 (leave it out for 1 / sqrt(dk); ONNX's scale = 0 stands for that default), got number 0",
      );
  }
  const chunkSize = int("chunkSize", o.chunkSize ?? 64, 1, 1024);
  const gated = rule === "gated" || rule === "gated_delta";
  const delta = rule === "delta" || rule === "gated_delta";
  return { rule, causal, map: MAPS[featureMap], eps: Math.fround(eps), scale, chunkSize, gated, delta };
}

// a rule's per-token inputs: present exactly where the rule needs them (as ONNX asks)
function checkInputs(f: Form, o: { decay?: unknown; beta?: unknown }): void {
  for (const [name, needed, what] of [
    ["decay", f.gated, "[B, Hkv, T] or [B, Hkv, T, dk] in log space"],
    ["beta", f.delta, "[B, Hkv, T] or [B, 1, T]"],
  ] as const) {
    if (needed && o[name] === undefined) throw new ArgumentError(`${name}: expected a tensor ${what} for rule "${f.rule}", got undefined`);
    if (!needed && o[name] !== undefined)
      throw new ArgumentError(
        `${name}: not together with rule "${f.rule}" (${name === "decay" ? '"gated" and "gated_delta"' : '"delta" and "gated_delta"'} take one)`,
      );
  }
}

/**
 * @internal a module's `attention.linear` variant: rules without per-token inputs only, since a
 * module has no projections for a decay or beta
 */
export function settings(what: string, options: LinearAttentionOptions | undefined): Form {
  const o = checkOptions(`${what} options`, options, FORM);
  const rule = o.rule;
  if (rule === "gated" || rule === "delta" || rule === "gated_delta") {
    throw new ArgumentError(
      `${what}.rule: expected "normalized" or "linear" (rule "${rule}" needs a decay and/or beta for every token, and a module has no projections for them: call linearAttention with your own), got string ${rule}`,
    );
  }
  return readForm(o);
}

// ---------------------------------------------------------------------------------------------
// The normalised feature-map form

// query [..., Lq, E], key [..., Lk, E], value [..., Lk, Ev] with equal leading dimensions
function shapes(q: Snapshot, k: Snapshot, v: Snapshot) {
  const r = q.shape.length;
  if (r < 2) throw new ShapeError(`query: expected [..., Lq, E], got ${fmt(q.shape)}`);
  const lead = q.shape.slice(0, -2);
  for (const [name, t] of [
    ["key", k],
    ["value", v],
  ] as const) {
    if (t.shape.length !== r || t.shape.slice(0, -2).some((d, i) => d !== lead[i])) {
      throw new ShapeError(`${name}: expected [${[...lead, "L", "D"].join(", ")}] like query ${fmt(q.shape)}, got ${fmt(t.shape)}`);
    }
  }
  const [Lq, E] = q.shape.slice(-2) as [number, number];
  const [Lk, Ek] = k.shape.slice(-2) as [number, number];
  const [Lv, Ev] = v.shape.slice(-2) as [number, number];
  if (Ek !== E) throw new ShapeError(`key: expected [..., Lk, ${E}] (E of query), got ${fmt(k.shape)}`);
  if (Lv !== Lk) throw new ShapeError(`value: expected [..., ${Lk}, Ev] (Lk of key), got ${fmt(v.shape)}`);
  return { q, k, v, lead, N: size(lead), Lq, Lk, E, Ev };
}

function normalized(o: Form, p: ReturnType<typeof shapes>): Tensor {
  const { kernels: K, heap } = runtime();
  if (o.causal && p.Lq !== p.Lk) throw new ShapeError(`key: expected Lk = Lq = ${p.Lq} (causal; query ${fmt(p.q.shape)}), got ${fmt(p.k.shape)}`);
  if (p.N * p.Lq * p.Ev === 0) return { data: new Float32Array(0), shape: [...p.lead, p.Lq, p.Ev] };
  heap.need("linearAttention", 4 * (p.q.data.length + p.k.data.length + p.v.data.length + p.N * p.Lq * p.Ev + p.E * p.Ev + 2 * p.E) + 256);
  const scope = heap.scope();
  try {
    const [q, k, v] = [p.q, p.k, p.v].map((t) => scope.put(t.data)) as [number, number, number];
    const out = scope.alloc(4 * p.N * p.Lq * p.Ev);
    const state = scope.alloc(4 * (p.E * p.Ev + p.E));
    const work = scope.alloc(4 * p.E);
    // each slice from a zero state
    const fresh = () => {
      heap.f32(state, p.E * p.Ev + p.E).fill(0);
      return state;
    };
    attendNormalized(K, p, { q, k, v, out, work }, fresh, o);
    return { data: heap.f32(out, p.N * p.Lq * p.Ev).slice(), shape: [...p.lead, p.Lq, p.Ev] };
  } finally {
    scope.release();
  }
}

// out = normalised linear attention of each of the N slices of the placed q, k, v (rows as
// shapes() gives them), slice n from the state at state(n) ([E, Ev] then [E]), updated in place
function attendNormalized(
  K: Kernels,
  p: ReturnType<typeof shapes>,
  at: { q: number; k: number; v: number; out: number; work: number },
  state: (n: number) => number,
  o: Pick<Form, "causal" | "map" | "eps">,
): void {
  const { N, Lq, Lk, E, Ev } = p;
  for (let n = 0; n < N; n++) {
    const s = state(n);
    K.linear_attention_f32(
      at.out + 4 * n * Lq * Ev,
      Ev,
      at.q + 4 * n * Lq * E,
      E,
      at.k + 4 * n * Lk * E,
      E,
      at.v + 4 * n * Lk * Ev,
      Ev,
      s,
      s + 4 * E * Ev,
      at.work,
      Lq,
      Lk,
      E,
      Ev,
      o.causal,
      o.map,
      o.eps,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// The update rules

/** One call of a rule, checked: the inputs read once and the sizes. */
interface RuleCall {
  q: Snapshot;
  k: Snapshot;
  v: Snapshot;
  decay: Snapshot | undefined;
  beta: Snapshot | undefined;
  B: number;
  Hq: number;
  Hkv: number;
  T: number;
  dk: number;
  dv: number;
  /** floats of decay per token: 0 (none), 1 or dk */
  gDim: number;
  /** heads of beta: Hkv, or 1 for every head */
  betaHeads: number;
}

// query [B, Hq, T, dk], key [B, Hkv, T, dk], value [B, Hkv, T, dv] (Hq a multiple of Hkv), decay
// [B, Hkv, T] or [B, Hkv, T, dk], beta [B, Hkv, T] or [B, 1, T]; `state` [B, Hkv, dk, dv] fixes B, Hkv, dk, dv
function ruleShapes(
  q: Snapshot,
  k: Snapshot,
  v: Snapshot,
  decay: Snapshot | undefined,
  beta: Snapshot | undefined,
  state?: { B: number; Hkv: number; dk: number; dv: number },
): RuleCall {
  const want = (name: string, t: Snapshot, dims: (number | string)[]) => {
    const ok = t.shape.length === dims.length && dims.every((d, i) => typeof d === "string" || d === t.shape[i]);
    if (!ok) throw new ShapeError(`${name}: expected [${dims.join(", ")}], got ${fmt(t.shape)}`);
  };
  if (state) want("query", q, [state.B, "Hq", "T", state.dk]);
  else if (q.shape.length !== 4) throw new ShapeError(`query: expected [B, Hq, T, dk], got ${fmt(q.shape)}`);
  const [B, Hq, T, dk] = q.shape as [number, number, number, number];
  want("key", k, [B, state ? state.Hkv : "Hkv", T, dk]);
  const Hkv = k.shape[1]!;
  want("value", v, [B, Hkv, T, state ? state.dv : "dv"]);
  const dv = v.shape[3]!;
  if (Hkv === 0 ? Hq !== 0 : Hq % Hkv !== 0) {
    throw new ShapeError(`query: expected a number of heads that is a multiple of key's ${Hkv} (${fmt(k.shape)}), got ${Hq} in ${fmt(q.shape)}`);
  }
  let gDim = 0;
  if (decay) {
    const r = decay.shape;
    if (!(r.length === 3 || (r.length === 4 && r[3] === dk)) || r[0] !== B || r[1] !== Hkv || r[2] !== T) {
      throw new ShapeError(`decay: expected [B, Hkv, T] = ${fmt([B, Hkv, T])} or [B, Hkv, T, dk] = ${fmt([B, Hkv, T, dk])}, got ${fmt(r)}`);
    }
    gDim = r.length === 4 ? dk : 1;
  }
  let betaHeads = 0;
  if (beta) {
    const r = beta.shape;
    if (r.length !== 3 || r[0] !== B || (r[1] !== Hkv && r[1] !== 1) || r[2] !== T) {
      throw new ShapeError(`beta: expected [B, Hkv, T] = ${fmt([B, Hkv, T])} or [B, 1, T] = ${fmt([B, 1, T])}, got ${fmt(r)}`);
    }
    betaHeads = r[1]!;
  }
  return { q, k, v, decay, beta, B, Hq, Hkv, T, dk, dv, gDim, betaHeads };
}

/** Where a rule's inputs and outputs are in WebAssembly memory: [B, H, T, D] tensors, contiguous. */
interface Placed {
  q: number;
  k: number;
  v: number;
  decay: number;
  beta: number;
  out: number;
  /** [B, Hkv, dk, dv]: read, then left holding the state after the last token */
  state: number;
}

// bytes of kernel scratch for a call of T tokens, in either form
function workBytes(K: Kernels, p: RuleCall, f: Form): number {
  return Math.max(
    K.linear_chunked_f32_workspace(Math.max(1, Math.min(f.chunkSize, p.T)), p.dk, p.dv, p.gDim),
    K.linear_recurrent_f32_workspace(p.dk, p.dv),
  );
}

// every batch element and key/value head with its group of query heads; `recurrent` walks the tokens
// one by one, else in chunks of f.chunkSize (fewer when T is shorter)
function attendRule(K: Kernels, scope: Scope, f: Form, p: RuleCall, at: Placed, recurrent: boolean): void {
  const { B, Hq, Hkv, T, dk, dv, gDim } = p;
  const group = Hkv ? Hq / Hkv : 0;
  const scale = Math.fround(f.scale ?? 1 / Math.sqrt(dk));
  const C = Math.min(f.chunkSize, T);
  const work = scope.alloc(recurrent ? K.linear_recurrent_f32_workspace(dk, dv) : K.linear_chunked_f32_workspace(C, dk, dv, gDim));
  for (let b = 0; b < B; b++) {
    for (let g = 0; g < Hkv; g++) {
      const head = b * Hkv + g;
      const h0 = b * Hq + g * group; // the group's first query head
      const out = at.out + 4 * h0 * T * dv;
      const s = at.state + 4 * head * dk * dv;
      const q = at.q + 4 * h0 * T * dk;
      const k = at.k + 4 * head * T * dk;
      const v = at.v + 4 * head * T * dv;
      const decay = gDim ? at.decay + 4 * head * T * gDim : 0;
      const beta = p.betaHeads ? at.beta + 4 * (p.betaHeads === 1 ? b : head) * T : 0;
      if (recurrent) K.linear_recurrent_f32(out, dv, T * dv, s, q, dk, T * dk, group, k, dk, v, dv, decay, gDim, beta, work, T, dk, dv, scale);
      else K.linear_chunked_f32(out, dv, T * dv, s, q, dk, T * dk, group, k, dk, v, dv, decay, gDim, beta, work, T, dk, dv, C, scale);
    }
  }
}

// bytes a rule's call takes in WebAssembly memory at its peak: inputs not resident, output, state, scratch
function ruleBytes(K: Kernels, p: RuleCall, f: Form, stateResident: boolean): number {
  const inputs = [p.q, p.k, p.v, p.decay, p.beta].reduce((n, t) => n + (t && t.address === undefined ? 4 * t.data.length : 0), 0);
  return inputs + 4 * p.B * p.Hq * p.T * p.dv + (stateResident ? 0 : 4 * p.B * p.Hkv * p.dk * p.dv) + workBytes(K, p, f) + 1024;
}

// the rule over the whole sequence: chunked (recurrent for one token), from `state` or zeros
function byRule(f: Form, p: RuleCall, state: Snapshot | undefined, returnState: boolean): Tensor | { output: Tensor; state: Tensor } {
  const { kernels: K, heap } = runtime();
  const { B, Hq, Hkv, T, dk, dv } = p;
  if (state && (state.shape.length !== 4 || state.shape[0] !== B || state.shape[1] !== Hkv || state.shape[2] !== dk || state.shape[3] !== dv)) {
    throw new ShapeError(`state: expected [B, Hkv, dk, dv] = ${fmt([B, Hkv, dk, dv])}, got ${fmt(state.shape)}`);
  }
  const outShape = [B, Hq, T, dv];
  const stateShape = [B, Hkv, dk, dv];
  const nOut = B * Hq * T * dv;
  const nState = B * Hkv * dk * dv;
  const finish = (output: Tensor, s: Float32Array) => (returnState ? { output, state: { data: s, shape: stateShape } } : output);
  // nothing to compute: no output rows (and no state asked for), no token, or S with no row or column
  if ((nOut === 0 && !returnState) || T === 0 || nState === 0) {
    const s = returnState ? (state ? state.data.slice() : resultArray("linearAttention", nState)) : new Float32Array(0);
    return finish({ data: resultArray("linearAttention", nOut), shape: outShape }, s);
  }
  heap.need("linearAttention", ruleBytes(K, p, f, false));
  const output = { data: resultArray("linearAttention", nOut), shape: outShape };
  const finalState = returnState ? resultArray("linearAttention", nState) : null;
  const scope = heap.scope();
  try {
    const at: Placed = {
      q: place(scope, p.q),
      k: place(scope, p.k),
      v: place(scope, p.v),
      decay: p.decay ? place(scope, p.decay) : 0,
      beta: p.beta ? place(scope, p.beta) : 0,
      out: scope.alloc(4 * nOut),
      state: scope.alloc(4 * nState),
    };
    if (state) heap.f32(at.state, nState).set(state.data);
    else heap.f32(at.state, nState).fill(0);
    attendRule(K, scope, f, p, at, T === 1);
    output.data.set(heap.f32(at.out, nOut));
    if (finalState) finalState.set(heap.f32(at.state, nState));
  } finally {
    scope.release();
  }
  return finish(output, finalState ?? new Float32Array(0));
}

// ---------------------------------------------------------------------------------------------
// The public calls

/**
 * Linear attention, in O(L) time and O(1) state per head.
 *
 * rule "normalized" (the default): Katharopoulos et al. 2020 ("Transformers are RNNs"),
 * phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1 + eps); query [..., Lq, E], key [..., Lk, E],
 * value [..., Lk, Ev] -> [..., Lq, Ev].
 *
 * The update rules ("linear", "gated", "delta", "gated_delta"): ONNX LinearAttention (opset 27);
 * query [B, Hq, T, dk], key [B, Hkv, T, dk], value [B, Hkv, T, dv] -> [B, Hq, T, dv], query head h
 * reading key/value head floor(h / (Hq / Hkv)); computed in chunks of `chunkSize` tokens with matrix
 * products (the WY representation for the delta rules). `returnState: true` gives
 * `{ output, state }`, the state [B, Hkv, dk, dv] after the last token.
 */
export function linearAttention(
  query: Tensor,
  key: Tensor,
  value: Tensor,
  options: LinearAttentionCallOptions & { returnState: true },
): { output: Tensor; state: Tensor };
export function linearAttention(query: Tensor, key: Tensor, value: Tensor, options?: LinearAttentionCallOptions & { returnState?: false }): Tensor;
export function linearAttention(
  query: Tensor,
  key: Tensor,
  value: Tensor,
  options?: LinearAttentionCallOptions,
): Tensor | { output: Tensor; state: Tensor };
export function linearAttention(
  query: Tensor,
  key: Tensor,
  value: Tensor,
  options?: LinearAttentionCallOptions,
): Tensor | { output: Tensor; state: Tensor } {
  runtime();
  // every caller object read once, first
  const o = checkOptions("linearAttention options", options, CALL);
  const q = checkTensor("query", query);
  const k = checkTensor("key", key);
  const v = checkTensor("value", value);
  const decay = o.decay === undefined ? undefined : checkTensor("decay", o.decay);
  const beta = o.beta === undefined ? undefined : checkTensor("beta", o.beta);
  const state = o.state === undefined ? undefined : checkTensor("state", o.state);
  const f = readForm(o);
  if (f.rule === "normalized") return normalized(f, shapes(q, k, v));
  checkInputs(f, o);
  const returnState = o.returnState ?? false;
  if (typeof returnState !== "boolean") throw new ArgumentError(`returnState: expected a boolean, got ${describe(returnState)}`);
  return byRule(f, ruleShapes(q, k, v, decay, beta), state, returnState);
}

/**
 * The recurrent form, for generation: the state of every head lives in WebAssembly memory between
 * calls, and `step` continues the sequence.
 *
 * rule "normalized": `new LinearAttentionState(lead, E, Ev, { featureMap, eps })`; `step(q, k, v)` takes
 * the next T tokens ([...lead, T, E], [...lead, T, E], [...lead, T, Ev]) and returns [...lead, T, Ev],
 * equal to the causal batch form over the whole sequence.
 *
 * The update rules: `new LinearAttentionState([B, Hkv], dk, dv, { rule, scale, chunkSize })`;
 * `step(q, k, v, { decay, beta })` takes query [B, Hq, T, dk], key [B, Hkv, T, dk], value
 * [B, Hkv, T, dv] (decay and beta as linearAttention's) and returns [B, Hq, T, dv]: token by token for
 * T below chunkSize (decoding), in chunks otherwise.
 *
 * `state` reads the state, `setState(t)` loads one: [B, Hkv, dk, dv] for the rules (linearAttention's
 * `state` and `returnState` use the same layout); for "normalized", [...lead, E, Ev + 1], S with the
 * normaliser sum phi(k) as its last column.
 */
export class LinearAttentionState {
  readonly lead: readonly number[];
  readonly E: number;
  readonly Ev: number;
  readonly rule: LinearAttentionRule;
  readonly #o: Form;
  readonly #heap: Heap;
  #at: number;

  constructor(lead: readonly number[], E: number, Ev: number, options?: Omit<LinearAttentionOptions, "causal">) {
    const { heap } = runtime();
    const o = checkOptions("LinearAttentionState options", options, ["rule", "featureMap", "eps", "scale", "chunkSize"]);
    this.#o = readForm({ ...o, causal: true });
    this.rule = this.#o.rule;
    this.lead = checkShape("LinearAttentionState lead", lead);
    if (this.rule !== "normalized" && this.lead.length !== 2) {
      throw new ShapeError(
        `LinearAttentionState lead: expected [B, Hkv] (rule "${this.rule}" keeps a state [B, Hkv, dk, dv]), got ${fmt(this.lead)}`,
      );
    }
    for (const [name, x] of [
      ["E", E],
      ["Ev", Ev],
    ] as const) {
      if (!Number.isInteger(x) || x < 1 || x > 2 ** 16)
        throw new ArgumentError(`LinearAttentionState ${name}: expected a positive integer up to 65536, got ${describe(x)}`);
    }
    this.E = E;
    this.Ev = Ev;
    this.#heap = heap;
    heap.need("LinearAttentionState", 4 * this.#floats);
    this.#at = heap.alloc(4 * this.#floats);
    this.reset();
    const at = this.#at;
    heap.track(this, () => [at]);
  }

  // floats per leading index: S, and for "normalized" the normaliser z
  get #per(): number {
    return this.E * this.Ev + (this.rule === "normalized" ? this.E : 0);
  }

  get #floats(): number {
    return size(this.lead) * this.#per;
  }

  /** Forgets every token: the next step starts a new sequence. */
  reset(): void {
    this.#heap.f32(this.#live(), this.#floats).fill(0);
  }

  /** A copy of the state: [B, Hkv, dk, dv] for the rules, [...lead, E, Ev + 1] for "normalized" (S, then z). */
  get state(): Tensor {
    const at = this.#live();
    const [E, Ev, per] = [this.E, this.Ev, this.#per];
    if (this.rule !== "normalized") return { data: this.#heap.f32(at, this.#floats).slice(), shape: [...this.lead, E, Ev] };
    const all = this.#heap.f32(at, this.#floats);
    const data = new Float32Array(size(this.lead) * E * (Ev + 1));
    for (let n = 0; n < size(this.lead); n++) {
      for (let e = 0; e < E; e++) {
        data.set(all.subarray(n * per + e * Ev, n * per + (e + 1) * Ev), (n * E + e) * (Ev + 1));
        data[(n * E + e) * (Ev + 1) + Ev] = all[n * per + E * Ev + e]!;
      }
    }
    return { data, shape: [...this.lead, E, Ev + 1] };
  }

  /** Loads a state, in the layout `state` reads; the next step continues from it. */
  setState(state: Tensor): void {
    const t = checkTensor("state", state); // read first: its getters run before the state check
    const at = this.#live();
    const [E, Ev, per] = [this.E, this.Ev, this.#per];
    const want = [...this.lead, E, this.rule === "normalized" ? Ev + 1 : Ev];
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i]))
      throw new ShapeError(`LinearAttentionState.setState state: expected ${fmt(want)}, got ${fmt(t.shape)}`);
    const data = t.data;
    const all = this.#heap.f32(at, this.#floats);
    if (this.rule !== "normalized") {
      all.set(data);
      return;
    }
    for (let n = 0; n < size(this.lead); n++) {
      for (let e = 0; e < E; e++) {
        all.set(data.subarray((n * E + e) * (Ev + 1), (n * E + e) * (Ev + 1) + Ev), n * per + e * Ev);
        all[n * per + E * Ev + e] = data[(n * E + e) * (Ev + 1) + Ev]!;
      }
    }
  }

  step(query: Tensor, key: Tensor, value: Tensor, options?: LinearAttentionStepOptions): Tensor {
    // every caller object read first: its getters run before the state check
    const o = checkOptions("LinearAttentionState.step options", options, ["decay", "beta"]);
    const q = checkTensor("query", query);
    const k = checkTensor("key", key);
    const v = checkTensor("value", value);
    const decay = o.decay === undefined ? undefined : checkTensor("decay", o.decay);
    const beta = o.beta === undefined ? undefined : checkTensor("beta", o.beta);
    const at = this.#live();
    if (this.rule === "normalized") {
      if (decay || beta)
        throw new ArgumentError(
          `${decay ? "decay" : "beta"}: not together with rule "normalized" (only with an update rule: "linear", "gated", "delta" or "gated_delta")`,
        );
      return this.#normalizedStep(at, shapes(q, k, v));
    }
    checkInputs(this.#o, o);
    const [B, Hkv] = this.lead as [number, number];
    const p = ruleShapes(q, k, v, decay, beta, { B, Hkv, dk: this.E, dv: this.Ev });
    const { kernels: K, heap } = runtime();
    const outShape = [p.B, p.Hq, p.T, p.dv];
    if (p.T === 0) return { data: new Float32Array(0), shape: outShape };
    heap.need("LinearAttentionState.step", ruleBytes(K, p, this.#o, true));
    const output = { data: resultArray("LinearAttentionState.step", p.B * p.Hq * p.T * p.dv), shape: outShape };
    const scope = heap.scope();
    try {
      const placed: Placed = {
        q: place(scope, p.q),
        k: place(scope, p.k),
        v: place(scope, p.v),
        decay: p.decay ? place(scope, p.decay) : 0,
        beta: p.beta ? place(scope, p.beta) : 0,
        out: scope.alloc(4 * output.data.length),
        state: at,
      };
      attendRule(K, scope, this.#o, p, placed, p.T < this.#o.chunkSize);
      output.data.set(heap.f32(placed.out, output.data.length));
    } finally {
      scope.release();
    }
    return output;
  }

  #normalizedStep(at: number, p: ReturnType<typeof shapes>): Tensor {
    const { kernels: K, heap } = runtime();
    if (p.lead.length !== this.lead.length || p.lead.some((d, i) => d !== this.lead[i]) || p.E !== this.E || p.Ev !== this.Ev || p.Lk !== p.Lq) {
      const want = fmt([...this.lead, p.Lq, this.E]);
      throw new ShapeError(
        `LinearAttentionState.step: expected query and key ${want} and value ${fmt([...this.lead, p.Lq, this.Ev])}, got ${fmt(p.q.shape)}, ${fmt(p.k.shape)}, ${fmt(p.v.shape)}`,
      );
    }
    const scope = heap.scope();
    try {
      const [q, k, v] = [p.q, p.k, p.v].map((t) => scope.put(t.data)) as [number, number, number];
      const out = scope.alloc(4 * p.N * p.Lq * p.Ev);
      const work = scope.alloc(4 * p.E);
      const per = this.#per;
      attendNormalized(K, p, { q, k, v, out, work }, (n) => at + 4 * n * per, { ...this.#o, causal: true });
      return { data: heap.f32(out, p.N * p.Lq * p.Ev).slice(), shape: [...p.lead, p.Lq, p.Ev] };
    } finally {
      scope.release();
    }
  }

  /** The same as dispose(), for `using` (explicit resource management): freed at the end of the block. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  dispose(): void {
    if (!this.#at) return;
    this.#heap.untrack(this);
    if (!this.#heap.closed) this.#heap.free(this.#at);
    this.#at = 0;
  }

  #live(): number {
    this.#heap.assertOpen("LinearAttentionState");
    if (!this.#at) throw new StateError("LinearAttentionState was disposed: it can no longer be used");
    return this.#at;
  }
}

// ---------------------------------------------------------------------------------------------
// In a module

/** @internal a module's heads laid out as column slices of [B, rows, features] rows */
export interface ModuleHeads {
  B: number;
  Hq: number;
  Hkv: number;
  /** head size (dk = dv) */
  hd: number;
  /** new tokens, which follow `past` tokens whose keys and values come first in k and v */
  Lq: number;
  past: number;
  /** Q [B, Lq, qRow], head h at column h * hd; K and V [B, rows, kvRow]; out like Q */
  q: number;
  qRow: number;
  k: number;
  v: number;
  kvRow: number;
  rows: number;
  out: number;
}

/**
 * @internal a module's linear attention by a rule without per-token inputs (causal self-attention):
 * per batch element and key/value head, the state from the past tokens (a cache's), then the new
 * tokens with their outputs
 */
export function moduleRule(K: Kernels, heap: Heap, scope: Scope, f: Form, m: ModuleHeads): void {
  if (f.gated || f.delta) throw new Error(`wasm-attention internal: rule "${f.rule}" in a module`);
  const { hd } = m;
  const group = m.Hq / m.Hkv;
  const scale = Math.fround(f.scale ?? 1 / Math.sqrt(hd));
  const C = Math.max(1, Math.min(f.chunkSize, Math.max(m.past, m.Lq)));
  const work = scope.alloc(Math.max(K.linear_chunked_f32_workspace(C, hd, hd, 0), K.linear_recurrent_f32_workspace(hd, hd)));
  const s = scope.alloc(4 * hd * hd);
  for (let b = 0; b < m.B; b++) {
    for (let g = 0; g < m.Hkv; g++) {
      heap.f32(s, hd * hd).fill(0);
      const k = m.k + 4 * (b * m.rows * m.kvRow + g * hd);
      const v = m.v + 4 * (b * m.rows * m.kvRow + g * hd);
      const q = m.q + 4 * (b * m.Lq * m.qRow + g * group * hd);
      const out = m.out + 4 * (b * m.Lq * m.qRow + g * group * hd);
      if (m.past) K.linear_chunked_f32(0, 0, 0, s, 0, 0, 0, 0, k, m.kvRow, v, m.kvRow, 0, 0, 0, work, m.past, hd, hd, Math.min(C, m.past), scale);
      const [kNew, vNew] = [k + 4 * m.past * m.kvRow, v + 4 * m.past * m.kvRow];
      if (m.Lq < f.chunkSize)
        K.linear_recurrent_f32(out, m.qRow, hd, s, q, m.qRow, hd, group, kNew, m.kvRow, vNew, m.kvRow, 0, 0, 0, work, m.Lq, hd, hd, scale);
      else
        K.linear_chunked_f32(
          out,
          m.qRow,
          hd,
          s,
          q,
          m.qRow,
          hd,
          group,
          kNew,
          m.kvRow,
          vNew,
          m.kvRow,
          0,
          0,
          0,
          work,
          m.Lq,
          hd,
          hd,
          Math.min(C, m.Lq),
          scale,
        );
    }
  }
}
