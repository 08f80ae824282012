// The attention features, one table: each option's name, where it is accepted, and how it is read
// into the checked Features that routing and the kernel use. The option lists, the variant type and
// the plan all come from here; adding a feature is an entry here, its field in Features, and what
// the kernel does with it (route.ts, heads.ts, assembly/attention.ts).
import { ArgumentError, ShapeError } from "./errors.js";
import { bool, f32, int, oneOf } from "./check.js";
import { type LinearAttentionOptions, settings } from "./linear-attention.js";
import { type BlockSparsePattern, blockSparseLayout } from "./sparse.js";
import { type BoolTensor, MAX_DIM, type Tensor, checkMask, checkOptions, describe, fmt, honest, typedKind } from "./tensor.js";

export interface AttentionOptions {
  /**
   * Boolean (true = takes part, as torch's SDPA) or float (added to the scores), broadcast with
   * numpy rules to the scores' shape [..., Hq, Lq, Lk].
   */
  attnMask?: Tensor | BoolTensor;
  /** Query i sees keys 0..i (with the default top-left alignment). Not with `attnMask`. Default false. */
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
  /** With `window`: only keys whose distance from the diagonal is a multiple of this (Longformer's dilation). Default 1. */
  dilation?: number;
  /** Scores become softcap * tanh(score / softcap) before the mask (Gemma 2's soft-capping). Default: none. */
  softcap?: number;
  /**
   * ALiBi: -slope * |i - j| is added to the scores inside the kernel (no bias matrix). `true` uses
   * the standard geometric slopes for Hq heads (alibiSlopes(Hq)); or one slope per query head.
   */
  alibi?: boolean | readonly number[];
  /**
   * Block-sparse attention: `layout` [ceil(Lq / blockSize), ceil(Lk / blockSize)], boolean (1: query
   * block i sees key block j), for example from blockSparseLayout(); blockSize a multiple of 8.
   * Key blocks that no query of a block sees are never scored.
   */
  blockSparse?: { layout: BoolTensor; blockSize: number };
  /** Rotary position embedding applied to (copies of) query and key; see RopeOptions. */
  rope?: RopeOptions;
  /**
   * Longformer's global attention (self-attention, Lq = Lk): these positions attend to every key and
   * every query attends to them, on top of the window. Not with attnMask, isCausal, alibi,
   * blockSparse or returnWeights.
   */
  globalTokens?: readonly number[];
  /** Grouped-query attention: query head h reads key/value head floor(h / (Hq / Hk)). Default false. */
  enableGqa?: boolean;
  /** Also return the softmax probabilities [..., Hq, Lq, Lk]. Default false. */
  returnWeights?: boolean;
  /**
   * Attention sinks (gpt-oss): one logit per query head that joins each row's softmax denominator
   * without a value, so a row's weights sum to less than 1 (and a row whose every key is masked
   * still gets zeros). Hq finite numbers. Default: none.
   */
  sinks?: Float32Array | readonly number[];
  /**
   * The number of valid keys of each batch element (an Int32Array of B = the product of the
   * leading dimensions): keys at or past it are never read, not scored and not masked (ONNX's
   * `nonpad_kv_seqlen`). With `causalAlignment: "bottom-right"` the diagonal is per sequence,
   * `keyLengths[b] - Lq`. Default: every key of every sequence.
   */
  keyLengths?: Int32Array;
  /**
   * Also return the scores [..., Hq, Lq, Lk] at a stage of the softmax's input: "scaled" (scale *
   * QK^T for every key, ONNX Attention's qk_matmul_output_mode 0), "softcapped" (after the soft-cap;
   * equal to "scaled" without one), "masked" ("softcapped" plus the mask and ALiBi, with -Infinity
   * wherever causality, a window, a block layout or keyLengths exclude a key: a fully masked row is
   * all -Infinity). Asking for scores materialises the whole matrix. Returns `{ output, scores }`
   * (and `weights` with returnWeights).
   */
  returnScores?: "scaled" | "softcapped" | "masked";
}

/**
 * Rotary position embedding (Su et al.): key j is at position offset + j, query i at offset + i
 * (+ Lk - Lq with bottom-right alignment, as when decoding); the first rotaryDim dims of each head
 * rotate by pos * theta^(-2i / rotaryDim).
 */
