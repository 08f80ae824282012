import { beforeAll, expect, test } from "vitest";
import { init, runtime } from "../src/init.js";

beforeAll(() => init());

// e^x through the kernels' own exp (assembly/simd.ts), n values at a time
function wasmExp(x: Float32Array): Float32Array {
  const { kernels, heap } = runtime();
  const scope = heap.scope();
  try {
    const xp = scope.put(x);
    const out = scope.alloc(x.byteLength);
    kernels.exp_f32_n(out, xp, x.length);
    return heap.f32(out, x.length).slice();
  } finally {
    scope.release();
  }
}

function ulps(a: number, b: number): number {
  const buf = new Float32Array([a, b]);
  const bits = new Int32Array(buf.buffer);
  return Math.abs(bits[0] - bits[1]);
}

test("exp is within 3 ulp of the correctly rounded result over [-87, 0], vector and tail lanes alike", () => {
  const n = 100_003; // not a multiple of 4: the scalar tail runs too
  const x = Float32Array.from({ length: n }, (_, i) => -87 * (i / (n - 1)));
  const got = wasmExp(x);
  let worst = 0;
  for (let i = 0; i < n; i++) worst = Math.max(worst, ulps(got[i], Math.fround(Math.exp(x[i]))));
  expect(worst).toBeLessThanOrEqual(3);
});

test("exp at the edges: 0 -> 1, -Infinity and below the normal range -> 0, NaN -> NaN, large -> finite", () => {
  const got = wasmExp(new Float32Array([0, -Infinity, -88, -1e30, NaN, 88, 1e30]));
  expect(got[0]).toBe(1);
  expect(got[1]).toBe(0);
  expect(got[2]).toBe(0);
  expect(got[3]).toBe(0);
  expect(got[4]).toBeNaN();
  expect(Number.isFinite(got[5])).toBe(true);
  expect(Number.isFinite(got[6])).toBe(true);
});
