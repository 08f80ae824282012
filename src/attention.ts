import { ArgumentError, OutOfMemoryError, ShapeError } from "./errors.js";
import { runtime } from "./init.js";
import { attendHeads } from "./heads.js";
import { place } from "./resident.js";
import { type KernelMask, additive, kernelMask } from "./mask.js";
import { type BoolTensor, type Tensor, checkMask, checkOptions, checkTensor, describe, fmt, size } from "./tensor.js";

export interface AttentionOptions {
  /**
   * Boolean (true = takes part, as torch's SDPA) or float (added to the scores), broadcast with
   * numpy rules to the scores' shape [..., Hq, Lq, Lk].
   */
  attnMask?: Tensor | BoolTensor;
  /** Query i sees keys 0..i (with the default top-left alignment). Not with `attnMask`. */
  isCausal?: boolean;
  /**
   * Where the causal diagonal starts when Lq != Lk: "top-left" (torch's is_causal: query i sees
   * keys 0..i) or "bottom-right" (FlashAttention-2 and KV-cache decoding: query i sees keys
   * 0..i + Lk - Lq). Default "top-left".
   */
  causalAlignment?: "top-left" | "bottom-right";
  /** Multiplies QK^T; default 1/sqrt(E). */
  scale?: number;
  /**
   * A sliding window [left, right] (FlashAttention-2's): query i sees keys i - left ..= i + right,
   * measured from the diagonal that `causalAlignment` sets; Infinity for no bound on a side. With
   * isCausal, right is 0. Keys outside are never scored: the cost is O(L * window * E).
   */
  window?: readonly [number, number];
  /** Grouped-query attention: query head h reads key/value head floor(h / (Hq / Hk)). */
  enableGqa?: boolean;
  /** Also return the softmax probabilities [..., Hq, Lq, Lk]. */
  returnWeights?: boolean;
}

const OPTIONS = ["attnMask", "isCausal", "causalAlignment", "window", "scale", "enableGqa", "returnWeights"] as const;

/**
 * softmax(Q K^T * scale + mask) V, with the semantics of torch.nn.functional.scaled_dot_product_attention:
 * query [..., Hq, Lq, E], key [..., Hk, Lk, E], value [..., Hk, Lk, Ev] give [..., Hq, Lq, Ev].
 * Leading dimensions are optional and must match. A query row whose every key is masked gets
 * zeros (and zero weights), not NaN. Inputs are not modified; the output is a new tensor.
 * Resident tensors (residentTensor()) are read where they are, without a copy.
 */
export function scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, options?: AttentionOptions & { returnWeights?: false }): Tensor;
export function scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, options: AttentionOptions & { returnWeights: true }): { output: Tensor; weights: Tensor };
export function scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, options: AttentionOptions = {}): Tensor | { output: Tensor; weights: Tensor } {
  const { kernels: K, heap, pool } = runtime();
  const p = plan(query, key, value, options);
  const { B, Hq, Hk, Lq, Lk, E, Ev } = p;
  const mask = p.mask;
  const outLength = B * Hq * Lq * Ev;
  const weightsLength = p.returnWeights ? B * Hq * Lq * Lk : 0;
  const work = K.attention_f32_workspace(Lk, E, Ev);
  const bytes = 4 * (size(query.shape) + size(key.shape) + size(value.shape) + outLength + weightsLength + (mask?.data.length ?? 0)) + work;
  if (bytes > 2 ** 32) {
    throw new OutOfMemoryError(`scaledDotProductAttention: needs ${bytes} bytes of WebAssembly memory, more than the 4 GiB a module can address`);
  }

  const scope = heap.scope();
  try {
    const q = place(scope, query);
    const k = key === query ? q : place(scope, key);
    const v = value === key ? k : place(scope, value);
    const m = mask ? scope.put(mask.data) : 0;
    const out = scope.alloc(4 * outLength);
    const w = p.returnWeights ? scope.alloc(4 * weightsLength) : 0;
    const at = (base: number, H: number, L: number, D: number) => (b: number, h: number) => base + 4 * (b * H + h) * L * D;
    attendHeads({ K, heap, scope, pool }, {
      B, Hq, Hk, Lq, Lk, E, Ev,
      q: at(q, Hq, Lq, E), k: at(k, Hk, Lk, E), v: at(v, Hk, Lk, Ev), out: at(out, Hq, Lq, Ev),
      qStride: E, kStride: E, vStride: Ev, outStride: Ev,
      weights: w, mask: m, maskOffsets: mask?.offsets ?? [], maskRow: mask?.rowStride ?? 0,
      scale: p.scale, diag: p.alignment === "bottom-right" ? Lk - Lq : 0, left: p.window[0], right: p.window[1],
    });
    const output = { data: heap.f32(out, outLength).slice(), shape: p.outShape };
    if (!p.returnWeights) return output;
    return { output, weights: { data: heap.f32(w, weightsLength).slice(), shape: p.scoreShape } };
  } finally {
    scope.release();
  }
}

// the kernel's band [left, right] from the window option and isCausal; -1 for no bound
function band(window: unknown, causal: boolean): [number, number] {
  let [left, right] = [-1, -1];
  if (window !== undefined) {
    const ok = (x: unknown) => x === Infinity || (typeof x === "number" && Number.isInteger(x) && x >= 0 && x < 2 ** 31);
    if (!Array.isArray(window) || window.length !== 2 || !window.every(ok)) {
      throw new ArgumentError(`window: expected [left, right], each a non-negative integer or Infinity, got ${Array.isArray(window) ? `[${window.join(", ")}]` : describe(window)}`);
    }
    [left, right] = window.map((x: number) => (x === Infinity ? -1 : x));
  }
  return [left, causal ? 0 : right];
}