export interface RopeOptions {
  /** Default 10000. */
  theta?: number;
  /** Pairs (2i, 2i + 1) as GPT-J and LLaMA; default false: pairs (i, i + rotaryDim / 2) as GPT-NeoX. */
  interleaved?: boolean;
  /** Dims rotated (even, at most E); default E. */
  rotaryDim?: number;
  /** Position of the first key; default 0. */
  positionOffset?: number;
}

/** The features of one attention call, checked: what routing and the kernel read. */
export interface Features {
  /** the scores' factor; undefined: 1/sqrt(E) */
  scale: number | undefined;
  causal: boolean;
  alignment: "top-left" | "bottom-right";
  /** [left, right] of the band of keys each query sees, before causality; -1: unbounded */
  window: [number, number];
  dilation: number;
  softcap: number;
  /** ALiBi slope per query head; empty: none */
  slopes: number[];
  rope: Required<RopeOptions> | null;
  /** a block layout for this call's lengths */
  blockSparse: { layout: Uint8Array; blockSize: number; nKB: number } | null;
  /** Longformer's global positions, sorted */
  global: number[] | null;
  enableGqa: boolean;
  returnWeights: boolean;
  /** one sink logit per query head; null: none */
  sinks: number[] | null;
  /** valid keys per batch element; null: all */
  keyLengths: Int32Array | null;
  returnScores: "scaled" | "softcapped" | "masked" | null;
}

/** What a feature's reader knows of the call: heads and head size, and, for a call, the lengths. */
interface Context {
  Hq: number;
  E: number;
  Lq: number;
  Lk: number;
  /** batch elements: the product of the leading dimensions */
  B: number;
  /** every option given, read once: for the few checks across features */
  given: AttentionOptions;
}

type Where = "call" | "variant";
interface Feature {
  /** accepted by scaledDotProductAttention ("call") and in MultiHeadAttention's `attention` ("variant") */
  where: readonly Where[];
  /** the option's value (undefined when absent) into its fields of Features */
  read(x: unknown, c: Context): Partial<Features>;
}

const BOTH: readonly Where[] = ["call", "variant"];
const CALL: readonly Where[] = ["call"];

/** Every attention option; attnMask is read by the caller, which owns the mask's layout. */
const FEATURES: { readonly [K in keyof AttentionOptions]-?: Feature } = {
  attnMask: { where: CALL, read: () => ({}) },
  isCausal: { where: CALL, read: (x) => ({ causal: bool("isCausal", x, false) }) },
  causalAlignment: {
    where: CALL,
    read: (x) => ({ alignment: oneOf<Features["alignment"]>("causalAlignment", x, ["top-left", "bottom-right"], "top-left") }),
  },
  scale: { where: CALL, read: (x) => ({ scale: x === undefined ? undefined : f32("scale", x, "positive") }) },
  window: { where: BOTH, read: (x) => ({ window: band(x) }) },
  dilation: {
    where: BOTH,
    read: (x, c) => {
      const dilation = int("dilation", x ?? 1, 1);
      if (dilation > 1 && !c.given.window)
        throw new ArgumentError(`dilation: expected 1 without a window (a dilated sliding window needs one), got ${describe(dilation)}`);
      return { dilation };
    },
  },
  softcap: { where: BOTH, read: (x) => ({ softcap: x === undefined ? 0 : f32("softcap", x, "positive") }) },
  alibi: { where: BOTH, read: (x, c) => ({ slopes: slopes(x, c.Hq) }) },
  rope: { where: BOTH, read: (x, c) => ({ rope: x === undefined ? null : rope(x, c.E) }) },
  blockSparse: { where: BOTH, read: (x, c) => ({ blockSparse: x === undefined ? null : sparse(x, c.Lq, c.Lk) }) },
  globalTokens: { where: CALL, read: (x, c) => ({ global: globals(x, c) }) },
  enableGqa: { where: CALL, read: (x) => ({ enableGqa: bool("enableGqa", x, false) }) },
  returnWeights: { where: CALL, read: (x) => ({ returnWeights: bool("returnWeights", x, false) }) },
  sinks: { where: CALL, read: (x, c) => ({ sinks: x === undefined ? null : sinks(x, c) }) },
  keyLengths: { where: CALL, read: (x, c) => ({ keyLengths: x === undefined ? null : keyLengths(x, c) }) },
  returnScores: {
    where: CALL,
    read: (x, c) => {
      if (x !== undefined && c.given.globalTokens !== undefined) throw new ArgumentError("returnScores: not together with globalTokens");
      return {
        returnScores:
          x === undefined ? null : oneOf<"scaled" | "softcapped" | "masked">("returnScores", x, ["scaled", "softcapped", "masked"], "scaled"),
      };
    },
  },
};

