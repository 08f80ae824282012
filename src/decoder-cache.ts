// The key/value cache of a decoder-only model (CausalLM.createCache): per sequence of the batch
// and per layer, the keys and values of the real tokens only (left padding is never stored),
// after RoPE, in blocks of WebAssembly memory that sequences may share.
//
// Layout. A full-attention layer holds a sequence's keys as a list of segments, each a run of
// rows of a block: positions pos0 .. pos0 + n - 1 at rows from .. from + n - 1. A block is shared
// (reference-counted) between the sequences of fork() and reorder() duplicates: the prefix is
// never copied. Appending writes in place when the sequence's last segment ends where its block's
// rows end (`used`); otherwise (another sequence already appended there) it starts a new segment
// in a new block, so attention reads a sequence's keys as one contiguous run per segment and
// merges the runs' softmaxes. A sliding-window layer holds one block of its own per sequence:
// the last window - 1 positions and room for more; when full, those rows move to the front
// (amortised O(1) per token), so its memory stops growing.
import { ArgumentError, ShapeError, StateError } from "./errors.js";
import { runtime } from "./init.js";
import type { Heap } from "./memory.js";
import { int } from "./check.js";
import { checkOptions, describe } from "./tensor.js";
import { type CacheDtype, cacheFormat, readFormat } from "./cache.js";
import type { KvFormat } from "./enums.js";

/** What the cache holds per layer: key/value heads and their size, and its sliding window (null: none). */
export interface CacheLayerSpec {
  heads: number;
  headDim: number;
  window: number | null;
}

/** @internal a layer's spec and the bytes of one of its rows in the cache's format */
interface LayerRows extends CacheLayerSpec {
  rowBytes: number;
}

/** @internal rows of keys and values, [capacity] rows of rowBytes each */
interface Block {
  k: number;
  v: number;
  capacity: number;
  rowBytes: number;
  /** rows written or reserved, 0..used: appending in place continues at used */
  used: number;
  /** segments that read this block */
  refs: number;
}

/** @internal positions pos0 .. pos0 + n - 1 of a sequence, at rows from .. from + n - 1 of block */
interface Segment {
  block: Block;
  from: number;
  n: number;
  pos0: number;
}

/** @internal a sequence's keys and values in one layer; `pending` rows are being written after the last segment */
interface Lane {
  readonly spec: LayerRows;
  segments: Segment[];
  pending: number;
}

/** @internal one sequence of the batch: left padding (columns without a token) and a lane per layer */
interface Sequence {
  pads: number;
  lanes: Lane[];
}

/** @internal the blocks of a cache and its forks: one heap, freed when the last reference goes */
interface Store {
  heap: Heap;
  blocks: Set<Block>;
  /** some half stored in a block of the family is Infinity or NaN: the kernels widen with the checks */
  nonFinite: boolean;
}

/** @internal a run of keys for attention: positions pos0 .. pos0 + n - 1, rows as the cache stores them (kvDim float32 without one) */
export interface KeyRun {
  k: number;
  v: number;
  n: number;
  pos0: number;
}

export interface DecoderCacheOptions {
  /**
   * How keys and values are stored: "f32" (default), "f16" (half the bytes, values rounded to the
   * nearest half) or "q8" (int8 with one float32 scale per token and key/value head, max |x| / 127:
   * about a quarter of the bytes). Attention reads them as stored.
   */
  dtype?: CacheDtype;
}

const MIN_ROWS = 16;

/**
 * The keys and values of past tokens of one CausalLM, for decoding: `model.forward(prompt, {
 * cache })` prefills it, later calls add one token (or more) at a time, with `attentionMask`
 * covering the past and the new tokens as in Hugging Face. Each sequence of a batch keeps its own
 * length: left padding is never stored nor read.
 *
 * `truncate(n)` forgets every column from n on (speculative decoding, retries), `reorder(indices)`
 * keeps, repeats or drops sequences (beam search; generation drops finished ones), `fork()` makes
 * an independent cache that shares what is cached so far without copying it (a prompt's prefix for
 * several continuations). Sliding-window layers keep only their window, so their memory stops
 * growing. A failed call (out of memory, a bad argument) leaves the cache as it was.
 */
