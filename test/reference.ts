// Float64 oracles, written plainly, and the helpers the tests share.

export interface Dims {
  batch: number[]; // leading dimensions before the head dimension
  Hq: number;
  Hk: number;
  Lq: number;
  Lk: number;
  E: number;
  Ev: number;
}

export interface RefOptions {
  scale?: number;
  mask?: { data: Float32Array | Uint8Array; shape: readonly number[] }; // broadcast to [...batch, Hq, Lq, Lk]
  boolMeansKeep?: boolean; // SDPA: true = takes part (default); MHA: true = masked out
  causalOffset?: number; // query i sees keys j <= i + causalOffset
  window?: [number, number]; // query i sees keys i + diag - left ..= i + diag + right
  diag?: number;
  dilation?: number; // with window: only keys with (i + diag - j) % dilation == 0
  softcap?: number; // scores become softcap * tanh(score / softcap) before biases and mask
  slopes?: number[]; // ALiBi: -slopes[h] * |i + diag - j| added
}

// out [...batch, Hq, Lq, Ev] and weights [...batch, Hq, Lq, Lk] of softmax(q k^T * scale + mask) v,
// q [...batch, Hq, Lq, E], k [...batch, Hk, Lk, E], v [...batch, Hk, Lk, Ev];
// a row with no key allowed gives zeros
export function attentionRef(q: Float32Array, k: Float32Array, v: Float32Array, d: Dims, o: RefOptions = {}) {
  const B = d.batch.reduce((a, b) => a * b, 1);
  const scale = o.scale ?? 1 / Math.sqrt(d.E);
  const scoreShape = [...d.batch, d.Hq, d.Lq, d.Lk];
  const out = new Float64Array(B * d.Hq * d.Lq * d.Ev);
  const weights = new Float64Array(B * d.Hq * d.Lq * d.Lk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < d.Hq; h++) {
      const g = Math.floor(h / (d.Hq / d.Hk));
      for (let i = 0; i < d.Lq; i++) {
        const s = new Float64Array(d.Lk);
        for (let j = 0; j < d.Lk; j++) {
          let dot = 0;
          for (let e = 0; e < d.E; e++) dot += q[((b * d.Hq + h) * d.Lq + i) * d.E + e] * k[((b * d.Hk + g) * d.Lk + j) * d.E + e];
          s[j] = dot * scale;
          if (o.softcap) s[j] = o.softcap * Math.tanh(s[j] / o.softcap);
          if (o.slopes) s[j] -= o.slopes[h] * Math.abs(i + (o.diag ?? 0) - j);
          if (o.dilation && o.dilation > 1 && (i + (o.diag ?? 0) - j) % o.dilation !== 0) s[j] = -Infinity;
          if (o.mask) {
            const x = o.mask.data[broadcastIndex(o.mask.shape, scoreShape, [...unflatten(b, d.batch), h, i, j])];
            if (o.mask.data instanceof Uint8Array) s[j] += (x !== 0) === (o.boolMeansKeep ?? true) ? 0 : -Infinity;
            else s[j] += x;
          }
          if (o.causalOffset !== undefined && j > i + o.causalOffset) s[j] = -Infinity;
          if (o.window && (j < i + (o.diag ?? 0) - o.window[0] || j > i + (o.diag ?? 0) + o.window[1])) s[j] = -Infinity;
        }
        const max = Math.max(...s);
        if (max === -Infinity) continue; // every key masked: zeros
        let sum = 0;
        for (let j = 0; j < d.Lk; j++) sum += Math.exp(s[j] - max);
        for (let j = 0; j < d.Lk; j++) {
          const p = Math.exp(s[j] - max) / sum;
          weights[((b * d.Hq + h) * d.Lq + i) * d.Lk + j] = p;
          for (let e = 0; e < d.Ev; e++) out[((b * d.Hq + h) * d.Lq + i) * d.Ev + e] += p * v[((b * d.Hk + g) * d.Lk + j) * d.Ev + e];
        }
      }
    }
  }
  return { out, weights };
}

