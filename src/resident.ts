import { type CacheDtype, cacheFormat, dtypeOf, readFormat } from "./cache.js";
import { KvFormat } from "./enums.js";
import { storedBytes } from "./heads.js";
import { ArgumentError, ShapeError, StateError } from "./errors.js";
import { runtime } from "./init.js";
import type { Scope } from "./memory.js";
import {
  type ResidentInfo,
  type Snapshot,
  type Tensor,
  checkOptions,
  checkShape,
  describe,
  fmt,
  honest,
  registerResident,
  size,
  typedKind,
} from "./tensor.js";

/**
 * A float32 tensor that lives in WebAssembly memory: passing it to a function copies nothing.
 * `data` is a view of that memory, made anew whenever the memory has grown, so read `t.data` when
 * you need it rather than keeping the array across calls. `dispose()` frees it (a resident tensor
 * that is garbage-collected without it is freed too, where the runtime has FinalizationRegistry);
 * using it afterwards, or after `shutdown()`, is a StateError.
 *
 * With `dtype` "f16" or "q8" its rows (the last dimension) are stored as a KV cache stores them
 * (halves; int8 with one float32 scale per row): keys and values for scaledDotProductAttention,
 * which reads them in place, as decoding does. Such a tensor's `data` is a float32 copy of what it
 * holds (made on each read), and other functions do not take it (ArgumentError).
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
    const { heap, at, shape, format, rowBytes } = this.#live();
    if (format !== KvFormat.F32) {
      // a copy of the stored rows, widened
      const E = shape.at(-1) ?? 1;
      const n = size(shape);
      if (n === 0) return new Float32Array(0);
      const s = heap.scope();
      try {
        const dst = s.alloc(4 * n);
        runtime().kernels.kv_widen(dst, E, at, at + E, rowBytes, n / E, E, format);
        return heap.f32(dst, n).slice();
      } finally {
        s.release();
      }
    }
    if (!this.#view || this.#view.buffer !== heap.memory.buffer) this.#view = heap.f32(at, size(shape));
    return this.#view;
  }

  /** How the values are stored: "f32", or "f16" / "q8" rows (see the class). */
  get dtype(): CacheDtype {
    return dtypeOf(this.#info.format);
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

/**
 * A tensor allocated in WebAssembly memory, filled with `data` if given (else zeros); `dtype`
 * "f16" or "q8" stores its rows as a KV cache does (see ResidentTensor).
 */
export function residentTensor(shape: readonly number[], data?: ArrayLike<number>, options: { dtype?: CacheDtype } = {}): ResidentTensor {
  const { heap, kernels: K } = runtime();
  const { format } = cacheFormat("residentTensor dtype", checkOptions("residentTensor options", options, ["dtype"]).dtype);
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
  if (format === KvFormat.F32) {
    heap.need("residentTensor", 4 * n);
    const at = heap.alloc(4 * n);
    const view = heap.f32(at, n);
    if (values) view.set(values);
    else view.fill(0);
    return new ResidentTensor({ heap, at, shape: dims, format, rowBytes: 4 * (dims.at(-1) ?? 1) });
  }
  if (dims.length === 0)
    throw new ShapeError(`residentTensor shape: expected at least one dimension (rows of the last) for dtype "${dtypeOf(format)}", got []`);
  const E = dims.at(-1)!;
  const rows = E === 0 ? 0 : n / E;
  // kv_row_bytes(1, E, format), counted here: the kernel's 32 bits would wrap for rows of 2^31 halves
  const rowBytes = storedBytes(format) * E + (format === KvFormat.Q8 ? 4 : 0);
  const bytes = Math.max(1, rows * rowBytes);
  heap.need("residentTensor", bytes + (values ? 4 * n : 0));
  const at = heap.alloc(bytes);
  // zeros store as zero bytes in both formats (a half 0, an int8 0 with scale 0)
  new Uint8Array(heap.memory.buffer, at, bytes).fill(0);
  let nonFinite = 0;
  if (values && n) {
    const s = heap.scope();
    try {
      nonFinite = K.kv_store_rows(at, rowBytes, s.put(values), E, rows, 1, E, format);
    } catch (error) {
      // the copy of the values could not be made (out of memory): nothing stays allocated
      heap.free(at);
      throw error;
    } finally {
      s.release();
    }
  }
  return new ResidentTensor({ heap, at, shape: dims, format: readFormat(format, nonFinite > 0), rowBytes });
}

/** @internal the address of `t` in WebAssembly memory: its own if resident, else a copy made in `scope` */
export function place(scope: Scope, t: Snapshot): number {
  return t.address ?? scope.put(t.data);
}