const NONE: Features = {
  scale: undefined,
  causal: false,
  alignment: "top-left",
  window: [-1, -1],
  dilation: 1,
  softcap: 0,
  slopes: [],
  rope: null,
  blockSparse: null,
  global: null,
  enableGqa: false,
  returnWeights: false,
  sinks: null,
  keyLengths: null,
  returnScores: null,
};

/** The option names scaledDotProductAttention takes. */
export const CALL_OPTIONS = names("call");

/**
 * How a MultiHeadAttention (or a transformer layer's self-attention) attends, beyond plain softmax
 * attention: the options of scaledDotProductAttention that describe the attention itself, with
 * the block-sparse layout given as a pattern (made for each call's lengths), or linear attention.
 */
export type AttentionVariant = {
  [K in VariantKey]?: K extends "blockSparse" ? BlockSparsePattern & { blockSize: number } : AttentionOptions[K];
} & {
  /** Linear attention instead of softmax attention (see linearAttention); no masks but causal, no weights. */
  linear?: boolean | Omit<LinearAttentionOptions, "causal">;
};
type VariantKey = "window" | "dilation" | "softcap" | "alibi" | "rope" | "blockSparse";

/** @internal the options of one scaledDotProductAttention call, read once (`given`) and checked */
export function readCall(
  options: AttentionOptions,
  d: { B: number; Hq: number; E: number; Lq: number; Lk: number },
): { features: Features; given: AttentionOptions } {
  const given = checkOptions("scaledDotProductAttention options", options, CALL_OPTIONS);
  if (given.isCausal === true && given.attnMask !== undefined) {
    throw new ArgumentError("isCausal: not together with attnMask (fold the causal mask into attnMask)");
  }
  return { features: read(given, "call", { ...d, given }), given };
}

/** @internal a module's attention variant, checked once, at construction */
export interface Variant {
  given: AttentionVariant;
  /** the features that do not depend on a call's lengths */
  features: Features;
  linear: ReturnType<typeof settings> | null;
}

/** @internal checks a module's variant for Hq heads of size E */
export function readVariant(v: AttentionVariant | undefined, Hq: number, E: number): Variant {
  const given = checkOptions<AttentionVariant>("attention", v, [...names("variant"), "linear"]);
  if (given.window) given.window = Object.freeze([...given.window]) as unknown as readonly [number, number];
  if (given.blockSparse) given.blockSparse = Object.freeze({ ...given.blockSparse });
  const linear = given.linear ? settings("attention.linear", given.linear === true ? {} : given.linear) : null;
  if (linear) {
    const other = (["window", "softcap", "alibi", "blockSparse"] as const).find((n) => given[n] !== undefined);
    if (other) throw new ArgumentError(`attention.${other}: not together with linear attention`);
  }
  const { blockSparse, ...rest } = given;
  const features = read(rest as AttentionOptions, "variant", { B: 0, Hq, E, Lq: 0, Lk: 0, given: rest as AttentionOptions });
  if (blockSparse) patternLayout(blockSparse, blockSparse.blockSize, blockSparse.blockSize); // checks the pattern
  return { given, features, linear };
}

/** @internal a variant's features for one call: causality and the block layout for these lengths */
export function variantCall(v: Variant, causal: boolean, Lq: number, Lk: number): Features {
  const blockSparse = v.given.blockSparse ? patternLayout(v.given.blockSparse, Lq, Lk) : null;
  return { ...v.features, causal, blockSparse };
}

/** The kernel's band [left, right] for these features: causal queries see no key past the diagonal. */
export function bandOf(f: Features): [number, number] {
  return [f.window[0], f.causal ? 0 : f.window[1]];
}

/**
 * ALiBi's slopes for n heads (Press et al.): 2^(-8 (h + 1) / n) when n is a power of two; otherwise
 * those of the nearest lower power of two, then every other slope of twice that many.
 */
export function alibiSlopes(n: number): number[] {
  if (!Number.isInteger(n) || n < 1) throw new ArgumentError(`alibiSlopes n: expected a positive integer, got ${describe(n)}`);
  const pow2 = (m: number) => Array.from({ length: m }, (_, h) => 2 ** ((-8 * (h + 1)) / m));
  const m = 2 ** Math.floor(Math.log2(n));
  return m === n
    ? pow2(n)
    : [
        ...pow2(m),
        ...pow2(2 * m)
          .filter((_, i) => i % 2 === 0)
          .slice(0, n - m),
      ];
}