// float64 erf: Taylor series near 0, continued fraction for erfc in the tails (both < 1e-14)
function erf(x: number): number {
  const z = Math.abs(x);
  if (z < 3) {
    let term = z;
    let sum = z;
    for (let n = 1; n < 200; n++) {
      term *= (-z * z) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (z + f);
  return Math.sign(x) * (1 - Math.exp(-z * z) / Math.sqrt(Math.PI) / (z + f));
}

/** The fused products' activations (src/linear.ts ACT), in float64. */
export const activations = {
  none: (x: number) => x,
  relu: (x: number) => Math.max(x, 0),
  gelu: (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  "gelu-tanh": (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  silu: (x: number) => x / (1 + Math.exp(-x)),
} as const;

// flat index into an array of shape `shape` broadcast (numpy rules) to `target`, at `coords` of target
export function broadcastIndex(shape: readonly number[], target: readonly number[], coords: readonly number[]): number {
  const off = target.length - shape.length;
  let index = 0;
  for (let i = 0; i < shape.length; i++) index = index * shape[i] + (shape[i] === 1 ? 0 : coords[i + off]);
  return index;
}

function unflatten(n: number, dims: readonly number[]): number[] {
  const out = new Array<number>(dims.length);
  for (let i = dims.length - 1; i >= 0; i--) {
    out[i] = n % dims[i];
    n = Math.floor(n / dims[i]);
  }
  return out;
}

// a seeded generator, so a failure can be replayed from the seed in its message
export function rng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    // uniform in [-1, 1), never all zeros
    floats: (n: number, scale = 1) => Float32Array.from({ length: n }, () => (next() * 2 - 1) * scale),
    bools: (n: number, pTrue = 0.7) => Uint8Array.from({ length: n }, () => (next() < pTrue ? 1 : 0)),
  };
}

export function freshSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}

// |got - want| <= atol + rtol * |want| everywhere, else an error naming the first bad coordinates
export function expectClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  shape: readonly number[],
  tol: { atol: number; rtol: number },
  what = "",
): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length}, want ${want.length}`);
  for (let n = 0; n < want.length; n++) {
    const g = got[n];
    const w = want[n];
    const ok = Number.isNaN(w) ? Number.isNaN(g) : Math.abs(g - w) <= tol.atol + tol.rtol * Math.abs(w) || g === w;
    if (!ok) throw new Error(`${what} at ${fmtCoords(n, shape)}: got ${g}, want ${w} (|d| = ${Math.abs(g - w)})`);
  }
}

function fmtCoords(n: number, shape: readonly number[]): string {
  return `[${unflatten(n, shape).join(", ")}]`;
}

// nn.MultiheadAttention (batch_first, in_proj packed: kdim = vdim = E) in float64, on query [B, Lq, E]
// and key/value [B, Lk, E]: project, split heads (Hk key/value heads), attend, merge, project out.
// padding [B, Lk]: 1 = masked out (torch's convention); a row with no key left gives zeros.
export function mhaRef(
  q: Float32Array,
  kv: Float32Array,
  dict: Record<string, { data: Float32Array }>,
  d: { B: number; Lq: number; Lk: number; E: number; H: number; Hk: number; causal?: boolean; padding?: Uint8Array },
) {
  const { B, Lq, Lk, E, H, Hk } = d;
  const hd = E / H;
  const kvDim = Hk * hd;
  const W = dict.in_proj_weight.data;
  const bias = dict.in_proj_bias?.data;
  const project = (x: Float32Array, L: number, row0: number, rows: number) => {
    const out = new Float32Array(B * L * rows);
    for (let t = 0; t < B * L; t++)
      for (let o = 0; o < rows; o++) {
        let acc = bias ? bias[row0 + o] : 0;
        for (let e = 0; e < E; e++) acc += x[t * E + e] * W[(row0 + o) * E + e];
        out[t * rows + o] = acc;
      }
    return out;
  };
  const heads = (flat: Float32Array, L: number, n: number) => {
    const out = new Float32Array(B * n * L * hd);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < n; h++)
        for (let i = 0; i < L; i++) for (let c = 0; c < hd; c++) out[((b * n + h) * L + i) * hd + c] = flat[(b * L + i) * n * hd + h * hd + c];
    return out;
  };
  const mask = d.padding && { data: Uint8Array.from({ length: B * Lk }, (_, n) => 1 - d.padding![n]), shape: [B, 1, 1, Lk] };
  const ref = attentionRef(
    heads(project(q, Lq, 0, E), Lq, H),
    heads(project(kv, Lk, E, kvDim), Lk, Hk),
    heads(project(kv, Lk, E + kvDim, kvDim), Lk, Hk),
    { batch: [B], Hq: H, Hk, Lq, Lk, E: hd, Ev: hd },
    { mask, causalOffset: d.causal ? 0 : undefined },
  );
  const merged = new Float64Array(B * Lq * E);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < Lq; i++) for (let c = 0; c < hd; c++) merged[(b * Lq + i) * E + h * hd + c] = ref.out[((b * H + h) * Lq + i) * hd + c];
  const out = new Float64Array(B * Lq * E);
  for (let t = 0; t < B * Lq; t++)
    for (let o = 0; o < E; o++) {
      let acc = dict["out_proj.bias"]?.data[o] ?? 0;
      for (let e = 0; e < E; e++) acc += merged[t * E + e] * dict["out_proj.weight"].data[o * E + e];
      out[t * E + o] = acc;
    }
  return { out, weights: ref.weights };
}
