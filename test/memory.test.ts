import { beforeAll, describe, expect, test } from "vitest";
import { init, memoryStats, scaledDotProductAttention, tensor } from "../src/index.js";
import { Heap } from "../src/memory.js";
import { freshSeed, rng } from "./reference.js";

beforeAll(() => init());

describe("Heap", () => {
  const heap = () => new Heap(new WebAssembly.Memory({ initial: 0 }), 40);

  test("blocks are 16-byte aligned, above the base, and do not overlap", () => {
    const h = heap();
    const blocks = [1, 17, 3, 64, 5].map((n) => [h.alloc(n), n] as const);
    for (const [at] of blocks) {
      expect(at % 16).toBe(0);
      expect(at).toBeGreaterThanOrEqual(48);
    }
    const sorted = [...blocks].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i][0]).toBeGreaterThanOrEqual(sorted[i - 1][0] + sorted[i - 1][1]);
  });

  test("freed blocks are reused and merged; live bytes go back to 0", () => {
    const h = heap();
    const a = h.alloc(32);
    const b = h.alloc(32);
    const c = h.alloc(32);
    h.free(a);
    h.free(b);
    expect(h.alloc(64)).toBe(a); // a and b merged
    h.free(a);
    h.free(c);
    expect(h.liveBytes).toBe(0);
    expect(h.alloc(96)).toBe(a); // everything merged back into the top
  });

  test("memory grows on demand and views made after growth see the new size", () => {
    const h = heap();
    const at = h.alloc(200_000);
    expect(h.memory.buffer.byteLength).toBeGreaterThanOrEqual(at + 200_000);
    h.f32(at, 50_000).fill(1.5);
    h.alloc(1_000_000);
    expect(h.f32(at, 50_000)[49_999]).toBe(1.5);
  });

  test("a request past 4 GiB throws OutOfMemoryError and leaves the heap usable", () => {
    const h = heap();
    expect(() => h.alloc(2 ** 33)).toThrow(/exceed 4 GiB/);
    expect(h.liveBytes).toBe(0);
    expect(h.alloc(16) % 16).toBe(0);
  });

  test("with guard words on (every test file), a write past a block's end fails its free(), and checkGuards() finds it in a live block", () => {
    expect(Heap.guard).toBe(true);
    const h = heap();
    const a = h.alloc(20);
    const b = h.alloc(20);
    new Uint8Array(h.memory.buffer)[a + 32] = 1; // the first byte past a's 32 rounded bytes
    expect(() => Heap.checkGuards()).toThrow(/overwrote its guard words/);
    expect(() => h.free(a)).toThrow(/overwrote its guard words/);
    new Uint8Array(h.memory.buffer)[b - 1] = 7; // the byte before b
    expect(() => h.free(b)).toThrow(/overwrote its guard words/);
    h.close(); // leaves the broken heap out of the check after this file
  });

  test("a scope releases everything it allocated", () => {
    const h = heap();
    const s = h.scope();
    s.alloc(100);
    s.put(new Float32Array(30));
    expect(h.liveBytes).toBeGreaterThan(0);
    s.release();
    expect(h.liveBytes).toBe(0);
  });
});

describe("scaledDotProductAttention owns its memory", () => {
  test("10,000 calls leave the memory size and live bytes flat", () => {
    const r = rng(freshSeed());
    const q = tensor(r.floats(2 * 4 * 7 * 16), [2, 4, 7, 16]);
    const k = tensor(r.floats(2 * 4 * 9 * 16), [2, 4, 9, 16]);
    const m = tensor(r.bools(7 * 9), [7, 9]);
    scaledDotProductAttention(q, k, k, { attnMask: m, returnWeights: true });
    const before = memoryStats();
    expect(before.liveBytes).toBe(0);
    for (let i = 0; i < 10_000; i++) {
      if (i % 2) scaledDotProductAttention(q, k, k, { attnMask: m, returnWeights: true });
      else scaledDotProductAttention(q, k, k, { isCausal: true });
    }
    expect(memoryStats()).toEqual(before);
  });

  test("a call that throws frees what it allocated", () => {
    const q = tensor(new Float32Array(8).fill(1), [2, 4]);
    scaledDotProductAttention(q, q, q);
    const before = memoryStats();
    expect(() => scaledDotProductAttention(q, q, tensor(new Float32Array(6), [3, 2]))).toThrow();
    expect(memoryStats()).toEqual(before);
  });
});

describe("forgotten modules, caches and resident tensors", () => {
  test("are freed by the FinalizationRegistry once garbage-collected (a child Node with --expose-gc)", async () => {
    const { execFileSync } = await import("node:child_process");
    const out = JSON.parse(
      execFileSync(process.execPath, ["--expose-gc", "test/support/forgotten.mjs"], { cwd: new URL("..", import.meta.url), encoding: "utf8" }),
    );
    expect(out.held).toBeGreaterThan(out.base);
    expect(out.after).toBe(out.base);
  });
});