function names(where: Where): readonly (keyof AttentionOptions)[] {
  return (Object.keys(FEATURES) as (keyof AttentionOptions)[]).filter((k) => FEATURES[k].where.includes(where));
}

// every feature of `where` in table order, each read from its option
function read(given: AttentionOptions, where: Where, c: Context): Features {
  const out = { ...NONE };
  for (const k of names(where)) Object.assign(out, FEATURES[k].read(given[k], c));
  return out;
}

// the window option as a band [left, right]; -1 for no bound
function band(window: unknown): [number, number] {
  if (window === undefined) return [-1, -1];
  const w = Array.isArray(window) && (window as unknown[]).length === 2 ? [(window as unknown[])[0], (window as unknown[])[1]] : null;
  const ok = (x: unknown) => x === Infinity || (typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= MAX_DIM);
  if (!w?.every(ok)) {
    const big = w?.some((x) => typeof x === "number" && Number.isFinite(x) && x > MAX_DIM) ? " (a finite side below 2^31)" : "";
    throw new ArgumentError(
      `window: expected [left, right], each a non-negative integer or Infinity${big}, got ${Array.isArray(window) ? `[${(window as unknown[]).slice(0, 4).join(", ")}]` : describe(window)}`,
    );
  }
  return [w[0] === Infinity ? -1 : (w[0] as number), w[1] === Infinity ? -1 : (w[1] as number)];
}

// ALiBi's slopes from `true` or one per query head, as float32
function slopes(alibi: unknown, Hq: number): number[] {
  if (alibi === undefined || alibi === false) return [];
  if (alibi === true) return alibiSlopes(Hq).map(Math.fround);
  if (!Array.isArray(alibi)) throw new ArgumentError(`alibi: expected a boolean or an array of slopes, got ${describe(alibi)}`);
  const given = Array.from({ length: Math.min((alibi as unknown[]).length, Hq + 1) }, (_, i) => (alibi as unknown[])[i]);
  if (given.length !== Hq)
    throw new ArgumentError(`alibi: expected true or ${Hq} finite slopes (one per query head), got ${(alibi as unknown[]).length} values`);
  return given.map((x, h) => f32(`alibi[${h}]`, x));
}

function rope(x: unknown, E: number): Required<RopeOptions> {
  const r = checkOptions("rope", x as RopeOptions, ["theta", "interleaved", "rotaryDim", "positionOffset"]);
  const rotaryDim = r.rotaryDim ?? E;
  if (!Number.isInteger(rotaryDim) || rotaryDim < 2 || rotaryDim % 2 || rotaryDim > E) {
    throw new ArgumentError(`rope.rotaryDim: expected an even integer from 2 to E = ${E}, got ${describe(rotaryDim)}`);
  }
  return {
    theta: f32("rope.theta", r.theta ?? 10000, "positive"),
    interleaved: bool("rope.interleaved", r.interleaved, false),
    rotaryDim,
    positionOffset: int("rope.positionOffset", r.positionOffset ?? 0, 0),
  };
}

// one finite float32 logit per query head, read once
function sinks(x: unknown, c: Context): number[] {
  const kind = typedKind(x);
  if (!(Array.isArray(x) || kind === "Float32Array"))
    throw new ArgumentError(`sinks: expected ${c.Hq} numbers (an Array or a Float32Array, one per query head), got ${describe(x)}`);
  const values = kind
    ? Array.from(honest<Float32Array>(x))
    : Array.from({ length: Math.min((x as unknown[]).length, c.Hq + 1) }, (_, i) => (x as unknown[])[i]);
  if (values.length !== c.Hq)
    throw new ArgumentError(`sinks: expected ${c.Hq} values (one per query head), got ${kind ? values.length : (x as unknown[]).length}`);
  if (c.given.globalTokens !== undefined) throw new ArgumentError("sinks: not together with globalTokens");
  return values.map((v, h) => f32(`sinks[${h}]`, v));
}

