// Rotary position embedding as Hugging Face's decoder-only models compute it: the inverse
// frequencies and the attention factor of each `rope_scaling` type (modeling_rope_utils.py, in
// float32 as there), and a cos/sin table per position, made once and grown when a longer
// position is needed, from which the kernel rotates queries and keys (rotate_half pairing).
import { ArgumentError } from "./errors.js";
import type { Ctx } from "./module.js";
import type { Heap } from "./memory.js";
import { runtime } from "./init.js";
import { describe } from "./tensor.js";

/** Hugging Face's `rope_scaling` (config.json): null, or one of these. */
export interface RopeScaling {
  /** "default", "linear", "llama3" or "yarn" (older configs say `type`). */
  rope_type?: string;
  type?: string;
  factor?: number;
  /** llama3 */
  low_freq_factor?: number;
  high_freq_factor?: number;
  /** llama3 and yarn */
  original_max_position_embeddings?: number;
  /** yarn: the ramp's rotations (defaults 32 and 1), an explicit attention factor, mscale options */
  beta_fast?: number;
  beta_slow?: number;
  attention_factor?: number;
  mscale?: number;
  mscale_all_dim?: number;
  truncate?: boolean;
}

/** What RoPE needs to know: the rotated head size, the base and the scaling. */
export interface RopeConfig {
  /** Rotated dimensions of each head (Hugging Face: head_dim). */
  dim: number;
  /** rope_theta; default 10000. */
  theta?: number;
  scaling?: RopeScaling | null;
  /** max_position_embeddings: YaRN's correction range falls back to it. */
  maxPositionEmbeddings?: number;
}

/** inv_freq (dim / 2 float32 values) and the factor cos and sin are multiplied by. */
export interface RopeParameters {
  invFreq: Float32Array;
  attentionScaling: number;
}

const f = Math.fround;

/**
 * The inverse frequencies and attention factor of RoPE, as Hugging Face's ROPE_INIT_FUNCTIONS
 * compute them (transformers 4.50 - 4.57), step by step in float32:
 * - default: inv_freq[i] = 1 / theta^(2i / dim)
 * - linear: the default divided by `factor`
 * - llama3: wavelengths 2 pi / inv_freq above original_max_position_embeddings / low_freq_factor
 *   are divided by `factor`, those below original / high_freq_factor kept, and the band between
 *   interpolated smoothly
 * - yarn: interpolation (inv_freq / factor) and extrapolation (inv_freq) mixed by a linear ramp
 *   over the dims whose rotations over original_max_position_embeddings (else
 *   maxPositionEmbeddings) fall between beta_fast and beta_slow; attention factor
 *   `attention_factor`, else mscale(factor, mscale) / mscale(factor, mscale_all_dim) when both are
 *   given, else 0.1 ln(factor) + 1. The given `factor` is used (transformers 4.50 - 4.5x replaced
 *   it by max_position_embeddings / original_max_position_embeddings when both were set).
 * Other types ("dynamic", "longrope", ...) are an ArgumentError.
 */
export function ropeParameters(config: RopeConfig): RopeParameters {
  const { dim } = config;
  if (!Number.isInteger(dim) || dim < 2 || dim % 2) throw new ArgumentError(`rope dim: expected an even integer >= 2, got ${describe(dim)}`);
  const theta = positive("rope_theta", config.theta ?? 10000);
  const s = config.scaling ?? null;
  const type = s ? (s.rope_type ?? s.type ?? "default") : "default";
  const half = dim / 2;
  // torch: base ** (arange(0, dim, 2).float() / dim), then 1.0 / that, each op rounded to float32
  const powers = Float32Array.from({ length: half }, (_, i) => f(f(theta) ** f((2 * i) / dim)));
  const defaults = powers.map((p) => f(1 / p));
  switch (type) {
    case "default":
      return { invFreq: defaults, attentionScaling: 1 };
    case "linear": {
      const factor = positive("rope_scaling.factor", s!.factor);
      return { invFreq: defaults.map((x) => f(x / factor)), attentionScaling: 1 };
    }
    case "llama3":
      return { invFreq: llama3(defaults, s!), attentionScaling: 1 };
    case "yarn":
      return yarn(powers, dim, theta, s!, config.maxPositionEmbeddings);
    default:
      throw new ArgumentError(`rope_scaling.rope_type: expected "default", "linear", "llama3" or "yarn", got ${describe(type)}`);
  }
}

// modeling_rope_utils._compute_llama3_parameters, in float32
function llama3(invFreq: Float32Array, s: RopeScaling): Float32Array {
  const factor = positive("rope_scaling.factor", s.factor);
  const low = positive("rope_scaling.low_freq_factor", s.low_freq_factor);
  const high = positive("rope_scaling.high_freq_factor", s.high_freq_factor);
  const old = positive("rope_scaling.original_max_position_embeddings", s.original_max_position_embeddings);
  if (!(high > low))
    throw new ArgumentError(`rope_scaling.high_freq_factor: expected a number above low_freq_factor (${low}), got ${describe(high)}`);
  const lowWavelen = old / low;
  const highWavelen = old / high;
  return invFreq.map((x) => {
    const wavelen = f((2 * Math.PI) / x);
    const scaled = wavelen > lowWavelen ? f(x / factor) : x;
    if (wavelen < highWavelen || wavelen > lowWavelen) return scaled;
    const smooth = f(f(f(old / wavelen) - low) / (high - low));
    return f(f(f(f(1 - smooth) * scaled) / factor) + f(smooth * scaled));
  });
}

