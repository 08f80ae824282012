import { FeatureMap } from "./enums.js";
import { ArgumentError, ShapeError, StateError } from "./errors.js";
import { runtime } from "./init.js";
import type { Heap } from "./memory.js";
import { type Tensor, checkOptions, checkShape, checkTensor, describe, fmt, size } from "./tensor.js";

export interface LinearAttentionOptions {
  /** Query i sees keys 0..i (prefix sums); needs Lq = Lk. Default false. */
  causal?: boolean;
  /** The feature map phi: "elu+1" (default, Katharopoulos et al.) or "relu". */
  featureMap?: "elu+1" | "relu";
  /** Added to the normaliser phi(q) . sum phi(k); default 1e-6. */
  eps?: number;
}

const MAPS = { "elu+1": FeatureMap.EluPlusOne, relu: FeatureMap.Relu } as const;

/** @internal */
export function settings(what: string, o: LinearAttentionOptions | undefined) {
  o = checkOptions(`${what} options`, o, ["causal", "featureMap", "eps"]);
  const causal = o?.causal ?? false;
  if (typeof causal !== "boolean") throw new ArgumentError(`causal: expected a boolean, got ${describe(causal)}`);
  const featureMap = o?.featureMap ?? "elu+1";
  if (typeof featureMap !== "string" || !Object.hasOwn(MAPS, featureMap)) throw new ArgumentError(`featureMap: expected "elu+1" or "relu", got ${describe(featureMap)}`);
  const eps = o?.eps ?? 1e-6;
  if (typeof eps !== "number" || !Number.isFinite(eps) || eps < 0) throw new ArgumentError(`eps: expected a finite number >= 0, got ${describe(eps)}`);
  return { causal, map: MAPS[featureMap], eps: Math.fround(eps) };
}

// query [..., Lq, E], key [..., Lk, E], value [..., Lk, Ev] with equal leading dimensions
function shapes(query: unknown, key: unknown, value: unknown) {
  const q = checkTensor("query", query);
  const k = checkTensor("key", key);
  const v = checkTensor("value", value);
  const r = q.shape.length;
  if (r < 2) throw new ShapeError(`query: expected [..., Lq, E], got ${fmt(q.shape)}`);
  const lead = q.shape.slice(0, -2);
  for (const [name, t] of [["key", k], ["value", v]] as const) {
    if (t.shape.length !== r || t.shape.slice(0, -2).some((d, i) => d !== lead[i])) {
      throw new ShapeError(`${name}: expected [${[...lead, "L", "D"].join(", ")}] like query ${fmt(q.shape)}, got ${fmt(t.shape)}`);
    }
  }
  const [Lq, E] = q.shape.slice(-2);
  const [Lk, Ek] = k.shape.slice(-2);
  const [Lv, Ev] = v.shape.slice(-2);
  if (Ek !== E) throw new ShapeError(`key: expected [..., Lk, ${E}] (E of query), got ${fmt(k.shape)}`);
  if (Lv !== Lk) throw new ShapeError(`value: expected [..., ${Lk}, Ev] (Lk of key), got ${fmt(v.shape)}`);
  return { q, k, v, lead, N: size(lead), Lq, Lk, E, Ev };
}

/**
 * Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs"): phi(Q) (phi(K)^T V) /
 * (phi(Q) phi(K)^T 1), in O(L * E * Ev) time and O(E * Ev) state per head instead of O(L^2).
 * query [..., Lq, E], key [..., Lk, E], value [..., Lk, Ev] -> [..., Lq, Ev].
 */
