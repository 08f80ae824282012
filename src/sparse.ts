import { ArgumentError } from "./errors.js";
import { type BoolTensor, checkOptions, describe } from "./tensor.js";

export type BlockSparsePattern =
  /** Sparse Transformer (Child et al. 2019), strided: the last `stride` blocks and every stride-th block before, causal */
  | { pattern: "strided"; stride: number }
  /** Sparse Transformer, fixed: the blocks of the same chunk of `stride`, and the last `summary` blocks of every chunk, causal */
  | { pattern: "fixed"; stride: number; summary?: number }
  /** BigBird (Zaheer et al. 2020): `window` blocks each side, the first `global` blocks both ways, `random` blocks per row from `seed` */
  | { pattern: "bigbird"; window: number; global: number; random: number; seed?: number };

/**
 * A block-sparse layout [ceil(Lq / blockSize), ceil(Lk / blockSize)] for scaledDotProductAttention's
 * `blockSparse` option, from one of the named patterns. BigBird's random blocks are reproducible:
 * the same seed gives the same layout.
 */
export function blockSparseLayout(Lq: number, Lk: number, blockSize: number, p: BlockSparsePattern): BoolTensor {
  for (const [name, x] of [
    ["Lq", Lq],
    ["Lk", Lk],
    ["blockSize", blockSize],
  ] as const) {
    if (!Number.isInteger(x) || x < 1) throw new ArgumentError(`blockSparseLayout ${name}: expected a positive integer, got ${describe(x)}`);
  }
  const nQ = Math.ceil(Lq / blockSize);
  const nK = Math.ceil(Lk / blockSize);
  const data = new Uint8Array(nQ * nK);
  const int = (name: string, x: unknown, min: number) => {
    if (!Number.isInteger(x) || (x as number) < min)
      throw new ArgumentError(`blockSparseLayout ${name}: expected an integer >= ${min}, got ${describe(x)}`);
    return x as number;
  };
  const set = (f: (q: number, k: number) => boolean) => {
    for (let q = 0; q < nQ; q++) for (let k = 0; k < nK; k++) data[q * nK + k] = f(q, k) ? 1 : 0;
  };
  if (p?.pattern === "strided") {
    checkOptions("strided pattern", p, ["pattern", "stride"]);
    const stride = int("stride", p.stride, 1);
    set((q, k) => k <= q && (q - k < stride || (q - k) % stride === 0));
  } else if (p?.pattern === "fixed") {
    checkOptions("fixed pattern", p, ["pattern", "stride", "summary"]);
    const stride = int("stride", p.stride, 1);
    const summary = int("summary", p.summary ?? 1, 0);
    set((q, k) => k <= q && (Math.floor(k / stride) === Math.floor(q / stride) || k % stride >= stride - summary));
  } else if (p?.pattern === "bigbird") {
    checkOptions("bigbird pattern", p, ["pattern", "window", "global", "random", "seed"]);
    const window = int("window", p.window, 0);
    const global = int("global", p.global, 0);
    const random = int("random", p.random, 0);
    let s = int("seed", p.seed ?? 0, 0) >>> 0 || 0x9e3779b9;
    const next = () => {
      // xorshift32: the same seed gives the same random blocks in every runtime
      s ^= s << 13;
      s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      return s;
    };
    set((q, k) => Math.abs(q - k) <= window || q < global || k < global);
    for (let q = 0; q < nQ; q++) for (let r = 0; r < random; r++) data[q * nK + (next() % nK)] = 1;
  } else {
    throw new ArgumentError(
      `blockSparseLayout pattern: expected "strided", "fixed" or "bigbird", got ${describe((p as { pattern?: unknown })?.pattern)}`,
    );
  }
  return { data, shape: [nQ, nK] };
}
