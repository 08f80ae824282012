import { OutOfMemoryError, StateError } from "./errors.js";

const ALIGN = 16;
const PAGE = 65536;
const MAX_BYTES = 2 ** 32; // wasm32: 4 GiB
// guard words around each block when Heap.guard is on (the tests): 16 bytes of this on each side
const CANARY = 0x5afe_c0de;

interface Block {
  at: number;
  size: number;
}

// frees what dropped objects held; absent in runtimes without FinalizationRegistry (older workerd)
const forgotten =
  typeof FinalizationRegistry === "function"
    ? new FinalizationRegistry<{ heap: Heap; blocks: () => Iterable<number> }>(({ heap, blocks }) => heap.freeForgotten(blocks()))
    : null;

/**
 * The one owner of the kernel module's linear memory above its static data.
 *
 * Who frees what: every public function allocates its inputs, outputs and scratch in a `Scope`
 * and releases the scope in a `finally`, so nothing a call allocates outlives the call, whether it
 * returns or throws. What outlives a call (weights, caches, resident tensors, recurrent states)
 * belongs to an object that frees it in `dispose()`, and registers it with `track()` so that it is
 * freed when the object is garbage-collected without `dispose()` (where the runtime has
 * FinalizationRegistry). Typed-array views are made fresh from `memory.buffer` on each use and
 * never kept, because growing the memory detaches the old buffer.
 *
 * Allocation is first fit over a free list kept sorted by address, with neighbours merged on free;
 * a free block at the top lowers the top, so a repeated call reuses the same bytes and
 * `memory.buffer.byteLength` stays flat.
 */
export class Heap {
  /** Test builds: canary words around every block, checked on free and by `checkGuards()`. */
  static guard = false;
  static readonly #guarded = new Set<Heap>();
  static readonly #open = new Set<Heap>();

  readonly #memory: WebAssembly.Memory;
  readonly #guard: number;
  #top: number;
  #free: Block[] = [];
  #live = new Map<number, number>();
  #liveBytes = 0;
  #closed = false;

  constructor(memory: WebAssembly.Memory, base: number) {
    this.#memory = memory;
    this.#top = roundUp(Math.max(base, ALIGN), ALIGN);
    this.#guard = Heap.guard ? ALIGN : 0;
    if (Heap.guard) Heap.#guarded.add(this);
    Heap.#open.add(this);
  }