export class DecoderCache {
  /** How keys and values are stored (see DecoderCacheOptions). */
  readonly dtype: CacheDtype;
  readonly #format: KvFormat;
  readonly #owner: object;
  readonly #layers: readonly LayerRows[];
  readonly #store: Store;
  #seqs: Sequence[] = [];
  #length = 0;
  #disposed = false;

  /** @internal made by CausalLM.createCache() */
  constructor(owner: object, layers: readonly CacheLayerSpec[], options: DecoderCacheOptions = {}, store?: Store) {
    const o = checkOptions("createCache options", options, ["dtype"]);
    ({ dtype: this.dtype, format: this.#format } = cacheFormat("createCache dtype", o.dtype));
    this.#owner = owner;
    const K = runtime().kernels;
    this.#layers = layers.map((l) => ({ ...l, rowBytes: K.kv_row_bytes(l.heads, l.headDim, this.#format) }));
    if (store) this.#store = store;
    else {
      const blocks = new Set<Block>();
      this.#store = { heap: runtime().heap, blocks, nonFinite: false };
      // the blocks are freed when every cache of the family is gone (a dropped cache's own
      // references are only released by dispose() or with the family)
      this.#store.heap.track(this.#store, blocksOf(blocks));
    }
  }

  /** Columns cached so far: past tokens, left padding included (the width of the attention mask's past). */
  get length(): number {
    return this.#length;
  }

  /** Sequences in the cache (0 before the first call). */
  get batchSize(): number {
    return this.#seqs.length;
  }

  /** Real (not padding) tokens cached for each sequence. */
  get sequenceLengths(): number[] {
    return this.#seqs.map((s) => Math.max(0, this.#length - s.pads));
  }

  /** Bytes of WebAssembly memory of the blocks this cache reads (shared blocks counted once). */
  get byteLength(): number {
    const seen = new Set<Block>();
    for (const s of this.#seqs) for (const l of s.lanes) for (const g of l.segments) seen.add(g.block);
    let n = 0;
    for (const b of seen) n += 2 * b.capacity * b.rowBytes;
    return n;
  }

  /** Empties the cache for a new batch (its memory is freed). */
  reset(): void {
    this.#assertUsable();
    for (const s of this.#seqs) this.#releaseSeq(s);
    this.#seqs = [];
    this.#length = 0;
  }

  /** The same as dispose(), for `using` (explicit resource management): freed at the end of the block. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Frees the cache's memory (blocks shared with a fork stay with it). Using it afterwards is a StateError. */
  dispose(): void {
    if (this.#disposed) return;
    if (!this.#store.heap.closed) for (const s of this.#seqs) this.#releaseSeq(s);
    this.#seqs = [];
    this.#disposed = true;
  }

  /**
   * Forgets every column from n on (0 <= n <= length): the next call continues at column n. A
   * sliding-window layer can only go back as far as it still holds the window before n: further
   * is a StateError, with the cache unchanged.
   */
  truncate(n: number): void {
    this.#assertUsable();
    int("DecoderCache.truncate n", n, 0, this.#length);
    if (n === this.#length) return;
    // check every sliding lane first: nothing changes unless all can be cut
    for (const s of this.#seqs) {
      const keep = Math.max(0, n - s.pads);
      s.lanes.forEach((lane, i) => {
        const w = lane.spec.window;
        if (w === null) return;
        const g = lane.segments[0];
        if (g && keep > 0 && g.pos0 > Math.max(0, keep - (w - 1))) {
          throw new StateError(
            `truncate(${n}): layer ${i} slides over a window of ${w} and no longer holds the keys before position ${g.pos0}; it can go back to column ${g.pos0 + w - 1 + s.pads} at most`,
          );
        }
      });
    }
    for (const s of this.#seqs) {
      const keep = Math.max(0, n - s.pads);
      s.pads = Math.min(s.pads, n);
      for (const lane of s.lanes) this.#cut(lane, keep);
    }
    this.#length = n;
  }

  /**
   * Keeps the sequences `indices` in that order: a sequence may be repeated (beam search: its
   * keys are then shared, not copied, except a sliding window's few rows) or left out (freed).
   */
  reorder(indices: readonly number[] | Int32Array): void {
    this.#assertUsable();
    const B = this.#seqs.length;
    if (!Array.isArray(indices) && !(indices instanceof Int32Array))
      throw new ArgumentError(`DecoderCache.reorder indices: expected an array of sequence indices, got ${describe(indices)}`);
    const list = Array.from(indices as ArrayLike<number>, (x, i) => int(`DecoderCache.reorder indices[${i}]`, x, 0, Math.max(0, B - 1)));
    if (B === 0 && list.length) throw new StateError("reorder: the cache holds no sequence yet");
    const taken = new Set<number>();
    // the memory of the copies (sliding windows) is checked before any is made
    this.#store.heap.need(
      "DecoderCache.reorder",
      list.reduce((n, i) => {
        if (taken.has(i)) return n + this.#cloneBytes(this.#seq(i));
        taken.add(i);
        return n;
      }, 0),
    );
    taken.clear();
    const copies: Sequence[] = [];
    const next = this.#cloning(copies, () =>
      list.map((i) => {
        if (!taken.has(i)) {
          taken.add(i);
          return this.#seq(i);
        }
        const copy = this.#clone(this.#seq(i));
        copies.push(copy);
        return copy;
      }),
    );
    this.#seqs.forEach((s, i) => {
      if (!taken.has(i)) this.#releaseSeq(s);
    });
    this.#seqs = next;
    if (!next.length) this.#length = 0;
  }

  /**
   * A new cache of the same model holding what this one holds, sharing its memory (no copy of the
   * keys of full-attention layers; sliding windows copy their few rows). The two continue
   * independently: appending, truncating or disposing one never changes the other.
   */
  fork(): DecoderCache {
    this.#assertUsable();
    this.#store.heap.need(
      "DecoderCache.fork",
      this.#seqs.reduce((n, s) => n + this.#cloneBytes(s), 0),
    );
    const copy = new DecoderCache(this.#owner, this.#layers, { dtype: this.dtype }, this.#store);
    const copies: Sequence[] = [];
    copy.#seqs = this.#cloning(copies, () =>
      this.#seqs.map((s) => {
        const c = this.#clone(s);
        copies.push(c);
        return c;
      }),
    );
    copy.#length = this.#length;
    return copy;
  }

  /** @internal how layer `layer` stores a row: the kernels' format and the row's bytes */
  rows(layer: number): { format: KvFormat; rowBytes: number } {
    return { format: this.#format, rowBytes: this.#layers[layer]?.rowBytes ?? 0 };
  }

  /** @internal how the kernels read the rows stored so far (this cache and its forks) */
  readFormat(): KvFormat {
    return readFormat(this.#format, this.#store.nonFinite);
  }

  /** @internal after storing rows: how many of the values stored are Infinity or NaN (kv_store_rows) */
  noteStored(nonFinite: number): void {
    if (nonFinite) this.#store.nonFinite = true;
  }

  /** @internal throws unless `owner` may run a batch of B on this cache */
  check(owner: object, B: number): void {
    this.#assertUsable();
    if (owner !== this.#owner) throw new StateError("cache: it belongs to another model; make one with this model's createCache()");
    if (this.#length > 0 && B !== this.#seqs.length) {
      throw new ShapeError(
        `cache: expected an input batch of ${this.#seqs.length} (the sequences it holds), got ${B}; use a new cache, reorder() it or reset() it`,
      );
    }
  }

  /** @internal the left padding of sequence b so far (columns without a token) */
  pads(b: number): number {
    return this.#length === 0 ? 0 : this.#seq(b).pads;
  }

  /**
   * @internal before a forward of B sequences adding L columns, `pads[b]` of them (the first
   * ones) padding: makes room in every lane, or throws with the cache unchanged. Room is made by
   * changes that keep what the cache holds (a longer block, a new segment, a window's rows moved).
   */
  begin(owner: object, B: number, L: number, pads: Int32Array): void {
    this.check(owner, B);
    if (this.#length === 0 && this.#seqs.length !== B) {
      for (const s of this.#seqs) this.#releaseSeq(s);
      this.#seqs = Array.from({ length: B }, () => ({ pads: 0, lanes: this.#layers.map((spec) => ({ spec, segments: [], pending: 0 })) }));
    }
    const plans: (() => void)[] = [];
    let bytes = 0;
    this.#seqs.forEach((s, b) => {
      const add = this.#length + L - Math.max(pads[b]!, this.#length);
      for (const lane of s.lanes) {
        lane.pending = 0;
        const plan = this.#planRoom(lane, add, Math.max(0, this.#length - s.pads));
        if (!plan) continue;
        bytes += plan.bytes;
        plans.push(plan.run);
      }
    });
    this.#store.heap.need("DecoderCache", bytes);
    for (const run of plans) run();
    this.#seqs.forEach((s, b) => {
      const add = this.#length + L - Math.max(pads[b]!, this.#length);
      for (const lane of s.lanes) {
        lane.pending = add;
        if (add > 0) {
          const last = lastSegment(lane);
          last.block.used = Math.max(last.block.used, last.from + last.n + add);
        }
      }
    });
  }

  /**
   * @internal where sequence b's new rows of `layer` go (the address of the first, for keys and
   * values) and the runs of keys its queries read, the new rows included
   */
  lane(b: number, layer: number): { k: number; v: number; runs: KeyRun[] } {
    const lane = this.#seqs[b]?.lanes[layer];
    if (!lane) throw new Error(`wasm-attention internal: DecoderCache has no lane for sequence ${b}, layer ${layer}`);
    const rowBytes = lane.spec.rowBytes;
    const segs = lane.segments;
    const runs: KeyRun[] = segs
      .map((g, j) => {
        const n = g.n + (j === segs.length - 1 ? lane.pending : 0);
        return { k: g.block.k + g.from * rowBytes, v: g.block.v + g.from * rowBytes, n, pos0: g.pos0 };
      })
      .filter((r) => r.n > 0);
    const last = segs[segs.length - 1];
    const row = last ? (last.from + last.n) * rowBytes : 0;
    return { k: last ? last.block.k + row : 0, v: last ? last.block.v + row : 0, runs };
  }

  /** @internal after the whole forward succeeded: its rows are part of the cache */
  commit(L: number, pads: Int32Array): void {
    this.#seqs.forEach((s, b) => {
      s.pads = pads[b]!;
      for (const lane of s.lanes) {
        if (lane.pending) lastSegment(lane).n += lane.pending;
        lane.pending = 0;
      }
    });
    this.#length += L;
  }

  // what making room for `add` rows in `lane` takes: bytes to allocate and the change, or null
  // when the rows fit where the lane ends. `real` is the number of positions cached so far.
  #planRoom(lane: Lane, add: number, real: number): { bytes: number; run: () => void } | null {
    if (add === 0) return null;
    const { spec, segments: segs } = lane;
    const last = segs[segs.length - 1];
    const rowBytes = 2 * spec.rowBytes;
    if (spec.window !== null) return this.#planWindow(lane, spec.window, add, real);
    if (last && last.block.refs === 1) last.block.used = last.from + last.n; // rows reserved by a failed call
    const end = last ? last.from + last.n : 0;
    if (last && end === last.block.used && end + add <= last.block.capacity) {
      // in place: reserved now, so that another sequence sharing the block starts a segment of its own
      last.block.used = end + add;
      return null;
    }
    if (last && last.block.refs === 1 && end === last.block.used) {
      // the lane's own block is full: a longer one, its rows copied (doubling: amortised O(1))
      const capacity = Math.max(2 * last.block.capacity, last.n + add);
      return {
        bytes: capacity * rowBytes,
        run: () => {
          const block = this.#alloc(capacity, spec.rowBytes);
          this.#copyRows(block, 0, last.block, last.from, last.n);
          block.used = last.n;
          this.#unref(last.block);
          Object.assign(last, { block, from: 0 });
        },
      };
    }
    // a first segment, or the last one's block is shared and continued by another sequence
    const capacity = Math.max(MIN_ROWS, add);
    return {
      bytes: capacity * rowBytes,
      run: () => segs.push({ block: this.#alloc(capacity, spec.rowBytes), from: 0, n: 0, pos0: real }),
    };
  }

  // a sliding window's lane: one block of its own holding the last window - 1 positions and
  // room for `chunk` more; when full, the rows still needed move to the front
  #planWindow(lane: Lane, w: number, add: number, real: number): { bytes: number; run: () => void } | null {
    const { spec } = lane;
    const chunk = Math.max(MIN_ROWS, Math.ceil(w / 4));
    const target = w - 1 + chunk;
    const g = lane.segments[0];
    if (!g) {
      const capacity = Math.max(target, add);
      return {
        bytes: 2 * capacity * spec.rowBytes,
        run: () => lane.segments.push({ block: this.#alloc(capacity, spec.rowBytes), from: 0, n: 0, pos0: real }),
      };
    }
    if (g.from + g.n + add <= g.block.capacity) return null;
    const keep = Math.min(g.n, w - 1);
    const need = keep + add;
    const shift = () => {
      g.pos0 += g.n - keep;
      g.from += g.n - keep;
      g.n = keep;
    };
    if (need <= g.block.capacity && (g.block.capacity <= target || need > target)) {
      // move the kept rows to the front of the same block
      return {
        bytes: 0,
        run: () => {
          shift();
          this.#copyRows(g.block, 0, g.block, g.from, keep);
          g.from = 0;
          g.block.used = keep;
        },
      };
    }
    // a block of the steady size (after a long prefill), or a longer one for a long chunk
    const capacity = Math.max(target, need);
    return {
      bytes: 2 * capacity * spec.rowBytes,
      run: () => {
        shift();
        const block = this.#alloc(capacity, spec.rowBytes);
        this.#copyRows(block, 0, g.block, g.from, keep);
        block.used = keep;
        this.#unref(g.block);
        Object.assign(g, { block, from: 0 });
      },
    };
  }

  // keeps positions 0 .. keep - 1 of a lane: segments that start at keep or later go
  #cut(lane: Lane, keep: number): void {
    const segs = lane.segments;
    let last = segs.at(-1);
    while (last && last.pos0 >= keep) {
      segs.pop();
      this.#unref(last.block);
      last = segs.at(-1);
    }
    if (!last) return;
    last.n = Math.min(last.n, keep - last.pos0);
    if (last.block.refs === 1) last.block.used = last.from + last.n;
  }

  // runs `make`, which records every sequence it copies in `copies`: if it throws (out of memory
  // in a sliding window's copy), the copies made so far are released, shared blocks given back
  #cloning<T>(copies: Sequence[], make: () => T): T {
    try {
      return make();
    } catch (error) {
      for (const c of copies) this.#releaseSeq(c);
      throw error;
    }
  }

  // a copy of a sequence: full layers share their segments, sliding windows copy their rows; a
  // failure partway releases what the copy already holds
  #clone(s: Sequence): Sequence {
    const copy: Sequence = { pads: s.pads, lanes: [] };
    try {
      for (const lane of s.lanes) copy.lanes.push(this.#cloneLane(lane));
    } catch (error) {
      this.#releaseSeq(copy);
      throw error;
    }
    return copy;
  }

  // a lane of a copy: a full layer's segments shared (their blocks referenced once more), a
  // sliding window's rows copied into blocks of its own (freed again if a later one fails)
  #cloneLane(lane: Sequence["lanes"][number]): Sequence["lanes"][number] {
    const { spec } = lane;
    if (spec.window === null) {
      for (const g of lane.segments) g.block.refs++;
      return { spec, segments: lane.segments.map((g) => ({ ...g })), pending: 0 };
    }
    const segments: Sequence["lanes"][number]["segments"] = [];
    try {
      for (const g of lane.segments) {
        const block = this.#alloc(g.block.capacity, spec.rowBytes);
        this.#copyRows(block, 0, g.block, g.from, g.n);
        block.used = g.n;
        segments.push({ block, from: 0, n: g.n, pos0: g.pos0 });
      }
    } catch (error) {
      for (const g of segments) this.#unref(g.block);
      throw error;
    }
    return { spec, segments, pending: 0 };
  }

  #cloneBytes(s: Sequence): number {
    return s.lanes.reduce(
      (n, { spec, segments }) => (spec.window === null ? n : n + segments.reduce((m, g) => m + 2 * g.block.capacity * spec.rowBytes, 0)),
      0,
    );
  }

  // sequence b, which the caller checked is in the batch
  #seq(b: number): Sequence {
    const s = this.#seqs[b];
    if (!s) throw new Error(`wasm-attention internal: DecoderCache has no sequence ${b} (it holds ${this.#seqs.length})`);
    return s;
  }

  #releaseSeq(s: Sequence): void {
    for (const lane of s.lanes) for (const g of lane.segments) this.#unref(g.block);
    s.lanes = [];
  }

  #alloc(capacity: number, rowBytes: number): Block {
    const heap = this.#store.heap;
    const k = heap.alloc(capacity * rowBytes);
    let v: number;
    try {
      v = heap.alloc(capacity * rowBytes);
    } catch (error) {
      heap.free(k);
      throw error;
    }
    const block = { k, v, capacity, rowBytes, used: 0, refs: 1 };
    this.#store.blocks.add(block);
    return block;
  }

  #unref(block: Block): void {
    if (--block.refs > 0) return;
    const heap = this.#store.heap;
    if (!heap.closed) {
      heap.free(block.k);
      heap.free(block.v);
    }
    this.#store.blocks.delete(block);
  }

  // rows from .. from + n - 1 of src into rows at.. of dst (the same block: a move to the front)
  #copyRows(dst: Block, at: number, src: Block, from: number, n: number): void {
    const mem = new Uint8Array(this.#store.heap.memory.buffer);
    const row = src.rowBytes;
    mem.copyWithin(dst.k + at * row, src.k + from * row, src.k + (from + n) * row);
    mem.copyWithin(dst.v + at * row, src.v + from * row, src.v + (from + n) * row);
  }

  #assertUsable(): void {
    if (this.#disposed) throw new StateError("DecoderCache was disposed: it can no longer be used");
    this.#store.heap.assertOpen("DecoderCache");
  }
}

// the segment a lane's pending rows are written after: there is one once room was made (begin)
function lastSegment(lane: Lane): Segment {
  const last = lane.segments.at(-1);
  if (!last) throw new Error("wasm-attention internal: DecoderCache: rows to write in a lane without a segment");
  return last;
}

// made out here, not in a method: a closure there would keep the cache alive through `this`
function blocksOf(blocks: Set<Block>): () => number[] {
  return () => [...blocks].flatMap((b) => [b.k, b.v]);
}