// the valid keys of each batch element, read once: an Int32Array of B lengths from 0 to Lk
function keyLengths(x: unknown, c: Context): Int32Array {
  if (typedKind(x) !== "Int32Array")
    throw new ArgumentError(`keyLengths: expected an Int32Array of ${c.B} lengths (one per batch element), got ${describe(x)}`);
  const lengths = honest<Int32Array>(x).slice();
  if (lengths.length !== c.B) throw new ArgumentError(`keyLengths: expected ${c.B} lengths (one per batch element), got ${lengths.length}`);
  const bad = lengths.findIndex((n) => n < 0 || n > c.Lk);
  if (bad >= 0) throw new ArgumentError(`keyLengths: expected lengths from 0 to Lk = ${c.Lk}, got ${lengths[bad]} at ${bad}`);
  for (const name of ["globalTokens", "blockSparse"] as const) {
    if (c.given[name] !== undefined) throw new ArgumentError(`keyLengths: not together with ${name}`);
  }
  return lengths;
}

// the global positions, read once, checked, sorted
function globals(x: unknown, c: Context): number[] | null {
  if (x === undefined) return null;
  const { Lq, Lk, given: o } = c;
  const g = Array.isArray(x) ? Array.from({ length: int("globalTokens.length", (x as unknown[]).length, 0) }, (_, i) => (x as unknown[])[i]) : null;
  if (!g?.every((p) => Number.isInteger(p) && (p as number) >= 0 && (p as number) < Lk) || new Set(g).size !== g.length) {
    throw new ArgumentError(
      `globalTokens: expected distinct positions from 0 to ${Lk - 1}, got ${g ? `[${g.slice(0, 8).join(", ")}${g.length > 8 ? ", ..." : ""}]` : describe(x)}`,
    );
  }
  if (Lq !== Lk) throw new ShapeError(`globalTokens: expected self-attention (Lq = Lk), got Lq = ${Lq}, Lk = ${Lk}`);
  for (const name of ["attnMask", "isCausal", "alibi", "blockSparse", "returnWeights"] as const) {
    if (o[name]) throw new ArgumentError(`globalTokens: not together with ${name}`);
  }
  return g.length ? (g as number[]).sort((a, b) => a - b) : null;
}

/**
 * @internal a module's global positions for one call, checked against what else the call does
 * (masks, causality, weights) and what the module's variant does
 */
export function callGlobals(
  tokens: readonly number[] | undefined,
  v: Variant,
  c: { masked: boolean; causal: boolean; needWeights: boolean; Lq: number; Lk: number },
): number[] | null {
  if (tokens === undefined) return null;
  const given: AttentionOptions = {
    attnMask: c.masked ? ({} as BoolTensor) : undefined,
    isCausal: c.causal,
    alibi: v.features.slopes.length > 0,
    blockSparse: v.given.blockSparse as never,
    returnWeights: c.needWeights,
  };
  return globals(tokens, { B: 0, Hq: 0, E: 0, Lq: c.Lq, Lk: c.Lk, given });
}

// the block-sparse layout, read once, checked against the lengths
function sparse(given: unknown, Lq: number, Lk: number) {
  const o = checkOptions("blockSparse", given as AttentionOptions["blockSparse"], ["layout", "blockSize"]);
  const bs = o.blockSize;
  if (typeof bs !== "number" || !Number.isInteger(bs) || bs < 8 || bs % 8 || bs > 2 ** 30) {
    throw new ArgumentError(
      `blockSparse.blockSize: expected a positive multiple of 8${typeof bs === "number" && bs > 2 ** 30 ? " up to 2^30" : ""}, got ${describe(bs)}`,
    );
  }
  const layout = checkMask("blockSparse.layout", o.layout);
  const want = [Math.ceil(Lq / bs), Math.ceil(Lk / bs)];
  if (typedKind(layout.data) !== "Uint8Array")
    throw new ArgumentError(`blockSparse.layout: expected a boolean tensor (Uint8Array data), got ${typedKind(layout.data)} data`);
  if (layout.shape.length !== 2 || layout.shape[0] !== want[0] || layout.shape[1] !== want[1]) {
    throw new ShapeError(`blockSparse.layout: expected ${fmt(want)} (ceil(Lq / ${bs}), ceil(Lk / ${bs})), got ${fmt(layout.shape)}`);
  }
  return { layout: layout.data as Uint8Array, blockSize: bs, nKB: want[1]! };
}

// a block-sparse pattern with its block size, laid out and checked for these lengths
function patternLayout({ blockSize, ...pattern }: BlockSparsePattern & { blockSize: number }, Lq: number, Lk: number) {
  return sparse({ layout: blockSparseLayout(Lq, Lk, blockSize, pattern as BlockSparsePattern), blockSize }, Lq, Lk);
}
