import { ArgumentError, ShapeError } from "./errors.js";
import { runtime } from "./init.js";
import { type AttentionOptions, type Features, readCall } from "./features.js";
import { type HeadLayout, attention } from "./route.js";
import { place } from "./resident.js";
import { additive, kernelMask } from "./mask.js";
import { type Snapshot, type Tensor, checkMask, checkStored, checkTensor, describe, fmt, resultArray, size } from "./tensor.js";
import { storedBytes } from "./heads.js";
import { dtypeOf } from "./cache.js";
import { KvFormat } from "./enums.js";

/**
 * softmax(Q K^T * scale + mask) V, with the semantics of torch.nn.functional.scaled_dot_product_attention:
 * query [..., Hq, Lq, E], key [..., Hk, Lk, E], value [..., Hk, Lk, Ev] give [..., Hq, Lq, Ev].
 * Leading dimensions are optional and must match. A query row whose every key is masked gets
 * zeros (and zero weights), not NaN. Inputs are not modified; the output is a new tensor.
 * Resident tensors (residentTensor()) are read where they are, without a copy.
 */
export function scaledDotProductAttention(
  query: Tensor,
  key: Tensor,
  value: Tensor,
  options: AttentionOptions & { returnScores: ScoreStage },
): AttentionResult & { scores: Tensor };
export function scaledDotProductAttention(
  query: Tensor,
  key: Tensor,
  value: Tensor,
  options: AttentionOptions & { returnWeights: true },
): AttentionResult & { weights: Tensor };
export function scaledDotProductAttention(
  query: Tensor,
  key: Tensor,
  value: Tensor,
  options?: Omit<AttentionOptions, "returnWeights" | "returnScores"> & { returnWeights?: false },
): Tensor;
export function scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, options?: AttentionOptions): Tensor | AttentionResult;
export function scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, options: AttentionOptions = {}): Tensor | AttentionResult {
  const { kernels: K, heap, pool } = runtime();
  // every caller object is read once, here; only the snapshots are used afterwards
  const q = checkTensor("query", query);
  const k = key === query ? q : checkStored("key", key);
  const v = value === key ? k : value === query ? q : checkStored("value", value);
  const d = dims(q, k, v);
  const { features: f, given } = readCall(options, d);
  heads(d, q, k, f);
  const stored = storedKV(k, v, f);
  const { B, Hq, Hk, Lq, Lk, E, Ev } = d;
  const scoreShape = [...q.shape.slice(0, -1), Lk];
  const mask = given.attnMask === undefined ? null : kernelMask("attnMask", additive(checkMask("attnMask", given.attnMask), true), scoreShape);
  const outLength = B * Hq * Lq * Ev;
  const scoreLength = B * Hq * Lq * Lk;
  const weightsLength = f.returnWeights ? scoreLength : 0;
  const scoresLength = f.returnScores ? scoreLength : 0;
  const result = (out: Float32Array, weights: Float32Array, scores: Float32Array): Tensor | AttentionResult => {
    const output = { data: out, shape: [...q.shape.slice(0, -1), Ev] };
    if (!f.returnWeights && !f.returnScores) return output;
    const r: AttentionResult = { output };
    if (f.returnWeights) r.weights = { data: weights, shape: scoreShape };
    if (f.returnScores) r.scores = { data: scores, shape: scoreShape };
    return r;
  };
  // nothing to compute, however the empty tensors are shaped (with Ev = 0 the weights and scores
  // still exist, as in torch: the kernel computes them and reads no value)
  if (outLength === 0 && weightsLength + scoresLength === 0)
    return result(new Float32Array(0), new Float32Array(weightsLength), new Float32Array(scoresLength));
  const copies = (t: Snapshot) => (t.address === undefined || f.rope ? t.data.length : 0);
  heap.need(
    "scaledDotProductAttention",
    4 *
      (copies(q) +
        (k === q ? 0 : copies(k)) +
        (v === k || v === q ? 0 : copies(v)) +
        2 * outLength +
        weightsLength +
        scoresLength +
        (mask?.data.length ?? 0)) +
      K.attention_f32_workspace(Lk, E, Ev, stored?.format ?? KvFormat.F32, true) * pool.size +
      8 * (f.blockSparse?.layout.length ?? 0) +
      4 * B +
      64 * 16,
  );
  // the results too, before any kernel runs
  const outData = resultArray("scaledDotProductAttention", outLength);
  const weightsData = resultArray("scaledDotProductAttention", weightsLength);
  const scoresData = resultArray("scaledDotProductAttention", scoresLength);

  const scope = heap.scope();
  try {
    // with RoPE, query and key are rotated in copies of their own: inputs, resident ones too, are never modified
    const qk = (t: Snapshot) => (f.rope ? scope.put(t.data) : place(scope, t));
    const qAt = qk(q);
    const kAt = k === q && !f.rope ? qAt : qk(k);
    const vAt = v === k && !f.rope ? kAt : place(scope, v);
    const diag = f.alignment === "bottom-right" ? Lk - Lq : 0;
    if (f.rope) {
      const { theta, interleaved, rotaryDim, positionOffset } = f.rope;
      K.rope_f32(qAt, B * Hq * Lq, Lq, E, 1, E, rotaryDim, positionOffset + diag, theta, interleaved);
      K.rope_f32(kAt, B * Hk * Lk, Lk, E, 1, E, rotaryDim, positionOffset, theta, interleaved);
    }
    const placedMask = mask && { at: scope.put(mask.data), info: mask };
    const out = scope.alloc(4 * outLength);
    // heads are whole blocks [B, H, L, D]
    const at = (base: number, H: number, L: number, D: number) => (b: number, h: number) => base + 4 * (b * H + h) * L * D;
    // stored keys and values: rows of rowBytes, strides counted in stored values, a q8 row's scale after its values
    const rows = (base: number, row: number) => (b: number, h: number) => base + (b * Hk + h) * Lk * row;
    const layout: HeadLayout = {
      ...d,
      q: at(qAt, Hq, Lq, E),
      k: stored ? rows(kAt, stored.kRow) : at(kAt, Hk, Lk, E),
      v: stored ? rows(vAt, stored.vRow) : at(vAt, Hk, Lk, Ev),
      out: at(out, Hq, Lq, Ev),
      qStride: E,
      kStride: stored ? stored.kRow / stored.el : E,
      vStride: stored ? stored.vRow / stored.el : Ev,
      outStride: Ev,
    };
    const kv = stored && {
      format: stored.format,
      kScale: (b: number, g: number) => layout.k(b, g) + E,
      vScale: (b: number, g: number) => layout.v(b, g) + Ev,
    };
    // each sequence's valid keys; bottom-right, its own diagonal
    const lengths = f.keyLengths;
    const keyRange = lengths ? (b: number) => [0, lengths[b]!, f.alignment === "bottom-right" ? lengths[b]! - Lq : 0] as const : undefined;
    const ctx = { K, heap, scope, pool };
    const call = { diag, mask: placedMask, keyRange, kv: kv || undefined };
    // the scores at the stage asked: "masked" is what the kernel's softmax reads, so the same pass gives the output
    const masked = f.returnScores === "masked";
    const w = f.returnWeights || masked ? scope.alloc(4 * scoreLength) : 0;
    attention(ctx, layout, f, { ...call, weights: w, rawScores: masked });
    outData.set(heap.f32(out, outLength));
    if (masked) scoresData.set(heap.f32(w, scoreLength));
    if (f.returnWeights && masked) attention(ctx, layout, f, { ...call, weights: w });
    if (f.returnWeights) weightsData.set(heap.f32(w, scoreLength));
    if (f.returnScores && !masked) {
      // every key, before any mask, band, bias or sink: a pass of its own
      const s = scope.alloc(4 * scoreLength);
      const plain: Features = {
        ...f,
        causal: false,
        window: [-1, -1],
        dilation: 1,
        slopes: [],
        blockSparse: null,
        sinks: null,
        softcap: f.returnScores === "softcapped" ? f.softcap : 0,
      };
      attention(ctx, { ...layout, out: at(scope.alloc(4 * outLength), Hq, Lq, Ev) }, plain, {
        diag: 0,
        mask: null,
        weights: s,
        rawScores: true,
        kv: kv || undefined,
      });
      scoresData.set(heap.f32(s, scoreLength));
    }
    return result(outData, weightsData, scoresData);
  } finally {
    scope.release();
  }
}