interface Plan {
  B: number;
  Hq: number;
  Hk: number;
  Lq: number;
  Lk: number;
  E: number;
  Ev: number;
  scale: number;
  alignment: "top-left" | "bottom-right";
  /** [left, right] of the band of keys each query sees; -1: unbounded */
  window: [number, number];
  mask: KernelMask | null;
  returnWeights: boolean;
  outShape: number[];
  scoreShape: number[];
}

// every check, before any memory is touched
function plan(query: unknown, key: unknown, value: unknown, options: AttentionOptions): Plan {
  const fn = "scaledDotProductAttention";
  checkOptions(`${fn} options`, options, OPTIONS);
  const q = checkTensor("query", query);
  const k = checkTensor("key", key);
  const v = checkTensor("value", value);
  const rank = q.shape.length;
  if (rank < 2) throw new ShapeError(`query: expected [..., Lq, E] (at least 2 dimensions), got ${fmt(q.shape)}`);
  for (const [name, t] of [["key", k], ["value", v]] as const) {
    if (t.shape.length !== rank) {
      throw new ShapeError(`${name}: expected ${rank} dimensions like query ${fmt(q.shape)}, got ${fmt(t.shape)}`);
    }
  }
  const batch = q.shape.slice(0, -3);
  for (const [name, t] of [["key", k], ["value", v]] as const) {
    if (t.shape.slice(0, -3).some((d, i) => d !== batch[i])) {
      throw new ShapeError(`${name}: leading dimensions of ${fmt(t.shape)} must equal query's ${fmt(q.shape)}`);
    }
  }
  const [Lq, E] = q.shape.slice(-2);
  const [Lk, Ek] = k.shape.slice(-2);
  const [Lv, Ev] = v.shape.slice(-2);
  const Hq = rank > 2 ? q.shape[rank - 3] : 1;
  const Hk = rank > 2 ? k.shape[rank - 3] : 1;
  if (E < 1) throw new ShapeError(`query: the embedding dimension E must be at least 1, got ${fmt(q.shape)}`);
  if (Ek !== E) throw new ShapeError(`key: expected [..., Lk, ${E}] (E of query ${fmt(q.shape)}), got ${fmt(k.shape)}`);
  if (Lv !== Lk) throw new ShapeError(`value: expected [..., ${Lk}, Ev] (Lk of key ${fmt(k.shape)}), got ${fmt(v.shape)}`);
  if (rank > 2 && v.shape[rank - 3] !== Hk) {
    throw new ShapeError(`value: expected ${Hk} heads like key ${fmt(k.shape)}, got ${fmt(v.shape)}`);
  }
  if (options.enableGqa !== undefined && typeof options.enableGqa !== "boolean") {
    throw new ArgumentError(`enableGqa: expected a boolean, got ${describe(options.enableGqa)}`);
  }
  if (options.enableGqa) {
    if (Hk === 0 || Hq % Hk !== 0) {
      throw new ShapeError(`enableGqa: query heads (${Hq}, from ${fmt(q.shape)}) must be a multiple of key/value heads (${Hk}, from ${fmt(k.shape)})`);
    }
  } else if (Hq !== Hk) {
    throw new ShapeError(`key: expected ${Hq} heads like query ${fmt(q.shape)}, got ${fmt(k.shape)} (pass enableGqa: true for grouped-query attention)`);
  }

  if (options.isCausal !== undefined && typeof options.isCausal !== "boolean") {
    throw new ArgumentError(`isCausal: expected a boolean, got ${describe(options.isCausal)}`);
  }
  const alignment = options.causalAlignment ?? "top-left";
  if (alignment !== "top-left" && alignment !== "bottom-right") {
    throw new ArgumentError(`causalAlignment: expected "top-left" or "bottom-right", got ${describe(alignment)}`);
  }
  if (options.isCausal && options.attnMask !== undefined) {
    throw new ArgumentError(`${fn}: pass either isCausal or attnMask, not both (fold the causal mask into attnMask)`);
  }
  const scale = options.scale ?? 1 / Math.sqrt(E);
  if (typeof scale !== "number" || !Number.isFinite(scale) || scale <= 0) {
    throw new ArgumentError(`scale: expected a finite number > 0, got ${describe(options.scale)}`);
  }
  if (options.returnWeights !== undefined && typeof options.returnWeights !== "boolean") {
    throw new ArgumentError(`returnWeights: expected a boolean, got ${describe(options.returnWeights)}`);
  }
  const scoreShape = [...q.shape.slice(0, -1), Lk];
  const mask = options.attnMask === undefined ? null : kernelMask("attnMask", additive(checkMask("attnMask", options.attnMask), true), scoreShape);
  return {
    B: size(batch),
    Hq,
    Hk,
    Lq,
    Lk,
    E,
    Ev,
    scale: Math.fround(scale),
    alignment,
    window: band(options.window, options.isCausal ?? false),
    mask,
    returnWeights: options.returnWeights ?? false,
    outShape: [...q.shape.slice(0, -1), Ev],
    scoreShape,
  };
}
