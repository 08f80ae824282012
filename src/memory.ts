import { OutOfMemoryError } from "./errors.js";

const ALIGN = 16;
const PAGE = 65536;
const MAX_PAGES = 65536; // wasm32: 4 GiB

interface Block {
  at: number;
  size: number;
}

/**
 * The one owner of the kernel module's linear memory above its static data.
 *
 * Who frees what: every public function allocates its inputs, outputs and scratch in a `Scope`
 * and releases the scope in a `finally`, so nothing a call allocates outlives the call, whether it
 * returns or throws. Typed-array views are made fresh from `memory.buffer` on each use and never
 * kept, because growing the memory detaches the old buffer.
 *
 * Allocation is first fit over a free list kept sorted by address, with neighbours merged on free;
 * a free block at the top lowers the top, so a repeated call reuses the same bytes and
 * `memory.buffer.byteLength` stays flat.
 */
export class Heap {
  readonly #memory: WebAssembly.Memory;
  #top: number;
  #free: Block[] = [];
  #live = new Map<number, number>();
  #liveBytes = 0;

  constructor(memory: WebAssembly.Memory, base: number) {
    this.#memory = memory;
    this.#top = roundUp(Math.max(base, ALIGN), ALIGN);
  }

  /** Bytes handed out and not yet freed. */
  get liveBytes(): number {
    return this.#liveBytes;
  }

  get memory(): WebAssembly.Memory {
    return this.#memory;
  }

  /** A 16-byte aligned block of at least `bytes` bytes (contents undefined). */
  alloc(bytes: number): number {
    const size = roundUp(Math.max(bytes, 1), ALIGN);
    const at = this.#takeFree(size) ?? this.#takeTop(size);
    this.#live.set(at, size);
    this.#liveBytes += size;
    return at;
  }

  free(at: number): void {
    const size = this.#live.get(at);
    if (size === undefined) throw new Error(`wasm-attention internal: free of unknown block ${at}`);
    this.#live.delete(at);
    this.#liveBytes -= size;
    this.#release({ at, size });
  }

  /** Allocations released together by `release()`. */
  scope(): Scope {
    return new Scope(this);
  }

  f32(at: number, length: number): Float32Array {
    return new Float32Array(this.#memory.buffer, at, length);
  }

  #takeFree(size: number): number | undefined {
    const i = this.#free.findIndex((b) => b.size >= size);
    if (i < 0) return undefined;
    const block = this.#free[i];
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
      const pages = Math.ceil((end - have) / PAGE);
      if (have / PAGE + pages > MAX_PAGES) {
        throw new OutOfMemoryError(`cannot allocate ${size} bytes: WebAssembly memory would exceed 4 GiB (${have} bytes in use)`);
      }
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
    while (i < free.length && free[i].at < block.at) i++;
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
  put(data: Float32Array): number {
    const at = this.alloc(data.byteLength);
    this.#heap.f32(at, data.length).set(data);
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