export function linearAttention(query: Tensor, key: Tensor, value: Tensor, options?: LinearAttentionOptions): Tensor {
  const { kernels: K, heap } = runtime();
  const o = settings("linearAttention", options);
  const p = shapes(query, key, value);
  if (o.causal && p.Lq !== p.Lk) throw new ShapeError(`linearAttention: causal needs Lq = Lk, got query ${fmt(p.q.shape)} and key ${fmt(p.k.shape)}`);
  if (p.N * p.Lq * p.Ev === 0) return { data: new Float32Array(0), shape: [...p.lead, p.Lq, p.Ev] };
  heap.need("linearAttention", 4 * (p.q.data.length + p.k.data.length + p.v.data.length + p.N * p.Lq * p.Ev + p.E * p.Ev + 2 * p.E) + 256);
  const scope = heap.scope();
  try {
    const [q, k, v] = [p.q, p.k, p.v].map((t) => scope.put(t.data));
    const out = scope.alloc(4 * p.N * p.Lq * p.Ev);
    const state = scope.alloc(4 * (p.E * p.Ev + p.E));
    const work = scope.alloc(4 * p.E);
    for (let n = 0; n < p.N; n++) {
      heap.f32(state, p.E * p.Ev + p.E).fill(0);
      K.linear_attention_f32(out + 4 * n * p.Lq * p.Ev, p.Ev, q + 4 * n * p.Lq * p.E, p.E, k + 4 * n * p.Lk * p.E, p.E, v + 4 * n * p.Lk * p.Ev, p.Ev, state, state + 4 * p.E * p.Ev, work, p.Lq, p.Lk, p.E, p.Ev, o.causal, o.map, o.eps);
    }
    return { data: heap.f32(out, p.N * p.Lq * p.Ev).slice(), shape: [...p.lead, p.Lq, p.Ev] };
  } finally {
    scope.release();
  }
}

/**
 * The recurrent form of causal linear attention, for generation: O(E * Ev) state per head.
 * `step(q, k, v)` takes the next T tokens ([...lead, T, E], [...lead, T, E], [...lead, T, Ev]) and
 * returns their outputs [...lead, T, Ev], equal to the causal batch form over the whole sequence.
 */
export class LinearAttentionState {
  readonly lead: readonly number[];
  readonly E: number;
  readonly Ev: number;
  readonly #o: ReturnType<typeof settings>;
  readonly #heap: Heap;
  #at: number;

  constructor(lead: readonly number[], E: number, Ev: number, options?: Omit<LinearAttentionOptions, "causal">) {
    const { heap } = runtime();
    this.#o = settings("LinearAttentionState", { ...options, causal: true });
    this.lead = checkShape("LinearAttentionState leading dimensions", lead);
    for (const [name, x] of [["E", E], ["Ev", Ev]] as const) {
      if (!Number.isInteger(x) || x < 1 || x > 2 ** 16) throw new ArgumentError(`LinearAttentionState: ${name} must be a positive integer (at most 65536), got ${String(x)}`);
    }
    this.E = E;
    this.Ev = Ev;
    this.#heap = heap;
    heap.need("LinearAttentionState", 4 * size(this.lead) * (E * Ev + E));
    this.#at = heap.alloc(4 * size(this.lead) * (E * Ev + E));
    this.reset();
    const at = this.#at;
    heap.track(this, () => [at]);
  }

  /** Forgets every token: the next step starts a new sequence. */
  reset(): void {
    this.#heap.f32(this.#live(), size(this.lead) * (this.E * this.Ev + this.E)).fill(0);
  }

  step(query: Tensor, key: Tensor, value: Tensor): Tensor {
    const p = shapes(query, key, value); // read first: its getters run before the state check
    const at = this.#live();
    const { kernels: K, heap } = runtime();
    const want = fmt([...this.lead, p.Lq, this.E]);
    if (p.lead.length !== this.lead.length || p.lead.some((d, i) => d !== this.lead[i]) || p.E !== this.E || p.Ev !== this.Ev || p.Lk !== p.Lq) {
      throw new ShapeError(`LinearAttentionState.step: expected query and key ${want} and value ${fmt([...this.lead, p.Lq, this.Ev])}, got ${fmt(p.q.shape)}, ${fmt(p.k.shape)}, ${fmt(p.v.shape)}`);
    }
    const scope = heap.scope();
    try {
      const [q, k, v] = [p.q, p.k, p.v].map((t) => scope.put(t.data));
      const out = scope.alloc(4 * p.N * p.Lq * p.Ev);
      const work = scope.alloc(4 * p.E);
      const per = p.E * p.Ev + p.E;
      for (let n = 0; n < p.N; n++) {
        const s = at + 4 * n * per;
        K.linear_attention_f32(out + 4 * n * p.Lq * p.Ev, p.Ev, q + 4 * n * p.Lq * p.E, p.E, k + 4 * n * p.Lq * p.E, p.E, v + 4 * n * p.Lq * p.Ev, p.Ev, s, s + 4 * p.E * p.Ev, work, p.Lq, p.Lq, p.E, p.Ev, true, this.#o.map, this.#o.eps);
      }
      return { data: heap.f32(out, p.N * p.Lq * p.Ev).slice(), shape: [...p.lead, p.Lq, p.Ev] };
    } finally {
      scope.release();
    }
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
