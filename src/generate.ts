// Generation with a decoder-only model: prefill the prompts into a cache, then one token per step
// for every sequence still running; finished sequences leave the batch (and the cache). Token
// choice follows Hugging Face's logits processors: repetition penalty, then temperature, top-k,
// top-p, then greedy argmax (temperature 0) or a draw from a seeded generator of our own.
import type { CausalLM } from "./causal-lm.js";
import { checkIds, type TokenIds } from "./embedding.js";
import { ArgumentError } from "./errors.js";
import { int } from "./check.js";
import type { AttentionMask } from "./left-padding.js";
import { checkOptions, describe } from "./tensor.js";
import { type CacheDtype, cacheFormat } from "./cache.js";

export interface GenerateOptions {
  /** New tokens per sequence at most; default 20. */
  maxNewTokens?: number;
  /** [L] or [B, L] (1 = token, 0 = padding), left padding only. */
  attentionMask?: AttentionMask;
  /** A sequence stops after producing one of these (included in its tokens). Default: the config's eos_token_id; [] never stops early. */
  eosTokenId?: number | readonly number[];
  /** 0 (default): greedy, the most likely token (the first of equals). Above 0: sampling from softmax(logits / temperature). */
  temperature?: number;
  /** Sampling keeps the k most likely tokens (and those equal to the k-th). Default: all. */
  topK?: number;
  /** Sampling keeps the most likely tokens whose probabilities add up to topP (at least one). Default 1: all. */
  topP?: number;
  /** Hugging Face's repetition penalty: the logit of every token already in the sequence (prompt included) is divided by it when positive, multiplied when negative. Default 1: none. */
  repetitionPenalty?: number;
  /** Seed of the sampling: the same seed, prompts and options give the same tokens. Default: a random seed. */
  seed?: number;
  /** Called after each step with the step's token of every sequence of the input (-1 for a sequence already finished) and the step (0, 1, ...). */
  onToken?: (tokenIds: Int32Array, step: number) => void;
  /** How the generation's cache stores keys and values: "f32" (default), "f16" or "q8" (see DecoderCacheOptions). */
  cacheDtype?: CacheDtype;
}

interface Settings {
  maxNew: number;
  eos: Set<number>;
  temperature: number;
  topK: number;
  topP: number;
  penalty: number;
  random: () => number;
  onToken: ((tokenIds: Int32Array, step: number) => void) | null;
  cacheDtype: CacheDtype;
}

/** @internal CausalLM.generate */
export function generate(model: CausalLM, inputIds: TokenIds, options: GenerateOptions): Int32Array | Int32Array[] {
  const V = model.config.vocabSize;
  const ids = checkIds("inputIds", inputIds, V, 2);
  const s = settings(options, V, model.config.eosTokenId);
  const [B, L] = (ids.batched ? ids.shape : [1, ...ids.shape]) as [number, number];
  if (L === 0 && B > 0)
    throw new ArgumentError("generate inputIds: expected at least one token in each sequence to continue, got sequences of 0 tokens");
  if (s.maxNew === 0 || B === 0) return ids.batched ? Array.from({ length: B }, () => new Int32Array(0)) : new Int32Array(0);
  const cache = model.createCache({ dtype: s.cacheDtype });
  // sequence b of the input: its new tokens, and its tokens so far (prompt without padding) for the repetition penalty
  const sequences: Sequence[] = [];
  try {
    // prefill: the prompts' last logits; padding is found by forward (it checks the mask)
    let logits = model.forward(ids.batched ? ids : ids.data, { attentionMask: options.attentionMask, cache, lastOnly: true }).data;
    for (let b = 0; b < B; b++) sequences.push({ b, out: [], seen: new Set(ids.data.subarray(b * L + cache.pads(b), (b + 1) * L)) });
    // the sequences still running, in the order of the batch's rows
    let live = sequences;
    for (let step = 0; step < s.maxNew && live.length; step++) {
      const tokens = new Int32Array(B).fill(-1);
      const next: Sequence[] = [];
      const rows: number[] = [];
      for (const [r, q] of live.entries()) {
        const t = choose(logits.subarray(r * V, (r + 1) * V), q.seen, s);
        tokens[q.b] = t;
        q.out.push(t);
        q.seen.add(t);
        if (!s.eos.has(t)) {
          next.push(q);
          rows.push(r);
        }
      }
      s.onToken?.(ids.batched ? tokens : tokens.subarray(0, 1), step);
      if (step === s.maxNew - 1 || !next.length) break;
      // finished sequences leave the batch: no more work for them
      if (next.length < live.length) cache.reorder(rows);
      live = next;
      const step1 = Int32Array.from(live, (q) => tokens[q.b]!);
      logits = model.forward({ data: step1, shape: [live.length, 1] }, { cache, lastOnly: true }).data;
    }
  } finally {
    cache.dispose();
  }
  const result = sequences.map((q) => Int32Array.from(q.out));
  // without a batch, there is one sequence
  return ids.batched ? result : result[0]!;
}