// modeling_rope_utils._compute_yarn_parameters (4.50+ correction range), in float32
function yarn(powers: Float32Array, dim: number, theta: number, s: RopeScaling, maxPositions: number | undefined): RopeParameters {
  const factor = positive("rope_scaling.factor", s.factor);
  const original = s.original_max_position_embeddings ?? maxPositions;
  if (original === undefined)
    throw new ArgumentError(
      "rope_scaling.original_max_position_embeddings: expected a finite number > 0 for yarn (or a max_position_embeddings), got undefined",
    );
  positive("rope_scaling.original_max_position_embeddings", original);
  const mscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
  let attention = s.attention_factor;
  if (attention === undefined || attention === null) {
    attention = s.mscale && s.mscale_all_dim ? mscale(factor, s.mscale) / mscale(factor, s.mscale_all_dim) : mscale(factor);
  } else positive("rope_scaling.attention_factor", attention);
  const betaFast = s.beta_fast || 32;
  const betaSlow = s.beta_slow || 1;
  const correction = (rotations: number) => (dim * Math.log(original / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = correction(betaFast);
  let high = correction(betaSlow);
  if (s.truncate ?? true) [low, high] = [Math.floor(low), Math.ceil(high)];
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  const invFreq = powers.map((p, i) => {
    const ramp = f(Math.min(1, Math.max(0, f(f(i - low) / f(high - low)))));
    const extrapolationFactor = f(1 - ramp);
    const extrapolation = f(1 / p);
    const interpolation = f(1 / f(factor * p));
    return f(f(interpolation * f(1 - extrapolationFactor)) + f(extrapolation * extrapolationFactor));
  });
  return { invFreq, attentionScaling: attention };
}

function positive(name: string, x: unknown): number {
  if (typeof x !== "number" || !Number.isFinite(x) || x <= 0) throw new ArgumentError(`${name}: expected a finite number > 0, got ${describe(x)}`);
  return x;
}

/**
 * @internal cos and sin of every position 0..length - 1 in WebAssembly memory ([length, dim / 2]
 * each, as rope_table_f32 makes them), grown by doubling when a call needs a later position and
 * kept for the next. Owned by a model, which frees it with its weights.
 */
export class RopeTable {
  readonly half: number;
  readonly #params: RopeParameters;
  // addresses kept in a plain object: what the heap's registry holds must not keep `this` alive
  readonly #mem = { cos: 0, sin: 0, length: 0 };
  #heap: Heap | null = null;

  constructor(params: RopeParameters) {
    this.#params = params;
    this.half = params.invFreq.length;
  }

  /** Bytes cover(to) allocates (0 when the table already covers `to`), for heap.need. */
  bytesToCover(to: number): number {
    const m = this.#mem;
    return this.#heap === runtime().heap && to <= m.length ? 0 : 8 * this.half * Math.max(to, 2 * m.length, 64) + 4 * this.half;
  }

  /** The table's addresses, covering positions 0..to - 1. */
  cover(ctx: Ctx, to: number): { cos: number; sin: number } {
    const { heap, K } = ctx;
    const m = this.#mem;
    if (this.#heap !== heap) {
      // first use, or first use after shutdown() + init(): the old heap is gone
      this.#heap = heap;
      m.cos = m.sin = m.length = 0;
      heap.track(this, blocksOf(m));
    }
    if (to > m.length) {
      const length = Math.max(to, 2 * m.length, 64);
      const bytes = 4 * length * this.half;
      heap.need("RoPE table", 2 * bytes + 4 * this.half);
      const cos = heap.alloc(bytes);
      const sin = heap.alloc(bytes);
      const inv = ctx.scope.put(this.#params.invFreq);
      K.rope_table_f32(cos, sin, 0, length, this.half, inv, this.#params.attentionScaling);
      this.#release();
      [m.cos, m.sin, m.length] = [cos, sin, length];
    }
    return { cos: m.cos, sin: m.sin };
  }

  /** Frees the table (a later cover() makes it again). */
  free(): void {
    this.#heap?.untrack(this);
    this.#release();
    this.#heap = null;
  }

  #release(): void {
    const m = this.#mem;
    if (this.#heap && !this.#heap.closed && m.cos) {
      this.#heap.free(m.cos);
      this.#heap.free(m.sin);
    }
    m.cos = m.sin = m.length = 0;
  }
}

// made out here: a closure in a method would keep the table alive through `this`
function blocksOf(m: { cos: number; sin: number }): () => number[] {
  return () => (m.cos ? [m.cos, m.sin] : []);
}