  /** Whether `buffer` is the current buffer of a heap's memory (a view on it detaches when the memory grows). */
  static owns(buffer: ArrayBufferLike): boolean {
    for (const heap of Heap.#open) if (heap.#memory.buffer === buffer) return true;
    return false;
  }

  /** Bytes handed out and not yet freed (guard words not counted). */
  get liveBytes(): number {
    return this.#liveBytes;
  }

  get memory(): WebAssembly.Memory {
    return this.#memory;
  }

  /**
   * Throws an OutOfMemoryError, before anything is allocated, when a call that needs `bytes` of
   * WebAssembly memory at its peak cannot have them (`what` names the call).
   */
  need(what: string, bytes: number): void {
    const free = this.#free.reduce((n, b) => n + b.size, 0);
    if (!(bytes <= MAX_BYTES - this.#top + free)) {
      throw new OutOfMemoryError(
        `${what}: needs ${Number.isFinite(bytes) ? bytes : "more than 2^53"} bytes of WebAssembly memory at its peak, more than the 4 GiB a module can address (${this.#liveBytes} bytes are held)`,
      );
    }
  }

  /** A 16-byte aligned block of at least `bytes` bytes (contents undefined). */
  alloc(bytes: number): number {
    this.#assertOpen();
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error(`wasm-attention internal: allocation of ${String(bytes)} bytes`);
    if (bytes > MAX_BYTES) throw new OutOfMemoryError(`cannot allocate ${bytes} bytes: WebAssembly memory would exceed 4 GiB`);
    const size = roundUp(Math.max(bytes, 1), ALIGN) + 2 * this.#guard;
    const raw = this.#takeFree(size) ?? this.#takeTop(size);
    const at = raw + this.#guard;
    this.#live.set(at, size);
    this.#liveBytes += size - 2 * this.#guard;
    if (this.#guard) this.#writeGuards(at, size);
    return at;
  }

  free(at: number): void {
    const size = this.#live.get(at);
    if (size === undefined) throw new Error(`wasm-attention internal: free of unknown block ${at}`);
    if (this.#guard) this.#checkGuards(at, size);
    this.#live.delete(at);
    this.#liveBytes -= size - 2 * this.#guard;
    this.#release({ at: at - this.#guard, size });
  }

  /** Allocations released together by `release()`. */
  scope(): Scope {
    return new Scope(this);
  }

  f32(at: number, length: number): Float32Array {
    return new Float32Array(this.#memory.buffer, at, length);
  }

  /**
   * Frees `blocks()` (the blocks `owner` holds at that time) if `owner` is garbage-collected
   * without `untrack(owner)`, which its dispose() calls. A no-op where the runtime has no
   * FinalizationRegistry: there only dispose() frees.
   */
  track(owner: object, blocks: () => Iterable<number>): void {
    forgotten?.register(owner, { heap: this, blocks }, owner);
  }

  untrack(owner: object): void {
    forgotten?.unregister(owner);
  }

  /** @internal the registry's cleanup: must never throw (an exception there ends a Node process) */
  freeForgotten(blocks: Iterable<number>): void {
    if (this.#closed) return;
    for (const at of blocks) if (this.#live.has(at)) this.free(at);
  }

  /** Ends this heap (shutdown): objects that still point into it are stale. */
  close(): void {
    this.#closed = true;
    Heap.#guarded.delete(this);
    Heap.#open.delete(this);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Throws a StateError when `what` was made before shutdown() (its memory is gone). */
  assertOpen(what: string): void {
    if (this.#closed) throw new StateError(`${what} was made before shutdown(): its WebAssembly memory is gone; make it again after init()`);
  }

  /** Test builds: throws if any live block's guard words were overwritten. */
  static checkGuards(): void {
    for (const heap of Heap.#guarded) for (const [at, size] of heap.#live) heap.#checkGuards(at, size);
  }

  #assertOpen(): void {
    if (this.#closed) throw new StateError("wasm-attention was shut down: call init() again, and make modules, caches and tensors anew");
  }

  #writeGuards(at: number, size: number): void {
    const words = new Uint32Array(this.#memory.buffer);
    const end = at - ALIGN + size - ALIGN;
    for (let i = 0; i < ALIGN / 4; i++) {
      words[(at - ALIGN) / 4 + i] = CANARY;
      words[end / 4 + i] = CANARY;
    }
  }

  #checkGuards(at: number, size: number): void {
    const words = new Uint32Array(this.#memory.buffer);
    const end = at - ALIGN + size - ALIGN;
    for (let i = 0; i < ALIGN / 4; i++) {
      if (words[(at - ALIGN) / 4 + i] !== CANARY || words[end / 4 + i] !== CANARY) {
        throw new Error(`wasm-attention internal: a write outside the block at ${at} (${size - 2 * ALIGN} bytes) overwrote its guard words`);
      }
    }
  }

  #takeFree(size: number): number | undefined {
    const i = this.#free.findIndex((b) => b.size >= size);
    if (i < 0) return undefined;
    const block = this.#free[i]!;
    const at = block.at;
    if (block.size === size) this.#free.splice(i, 1);
    else {
      block.at += size;
      block.size -= size;
    }
    return at;
  }

  #takeTop(size: number): number {
    const at = this.#top;
    const end = at + size;
    const have = this.#memory.buffer.byteLength;
    if (end > have) {
      if (end > MAX_BYTES) {
        throw new OutOfMemoryError(`cannot allocate ${size} bytes: WebAssembly memory would exceed 4 GiB (${this.#liveBytes} bytes held)`);
      }
      const pages = Math.ceil((end - have) / PAGE);
      try {
        this.#memory.grow(pages);
      } catch (cause) {
        throw new OutOfMemoryError(`cannot grow WebAssembly memory by ${pages * PAGE} bytes to ${have + pages * PAGE}: ${String(cause)}`);
      }
    }
    this.#top = end;
    return at;
  }

  #release(block: Block): void {
    const free = this.#free;
    let i = 0;
    while (i < free.length && free[i]!.at < block.at) i++;
    free.splice(i, 0, block);
    const next = free[i + 1];
    if (next && block.at + block.size === next.at) {
      block.size += next.size;
      free.splice(i + 1, 1);
    }
    const prev = free[i - 1];
    if (prev && prev.at + prev.size === block.at) {
      prev.size += block.size;
      free.splice(i, 1);
    }
    const last = free[free.length - 1];
    if (last && last.at + last.size === this.#top) {
      this.#top = last.at;
      free.pop();
    }
  }
}

/** Allocations made for one call, freed together. */
export class Scope {
  readonly #heap: Heap;
  readonly #blocks: number[] = [];

  constructor(heap: Heap) {
    this.#heap = heap;
  }

  alloc(bytes: number): number {
    const at = this.#heap.alloc(bytes);
    this.#blocks.push(at);
    return at;
  }

  /** Allocates room for `data` and copies it in; returns its address. */
  put(data: Float32Array | Int32Array): number {
    const at = this.alloc(4 * data.length);
    if (data instanceof Int32Array) new Int32Array(this.#heap.memory.buffer, at, data.length).set(data);
    else this.#heap.f32(at, data.length).set(data);
    return at;
  }

  release(): void {
    for (const at of this.#blocks) this.#heap.free(at);
    this.#blocks.length = 0;
  }
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}
