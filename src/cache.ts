import { int } from "./check.js";
import { ArgumentError, ShapeError, StateError } from "./errors.js";
import { KvFormat } from "./enums.js";
import { checkOptions, describe } from "./tensor.js";
import { runtime } from "./init.js";
import type { Heap } from "./memory.js";

/** How a cache stores keys and values: float32, IEEE half, or int8 with one scale per token and head. */
export type CacheDtype = "f32" | "f16" | "q8";

const FORMATS: Record<CacheDtype, KvFormat> = { f32: KvFormat.F32, f16: KvFormat.F16, q8: KvFormat.Q8 };

/** @internal the dtype of rows stored in `format` */
export function dtypeOf(format: KvFormat): CacheDtype {
  return format === KvFormat.F16 || format === KvFormat.F16Finite ? "f16" : format === KvFormat.Q8 ? "q8" : "f32";
}

/** @internal how the kernels read rows stored in `format`: f16 rows without Infinity or NaN skip the checks */
export function readFormat(format: KvFormat, nonFinite: boolean): KvFormat {
  return format === KvFormat.F16 && !nonFinite ? KvFormat.F16Finite : format;
}

/** @internal a cache's `dtype` option, checked */
export function cacheFormat(name: string, dtype: unknown): { dtype: CacheDtype; format: KvFormat } {
  const d = dtype ?? "f32";
  if (typeof d !== "string" || !Object.hasOwn(FORMATS, d)) throw new ArgumentError(`${name}: expected "f32", "f16" or "q8", got ${describe(d)}`);
  return { dtype: d as CacheDtype, format: FORMATS[d as CacheDtype] };
}

/**
 * One attention module's cached keys and values: [B, capacity] rows each, rows 0..length used, a
 * row `rowBytes` long (kvDim values in the cache's format, then, for q8, one scale per head).
 */
export interface CacheEntry {
  k: number;
  v: number;
  B: number;
  capacity: number;
  kvDim: number;
  rowBytes: number;
}

/** What a forward needs of the cache: one entry per attention module, keyed by the module. */
export interface CacheLayer {
  key: object;
  /** key/value heads and their size: a row holds heads * headDim values */
  heads: number;
  headDim: number;
}

/**
 * Keys and values of past tokens, for decoding token by token with causal self-attention. Pass
 * the same cache to every call of a sequence: `forward(prefix, { isCausal: true, cache })` to
 * prefill, then one token at a time. Each call appends its tokens; a query at position p sees
 * keys 0..p. Memory grows by doubling (or start with `capacity`); `dispose()` frees it, and
 * `reset()` empties it for a new sequence (of any batch size, for any model).
 *
 * `dtype` is how keys and values are stored: "f32" (default), "f16" (half the bytes; values
 * rounded to the nearest half, beyond +-65504 infinite) or "q8" (about a quarter: int8 with one
 * float32 scale per token and key/value head, max |x| / 127). Attention reads them as stored.
 *
 * A cache belongs to the module (or stack) that first filled it, until `reset()`: passing it to
 * another is a StateError. A call that fails (out of memory, a bad argument) leaves the cache as
 * it was: its room is made for every layer before any kernel runs, and the length advances only
 * when the whole forward has succeeded.
 */
export class KVCache {
  readonly #entries = new Map<object, CacheEntry>();
  readonly #initialCapacity: number;
  readonly #format: KvFormat;
  /** How keys and values are stored. */
  readonly dtype: CacheDtype;
  #length = 0;
  // some stored half is Infinity or NaN (until reset): the kernels then widen with the checks
  #nonFinite = false;
  #batch: number | null = null;
  #owner: object | null = null;
  #heap: Heap | null = null;
  #disposed = false;

