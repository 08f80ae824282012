import { ArgumentError, ShapeError, StateError } from "./errors.js";
import { checkOptions } from "./tensor.js";
import { runtime } from "./init.js";
import type { Ctx } from "./module.js";
import type { Heap } from "./memory.js";

/** One attention module's cached keys and values: [B, capacity, kvDim] each, rows 0..length used. */
export interface CacheEntry {
  k: number;
  v: number;
  capacity: number;
  length: number;
}

const forgotten = new FinalizationRegistry<{ heap: Heap; entries: Map<object, CacheEntry> }>(({ heap, entries }) => {
  for (const e of entries.values()) {
    heap.free(e.k);
    heap.free(e.v);
  }
});

/**
 * Keys and values of past tokens, for decoding token by token with causal self-attention. Pass
 * the same cache to every call of a sequence: `forward(prefix, { isCausal: true, cache })` to
 * prefill, then one token at a time. Each call appends its tokens; a query at position p sees
 * keys 0..p. Memory grows by doubling (or start with `capacity`); `dispose()` frees it, and
 * `reset()` empties it for a new sequence of the same batch size.
 */
export class KVCache {
  readonly #entries = new Map<object, CacheEntry>();
  readonly #initialCapacity: number;
  #batch: number | null = null;
  #heap: Heap | null = null;
  #disposed = false;

  constructor(options: { capacity?: number } = {}) {
    checkOptions("KVCache options", options, ["capacity"]);
    const capacity = options.capacity ?? 16;
    if (!Number.isInteger(capacity) || capacity < 1) throw new ArgumentError(`KVCache: capacity must be a positive integer, got ${String(capacity)}`);
    this.#initialCapacity = capacity;
  }

  /** Tokens cached so far (per batch row). */
  get length(): number {
    for (const e of this.#entries.values()) return e.length;
    return 0;
  }

  /** Empties the cache, keeping its memory for the next sequence. */
  reset(): void {
    for (const e of this.#entries.values()) e.length = 0;
    this.#batch = null;
  }

  dispose(): void {
    if (this.#disposed || !this.#heap) {
      this.#disposed = true;
      return;
    }
    forgotten.unregister(this);
    for (const e of this.#entries.values()) {
      this.#heap.free(e.k);
      this.#heap.free(e.v);
    }
    this.#entries.clear();
    this.#disposed = true;
  }

  /** @internal checks that a call of batch B fits the cache, before anything runs */
  check(B: number): void {
    if (this.#disposed) throw new StateError("KVCache was disposed: it can no longer be used");
    if (this.#batch !== null && this.#batch !== B) {
      throw new ShapeError(`cache: it holds a batch of ${this.#batch} sequences, the input has ${B}; use a new cache or reset() it`);
    }
  }

  /** @internal the entry of `owner` with room for `add` more tokens, grown by doubling */
  reserve(ctx: Ctx, owner: object, B: number, kvDim: number, add: number): CacheEntry {
    this.check(B);
    this.#batch = B;
    if (!this.#heap) {
      this.#heap = runtime().heap;
      forgotten.register(this, { heap: this.#heap, entries: this.#entries }, this);
    }
    let e = this.#entries.get(owner);
    if (!e) {
      e = { k: 0, v: 0, capacity: 0, length: 0 };
      this.#entries.set(owner, e);
    }
    if (e.length + add > e.capacity) {
      const capacity = Math.max(e.length + add, 2 * e.capacity, this.#initialCapacity);
      const rows = 4 * kvDim;
      for (const name of ["k", "v"] as const) {
        const next = ctx.heap.alloc(B * capacity * rows);
        for (let b = 0; b < B && e.length > 0; b++) {
          const mem = new Uint8Array(ctx.heap.memory.buffer);
          mem.copyWithin(next + b * capacity * rows, e[name] + b * e.capacity * rows, e[name] + (b * e.capacity + e.length) * rows);
        }
        if (e.capacity) ctx.heap.free(e[name]);
        e[name] = next;
      }
      e.capacity = capacity;
    }
    return e;
  }
}
