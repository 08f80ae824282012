import { ArgumentError, ShapeError, StateError } from "./errors.js";
import { runtime } from "./init.js";
import type { Scope } from "./memory.js";
import { type ResidentInfo, type Snapshot, type Tensor, checkShape, describe, fmt, honest, registerResident, size, typedKind } from "./tensor.js";

/**
 * A float32 tensor that lives in WebAssembly memory: passing it to a function copies nothing.
 * `data` is a view of that memory, made anew whenever the memory has grown, so read `t.data` when
 * you need it rather than keeping the array across calls. `dispose()` frees it (a resident tensor
 * that is garbage-collected without it is freed too, where the runtime has FinalizationRegistry);
 * using it afterwards, or after `shutdown()`, is a StateError.
 */
export class ResidentTensor implements Tensor {
  readonly shape: readonly number[];
  readonly #info: ResidentInfo;
  #view: Float32Array | null = null;

  /** @internal use residentTensor() */
  constructor(info: ResidentInfo) {
    this.#info = info;
    this.shape = info.shape;
    registerResident(this, info);
    info.heap.track(this, () => (info.at ? [info.at] : []));
  }

  get data(): Float32Array {
    const { heap, at, shape } = this.#live();
    if (!this.#view || this.#view.buffer !== heap.memory.buffer) this.#view = heap.f32(at, size(shape));
    return this.#view;
  }

  /** The same as dispose(), for `using` (explicit resource management): freed at the end of the block. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  dispose(): void {
    const info = this.#info;
    if (!info.at || info.heap.closed) return;
    info.heap.untrack(this);
    info.heap.free(info.at);
    info.at = 0;
    this.#view = null;
  }

  #live(): ResidentInfo {
    this.#info.heap.assertOpen("ResidentTensor");
    if (!this.#info.at) throw new StateError("ResidentTensor was disposed: it can no longer be used");
    return this.#info;
  }
}

/** A tensor allocated in WebAssembly memory, filled with `data` if given (else zeros). */
export function residentTensor(shape: readonly number[], data?: ArrayLike<number>): ResidentTensor {
  const { heap } = runtime();
  let dims: readonly number[];
  try {
    dims = checkShape("residentTensor shape", shape);
  } catch (e) {
    // a shape that is not an array is a ShapeError here too, with the same message
    throw new ShapeError((e as Error).message);
  }
  const n = size(dims);
  // read the caller's data once: a typed array through its internal length, else a plain copy
  let values: Float32Array | undefined;
  try {
    values = data === undefined ? undefined : typedKind(data) ? Float32Array.from(honest<Float32Array>(data)) : Float32Array.from(data);
  } catch (cause) {
    throw new ArgumentError(`residentTensor data: expected an array of numbers, got ${describe(data)} (${String(cause)})`);
  }
  if (values !== undefined && values.length !== n)
    throw new ShapeError(`residentTensor data: expected ${n} elements (shape ${fmt(dims)}), got ${values.length}`);
  heap.need("residentTensor", 4 * n);
  const at = heap.alloc(4 * n);
  const view = heap.f32(at, n);
  if (values) view.set(values);
  else view.fill(0);
  return new ResidentTensor({ heap, at, shape: dims });
}

/** @internal the address of `t` in WebAssembly memory: its own if resident, else a copy made in `scope` */
export function place(scope: Scope, t: Snapshot): number {
  return t.address ?? scope.put(t.data);
}
