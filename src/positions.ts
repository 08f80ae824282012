import { ArgumentError } from "./errors.js";
import { type Tensor, describe } from "./tensor.js";

/**
 * The sinusoidal position embeddings of "Attention Is All You Need", [L, d]:
 * PE(pos, 2i) = sin(pos / base^(2i / d)), PE(pos, 2i + 1) = cos(pos / base^(2i / d)), pos = offset + row.
 */
export function sinusoidalPositions(L: number, d: number, options: { base?: number; offset?: number } = {}): Tensor {
  const { base = 10000, offset = 0 } = options;
  for (const [name, x, min] of [
    ["L", L, 0],
    ["d", d, 1],
    ["offset", offset, 0],
  ] as const) {
    if (!Number.isInteger(x) || x < min) throw new ArgumentError(`sinusoidalPositions ${name}: expected an integer >= ${min}, got ${describe(x)}`);
  }
  if (!(base > 0) || !Number.isFinite(base)) throw new ArgumentError(`sinusoidalPositions base: expected a finite number > 0, got ${describe(base)}`);
  const data = new Float32Array(L * d);
  for (let p = 0; p < L; p++) {
    for (let i = 0; i < d; i++) {
      const angle = (offset + p) / base ** ((2 * Math.floor(i / 2)) / d);
      data[p * d + i] = i % 2 ? Math.cos(angle) : Math.sin(angle);
    }
  }
  return { data, shape: [L, d] };
}