type ScoreStage = NonNullable<AttentionOptions["returnScores"]>;

/** What scaledDotProductAttention returns when asked for weights or scores besides the output. */
export interface AttentionResult {
  output: Tensor;
  /** the softmax probabilities [..., Hq, Lq, Lk], with returnWeights */
  weights?: Tensor;
  /** the scores [..., Hq, Lq, Lk] at the stage returnScores names */
  scores?: Tensor;
}

// the sizes of a call, from the shapes: query [..., Hq, Lq, E], key [..., Hk, Lk, E], value [..., Hk, Lk, Ev]
function dims(q: Snapshot, k: Snapshot, v: Snapshot) {
  const rank = q.shape.length;
  if (rank < 2) throw new ShapeError(`query: expected [..., Lq, E] (at least 2 dimensions), got ${fmt(q.shape)}`);
  for (const [name, t] of [
    ["key", k],
    ["value", v],
  ] as const) {
    if (t.shape.length !== rank) throw new ShapeError(`${name}: expected ${rank} dimensions like query ${fmt(q.shape)}, got ${fmt(t.shape)}`);
  }
  const batch = q.shape.slice(0, -3);
  for (const [name, t] of [
    ["key", k],
    ["value", v],
  ] as const) {
    if (t.shape.slice(0, -3).some((d, i) => d !== batch[i])) {
      throw new ShapeError(`${name}: expected the leading dimensions of query ${fmt(q.shape)}, got ${fmt(t.shape)}`);
    }
  }
  const [Lq, E] = q.shape.slice(-2) as [number, number];
  const [Lk, Ek] = k.shape.slice(-2) as [number, number];
  const [Lv, Ev] = v.shape.slice(-2) as [number, number];
  const Hq = rank > 2 ? q.shape[rank - 3]! : 1;
  const Hk = rank > 2 ? k.shape[rank - 3]! : 1;
  if (E < 1) throw new ShapeError(`query: expected an embedding dimension E of at least 1, got ${fmt(q.shape)}`);
  if (Ek !== E) throw new ShapeError(`key: expected [..., Lk, ${E}] (E of query ${fmt(q.shape)}), got ${fmt(k.shape)}`);
  if (Lv !== Lk) throw new ShapeError(`value: expected [..., ${Lk}, Ev] (Lk of key ${fmt(k.shape)}), got ${fmt(v.shape)}`);
  if (rank > 2 && v.shape[rank - 3] !== Hk) throw new ShapeError(`value: expected ${Hk} heads like key ${fmt(k.shape)}, got ${fmt(v.shape)}`);
  return { B: size(batch), Hq, Hk, Lq, Lk, E, Ev };
}