interface Sequence {
  b: number;
  out: number[];
  seen: Set<number>;
}

// the options, read once and checked
function settings(options: GenerateOptions, V: number, configEos: readonly number[]): Settings {
  const o = checkOptions("generate options", options, [
    "maxNewTokens",
    "attentionMask",
    "eosTokenId",
    "temperature",
    "topK",
    "topP",
    "repetitionPenalty",
    "seed",
    "onToken",
    "cacheDtype",
  ]);
  const maxNew = int("generate maxNewTokens", o.maxNewTokens ?? 20, 0);
  const eosGiven = o.eosTokenId === undefined ? configEos : o.eosTokenId;
  const eosList = typeof eosGiven === "number" ? [eosGiven] : Array.isArray(eosGiven) ? Array.from(eosGiven as readonly unknown[]) : null;
  if (!eosList) throw new ArgumentError(`generate eosTokenId: expected a token id or an array of them, got ${describe(eosGiven)}`);
  eosList.forEach((t, i) => int(`generate eosTokenId${typeof eosGiven === "number" ? "" : `[${i}]`}`, t, 0, V - 1));
  const temperature = o.temperature ?? 0;
  if (typeof temperature !== "number" || !Number.isFinite(temperature) || temperature < 0)
    throw new ArgumentError(`generate temperature: expected a finite number >= 0, got ${describe(temperature)}`);
  const topK = o.topK === undefined ? V : int("generate topK", o.topK, 1);
  const topP = o.topP ?? 1;
  if (typeof topP !== "number" || !(topP > 0 && topP <= 1))
    throw new ArgumentError(`generate topP: expected a number in (0, 1], got ${describe(topP)}`);
  const penalty = o.repetitionPenalty ?? 1;
  if (typeof penalty !== "number" || !Number.isFinite(penalty) || penalty <= 0)
    throw new ArgumentError(`generate repetitionPenalty: expected a finite number > 0, got ${describe(penalty)}`);
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
  if (typeof seed !== "number" || !Number.isInteger(seed)) throw new ArgumentError(`generate seed: expected an integer, got ${describe(seed)}`);
  if (o.onToken !== undefined && typeof o.onToken !== "function")
    throw new ArgumentError(`generate onToken: expected a function, got ${describe(o.onToken)}`);
  return {
    maxNew,
    eos: new Set(eosList as number[]),
    temperature,
    topK: Math.min(topK, V),
    topP,
    penalty,
    random: seededRandom(seed),
    onToken: o.onToken ?? null,
    cacheDtype: cacheFormat("generate cacheDtype", o.cacheDtype).dtype,
  };
}

/** @internal the next token from one sequence's logits (V), as Hugging Face's processors and sampling choose it */
export function choose(logits: Float32Array, seen: ReadonlySet<number>, s: Omit<Settings, "maxNew" | "eos" | "onToken" | "cacheDtype">): number {
  const scores = Float32Array.from(logits);
  // 1. repetition penalty (RepetitionPenaltyLogitsProcessor)
  if (s.penalty !== 1) {
    for (const t of seen) {
      const x = scores[t]!;
      scores[t] = x < 0 ? x * s.penalty : x / s.penalty;
    }
  }
  // 2. greedy: argmax, the first of equals
  if (s.temperature === 0) {
    let best = 0;
    for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[best]!) best = i;
    return best;
  }
  // 3. temperature, top-k, top-p (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)
  for (let i = 0; i < scores.length; i++) scores[i] = scores[i]! / s.temperature;
  const order = Array.from(scores.keys()).sort((a, b) => scores[b]! - scores[a]! || a - b);
  if (s.topK < scores.length) {
    const kth = scores[order[s.topK - 1]!]!;
    for (let i = 0; i < scores.length; i++) if (scores[i]! < kth) scores[i] = -Infinity;
  }
  if (s.topP < 1) {
    // drop the least likely tokens whose probabilities add up to at most 1 - topP; the most likely stays
    const p = softmax(scores);
    let tail = 0;
    for (let j = order.length - 1; j > 0; j--) {
      const t = order[j]!;
      tail += p[t]!;
      if (tail > 1 - s.topP) break;
      scores[t] = -Infinity;
    }
  }
  // 4. a draw from softmax(scores)
  const p = softmax(scores);
  let r = s.random();
  for (const t of order) {
    const pt = p[t]!;
    r -= pt;
    if (r < 0 && pt > 0) return t;
  }
  // rounding left r >= 0: the least likely token that can be drawn
  for (let j = order.length - 1; j >= 0; j--) {
    const t = order[j]!;
    if (p[t]! > 0) return t;
  }
  return order[0]!;
}

function softmax(x: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of x) max = Math.max(max, v);
  const p = Float64Array.from(x, (v) => Math.exp(v - max));
  const sum = p.reduce((a, b) => a + b, 0);
  return p.map((v) => v / sum);
}

/**
 * @internal A small seeded generator of uniform numbers in [0, 1): mulberry32 (Tommy Ettinger's
 * 32-bit state, full period 2^32), enough for drawing tokens reproducibly.
 */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
