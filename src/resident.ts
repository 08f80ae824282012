import { ShapeError, StateError } from "./errors.js";
import { runtime } from "./init.js";
import type { Heap, Scope } from "./memory.js";
import { type Tensor, fmt, size } from "./tensor.js";

const forgotten = new FinalizationRegistry<{ heap: Heap; at: number }>(({ heap, at }) => heap.free(at));

/**
 * A float32 tensor that lives in WebAssembly memory: passing it to a function copies nothing.
 * `data` is a view of that memory, made anew whenever the memory has grown, so read `t.data` when
 * you need it rather than keeping the array across calls. `dispose()` frees it (a resident tensor
 * that is garbage-collected without it is freed too); using it afterwards is a StateError.
 */
export class ResidentTensor implements Tensor {
  readonly shape: readonly number[];
  readonly #heap: Heap;
  readonly #length: number;
  #at: number;
  #view: Float32Array | null = null;

  /** @internal use residentTensor() */
  constructor(heap: Heap, at: number, shape: readonly number[]) {
    this.#heap = heap;
    this.#at = at;
    this.shape = [...shape];
    this.#length = size(shape);
    forgotten.register(this, { heap, at }, this);
  }

  get data(): Float32Array {
    if (!this.#at) throw new StateError("ResidentTensor was disposed: it can no longer be used");
    if (!this.#view || this.#view.buffer !== this.#heap.memory.buffer) this.#view = this.#heap.f32(this.#at, this.#length);
    return this.#view;
  }

  /** @internal its address in WebAssembly memory */
  get address(): number {
    if (!this.#at) throw new StateError("ResidentTensor was disposed: it can no longer be used");
    return this.#at;
  }

  dispose(): void {
    if (!this.#at) return;
    forgotten.unregister(this);
    this.#heap.free(this.#at);
    this.#at = 0;
    this.#view = null;
  }
}

/** A tensor allocated in WebAssembly memory, filled with `data` if given (else zeros). */
export function residentTensor(shape: readonly number[], data?: ArrayLike<number>): ResidentTensor {
  const { heap } = runtime();
  const dims = [...shape];
  if (!dims.every((d) => Number.isInteger(d) && d >= 0)) throw new ShapeError(`residentTensor: shape ${fmt(dims)} must be non-negative integers`);
  const n = size(dims);
  if (data !== undefined && data.length !== n) throw new ShapeError(`residentTensor: shape ${fmt(dims)} holds ${n} elements but data has ${data.length}`);
  const at = heap.alloc(4 * n);
  const view = heap.f32(at, n);
  if (data) view.set(data);
  else view.fill(0);
  return new ResidentTensor(heap, at, dims);
}

/** @internal the address of `t` in WebAssembly memory: its own if resident, else a copy made in `scope` */
export function place(scope: Scope, t: Tensor): number {
  return t instanceof ResidentTensor ? t.address : scope.put(t.data);
}