  /** `capacity`: tokens of room made at the first call (default 16); it doubles when full. `dtype`: see the class. */
  constructor(options: { capacity?: number; dtype?: CacheDtype } = {}) {
    const o = checkOptions("KVCache options", options, ["capacity", "dtype"]);
    this.#initialCapacity = int("KVCache capacity", o.capacity ?? 16, 1);
    ({ dtype: this.dtype, format: this.#format } = cacheFormat("KVCache dtype", o.dtype));
  }

  /** Tokens cached so far (per batch row). */
  get length(): number {
    return this.#length;
  }

  /** @internal how rows are stored (the kernels' format) */
  get format(): KvFormat {
    return this.#format;
  }

  /** @internal how the kernels read the rows stored so far */
  get readFormat(): KvFormat {
    return readFormat(this.#format, this.#nonFinite);
  }

  /** @internal after storing rows: how many of the values stored are Infinity or NaN (kv_store_rows) */
  noteStored(nonFinite: number): void {
    if (nonFinite) this.#nonFinite = true;
  }

  /** Bytes of WebAssembly memory the cache holds (its capacity, keys and values of every layer). */
  get byteLength(): number {
    let n = 0;
    for (const e of this.#entries.values()) n += 2 * e.B * e.capacity * e.rowBytes;
    return n;
  }

  /** Empties the cache, keeping its memory for the next sequence. */
  reset(): void {
    this.#length = 0;
    this.#nonFinite = false;
    this.#batch = null;
    this.#owner = null;
  }

  /** The same as dispose(), for `using` (explicit resource management): freed at the end of the block. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#freeAll();
  }

  /**
   * @internal before a forward of `owner` over a batch of B: checks that the call may use this
   * cache, and makes room for `add` more tokens in every layer's entry, or throws with the cache
   * unchanged (an OutOfMemoryError included: what was allocated here is freed again)
   */
  begin(owner: object, B: number, layers: readonly CacheLayer[], add: number): void {
    this.#assertUsable(owner, B);
    const { heap, kernels: K } = runtime();
    if (this.#heap !== heap) {
      // first use, or first use after shutdown() + init(): entries of the old heap are gone
      this.#entries.clear();
      this.#heap = heap;
      heap.track(this, blocksOf(this.#entries));
    }
    if (this.#length === 0) {
      // a new sequence: entries of another batch size or another model are dropped
      const keys = new Set(layers.map((l) => l.key));
      for (const [key, e] of this.#entries) {
        if (e.B !== B || !keys.has(key)) this.#free(key, e);
      }
    }
    const need = this.#length + add;
    const rowBytes = (l: CacheLayer) => K.kv_row_bytes(l.heads, l.headDim, this.#format);
    const grow = layers.filter((l) => {
      const e = this.#entries.get(l.key);
      return !e || e.capacity < need || e.kvDim !== l.heads * l.headDim || e.rowBytes !== rowBytes(l);
    });
    if (!grow.length) return;
    const capacity = Math.max(need, 2 * Math.max(0, ...grow.map((l) => this.#entries.get(l.key)?.capacity ?? 0)), this.#initialCapacity);
    const bytes = (l: CacheLayer) => B * capacity * rowBytes(l);
    heap.need(
      "KVCache",
      grow.reduce((n, l) => n + 2 * bytes(l), 0),
    );
    const made: [CacheLayer, number, number][] = [];
    try {
      for (const l of grow) made.push([l, heap.alloc(bytes(l)), heap.alloc(bytes(l))]);
    } catch (error) {
      for (const [, k, v] of made) {
        heap.free(k);
        heap.free(v);
      }
      throw error;
    }
    for (const [l, k, v] of made) {
      const old = this.#entries.get(l.key);
      const row = rowBytes(l);
      if (old && this.#length > 0) {
        const mem = new Uint8Array(heap.memory.buffer);
        for (let b = 0; b < B; b++) {
          mem.copyWithin(k + b * capacity * row, old.k + b * old.capacity * row, old.k + (b * old.capacity + this.#length) * row);
          mem.copyWithin(v + b * capacity * row, old.v + b * old.capacity * row, old.v + (b * old.capacity + this.#length) * row);
        }
      }
      if (old) this.#free(l.key, old);
      this.#entries.set(l.key, { k, v, B, capacity, kvDim: l.heads * l.headDim, rowBytes: row });
    }
  }

  /** @internal the entry of `key`, made by begin() */
  entry(key: object): CacheEntry {
    const e = this.#entries.get(key);
    if (!e) throw new Error("wasm-attention internal: KVCache.entry() before begin()");
    return e;
  }

  /** @internal after the whole forward of `owner` succeeded: its `add` tokens are in every entry */
  commit(owner: object, B: number, add: number): void {
    this.#owner = owner;
    this.#batch = B;
    this.#length += add;
  }

  /** @internal throws unless `owner` may run a batch of B on this cache */
  check(owner: object, B: number): void {
    this.#assertUsable(owner, B);
  }

  #assertUsable(owner: object, B: number): void {
    if (this.#disposed) throw new StateError("KVCache was disposed: it can no longer be used");
    this.#heap?.assertOpen("KVCache");
    if (this.#owner !== null && this.#owner !== owner) {
      throw new StateError("cache: it holds the keys and values of another module; use a cache per model, or reset() it to start a new sequence");
    }
    if (this.#batch !== null && this.#batch !== B) {
      throw new ShapeError(`cache: expected an input batch of ${this.#batch} (the sequences it holds), got ${B}; use a new cache or reset() it`);
    }
  }

  #free(key: object, e: CacheEntry): void {
    this.#heap!.free(e.k);
    this.#heap!.free(e.v);
    this.#entries.delete(key);
  }

  #freeAll(): void {
    const heap = this.#heap;
    if (!heap) return;
    heap.untrack(this);
    if (!heap.closed) for (const [key, e] of this.#entries) this.#free(key, e);
    this.#entries.clear();
  }
}

// made out here, not in a method: a closure there would share the method's context and with it `this`, keeping the cache alive
function blocksOf(entries: Map<object, CacheEntry>): () => number[] {
  return () => [...entries.values()].flatMap((e) => [e.k, e.v]);
}