// query heads against key/value heads: equal, or a multiple with enableGqa
function heads(d: { Hq: number; Hk: number }, q: Snapshot, k: Snapshot, f: Features): void {
  if (f.enableGqa) {
    if (d.Hk === 0 || d.Hq % d.Hk !== 0) {
      throw new ShapeError(
        `query: expected a number of heads that is a multiple of key's ${d.Hk} (${fmt(k.shape)}) with enableGqa, got ${d.Hq} in ${fmt(q.shape)}`,
      );
    }
  } else if (d.Hq !== d.Hk) {
    throw new ShapeError(
      `key: expected ${d.Hq} heads like query ${fmt(q.shape)}, got ${fmt(k.shape)} (pass enableGqa: true for grouped-query attention)`,
    );
  }
}

/**
 * Keys and values stored as f16 or q8 rows (ResidentTensor with a dtype): both, in one format,
 * read as stored; RoPE (which rotates copies) and global tokens need float32 ones.
 */
function storedKV(k: Snapshot, v: Snapshot, f: Features): { format: KvFormat; el: number; kRow: number; vRow: number } | null {
  if (!k.stored && !v.stored) return null;
  const name = (s: Snapshot) => (s.stored ? `a ResidentTensor of dtype "${dtypeOf(s.stored.format)}"` : describe(s.data));
  if (!k.stored || !v.stored || dtypeOf(k.stored.format) !== dtypeOf(v.stored.format)) {
    throw new ArgumentError(
      `value: expected keys and values stored alike (float32, or ResidentTensors of one dtype), got key ${name(k)} and value ${name(v)}`,
    );
  }
  if (f.rope) throw new ArgumentError(`key: expected a float32 tensor with rope (it rotates a copy), got ${name(k)}`);
  if (f.global) throw new ArgumentError(`key: expected a float32 tensor with globalTokens, got ${name(k)}`);
  // f16 keys and values without Infinity or NaN, both: the kernel's unchecked widening
  const format = k.stored.format === v.stored.format ? k.stored.format : KvFormat.F16;
  return { format, el: storedBytes(format), kRow: k.stored.rowBytes, vRow: v.stored.rowBytes };
}
