import { ArgumentError, OutOfMemoryError, ShapeError, StateError, WasmAttentionError } from "./errors.js";
import { Heap } from "./memory.js";
import { KvFormat } from "./enums.js";

/** A row-major, contiguous float32 tensor. */
export interface Tensor {
  data: Float32Array;
  shape: readonly number[];
}

/** A row-major boolean tensor: 1 = true, 0 = false. */
export interface BoolTensor {
  data: Uint8Array;
  shape: readonly number[];
}

/** Most dimensions a shape may have. */
const MAX_RANK = 64;
/** Largest dimension: the kernels take sizes as i32. */
export const MAX_DIM = 2 ** 31 - 1;

// The intrinsic getters of %TypedArray%.prototype: they read the array's internal slots, so a
// subclass or a Proxy cannot make them lie (and they throw or answer undefined for anything else).
const TYPED = Object.getPrototypeOf(Int8Array.prototype) as object;
const intrinsic = (name: string | symbol) => Object.getOwnPropertyDescriptor(TYPED, name)!.get!;
const typedTag = intrinsic(Symbol.toStringTag) as (this: unknown) => string | undefined;
const typedLength = intrinsic("length") as (this: unknown) => number;
const typedBuffer = intrinsic("buffer") as (this: unknown) => ArrayBufferLike;
const typedOffset = intrinsic("byteOffset") as (this: unknown) => number;

/** The typed array kind of `x` ("Float32Array", ...) read from its internal slots, or undefined. */
export function typedKind(x: unknown): string | undefined {
  return typedTag.call(x);
}

/**
 * An honest view on the bytes of the typed array `x`, made from its internal slots (never from
 * its getters): a view of our own WebAssembly memory (which a call may grow, and so detach) is copied.
 */
export function honest<T extends ArrayBufferView>(x: unknown): T {
  const make = (globalThis as unknown as Record<string, new (b: ArrayBufferLike, o: number, n: number) => T>)[typedKind(x)!]!;
  const view = new make(typedBuffer.call(x), typedOffset.call(x), typedLength.call(x));
  return Heap.owns(view.buffer) ? ((view as unknown as Float32Array).slice() as unknown as T) : view;
}

/** A tensor that lives in WebAssembly memory (ResidentTensor), as the library knows it. */
export interface ResidentInfo {
  heap: Heap;
  /** its address; 0 once disposed */
  at: number;
  shape: readonly number[];
  /** how its rows (of the last dimension) are stored: float32, or as a KV cache stores them (f16, q8) */
  format: KvFormat;
  /** bytes of one stored row */
  rowBytes: number;
}

// genuine resident tensors, keyed by the object itself: a Proxy or a look-alike is not one
const residents = new WeakMap<object, ResidentInfo>();

/** @internal */
export function registerResident(t: object, info: ResidentInfo): void {
  residents.set(t, info);
}

/**
 * A caller's tensor as read once and checked: the shape a frozen copy, the data an honest view
 * (never the caller's object), and for a resident tensor its address. Use only this afterwards.
 */
export interface Snapshot<D = Float32Array> {
  readonly data: D;
  readonly shape: readonly number[];
  /** the address in WebAssembly memory of a resident tensor (read in place); undefined otherwise */
  readonly address?: number | undefined;
  /** a resident tensor stored as f16 or q8 rows (checkStored only): its format and row bytes */
  readonly stored?: { format: KvFormat; rowBytes: number } | undefined;
}

/**
 * Wraps data and a shape as a tensor after checking that they agree. A `Float32Array` is used as
 * it is (not copied); a `Uint8Array` or an array of booleans makes a boolean mask; any other
 * array of numbers is copied into a new `Float32Array`.
 */
export function tensor(data: Uint8Array | readonly boolean[], shape: readonly number[]): BoolTensor;
export function tensor(data: Float32Array | ArrayLike<number>, shape: readonly number[]): Tensor;
export function tensor(data: Float32Array | Uint8Array | ArrayLike<number> | readonly boolean[], shape: readonly number[]): Tensor | BoolTensor {
  const dims = checkShape("tensor shape", shape);
  const kind = typedKind(data);
  let typed: Float32Array | Uint8Array;
  if (kind === "Float32Array" || kind === "Uint8Array") typed = data as Float32Array | Uint8Array;
  else if (Array.isArray(data) && data.length > 0 && data.every((x) => typeof x === "boolean")) typed = Uint8Array.from(data as boolean[], Number);
  else if (Array.isArray(data) && data.some((x) => typeof x === "boolean")) {
    throw new ArgumentError("tensor data: expected numbers, or booleans for a mask (or a Uint8Array of 0 and 1), got an Array that mixes both");
  } else {
    try {
      typed = Float32Array.from(data as ArrayLike<number>);
    } catch (cause) {
      throw new ArgumentError(`tensor data: expected a Float32Array, a Uint8Array or an array of numbers, got ${describe(data)} (${String(cause)})`);
    }
  }
  const n = kind ? typedLength.call(typed) : typed.length;
  if (n !== size(dims)) throw new ShapeError(`tensor data: expected ${size(dims)} elements (shape ${fmt(dims)}), got ${n}`);
  return { data: typed, shape: dims } as Tensor | BoolTensor;
}

/**
 * A new Float32Array of n elements for a call's result, made before any kernel runs: a failure to
 * allocate it is an OutOfMemoryError then, not after the work.
 */
export function resultArray(what: string, n: number): Float32Array {
  try {
    return new Float32Array(n);
  } catch (cause) {
    throw new OutOfMemoryError(`${what}: cannot allocate its result of ${n} floats in JavaScript memory (${String(cause)})`);
  }
}

/** Number of elements of a shape. */
export function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** `[2, 3]`, for messages. */
export function fmt(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** Reads a float32 tensor once: a Snapshot whose data fits its shape. */
export function checkTensor(name: string, x: unknown): Snapshot {
  return snapshot(name, x, ["Float32Array"]) as Snapshot;
}

/**
 * Reads a float32 tensor once, or a resident one stored as f16 or q8 rows (its `stored` set, its
 * `data` not to be read): for the functions that read stored rows as they are (attention's keys
 * and values).
 */
export function checkStored(name: string, x: unknown): Snapshot {
  return snapshot(name, x, ["Float32Array"], true) as Snapshot;
}

/** Reads a float32 or boolean (Uint8Array) tensor once. */
export function checkMask(name: string, x: unknown): Snapshot<Float32Array | Uint8Array> {
  return snapshot(name, x, ["Float32Array", "Uint8Array"]);
}

/**
 * Reads the options object once: its own enumerable properties copied into a plain object (so
 * getters run once, now), unknown names rejected, naming the ones that are known.
 */
export function checkOptions<T extends object>(what: string, options: T | undefined, known: readonly string[]): T {
  if (options === undefined) return {} as T;
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new ArgumentError(`${what}: expected an object, got ${describe(options)}`);
  }
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new ArgumentError(`${what}: expected only ${known.map((k) => `"${k}"`).join(", ")}, got unknown option "${key}"`);
    }
    copy[key] = (options as Record<string, unknown>)[key];
  }
  return copy as T;
}

export function describe(x: unknown): string {
  if (x === null || x === undefined) return String(x);
  if (Array.isArray(x)) return "an Array";
  if (typeof x === "object") return typedKind(x) ?? tag(x);
  if (typeof x === "function") return "a function";
  return `${typeof x} ${String(x)}`;
}

function snapshot(name: string, x: unknown, kinds: readonly string[], storedOk = false): Snapshot<Float32Array | Uint8Array> {
  const resident = typeof x === "object" && x !== null ? residents.get(x) : undefined;
  if (resident) {
    resident.heap.assertOpen(name);
    if (!resident.at) throw new StateError(`${name}: the ResidentTensor was disposed: it can no longer be used`);
    const { heap, shape, format, rowBytes } = resident;
    if (format !== KvFormat.F32 && !storedOk) {
      throw new ArgumentError(
        `${name}: expected a float32 tensor, got a ResidentTensor of dtype "${format === KvFormat.Q8 ? "q8" : "f16"}" (only scaledDotProductAttention's key and value read stored rows)`,
      );
    }
    const n = size(shape);
    // read when used: the memory may grow (and detach an older view) during a call, and a later
    // argument's getter may dispose this tensor before then
    const live = () => {
      if (!resident.at) throw new StateError(`${name}: the ResidentTensor was disposed during the call`);
      return resident.at;
    };
    return {
      get data() {
        if (format !== KvFormat.F32) throw new Error("wasm-attention internal: the float32 data of stored rows");
        return heap.f32(live(), n);
      },
      get address() {
        return live();
      },
      shape,
      stored: format === KvFormat.F32 ? undefined : { format, rowBytes },
    };
  }
  const expected = kinds.join(" or ");
  try {
    return plainSnapshot(name, x, kinds, expected);
  } catch (error) {
    // a getter that throws (a Proxy, or an object made from ResidentTensor's prototype that is not one)
    if (error instanceof WasmAttentionError) throw error;
    throw new ArgumentError(`${name}: expected a tensor { data: ${expected}, shape }, got ${describe(x)} whose properties throw (${String(error)})`);
  }
}

// snapshot() of an object that is not a genuine resident tensor
function plainSnapshot(name: string, x: unknown, kinds: readonly string[], expected: string): Snapshot<Float32Array | Uint8Array> {
  if (x === null || typeof x !== "object" || !("data" in x) || !("shape" in x || "dims" in x)) {
    throw new ArgumentError(`${name}: expected a tensor { data: ${expected}, shape }, got ${describe(x)}`);
  }
  const t = x as { data?: unknown; shape?: unknown; dims?: unknown; type?: unknown };
  // an onnxruntime-web or transformers.js Tensor: { data, dims, type }
  const foreign = !("shape" in x);
  const type = foreign ? t.type : undefined;
  if (foreign && type !== undefined && !(type === "float32" || (type === "bool" && kinds.includes("Uint8Array")))) {
    throw new ArgumentError(
      `${name}.type: expected "float32"${kinds.includes("Uint8Array") ? ' or "bool"' : ""} (an onnxruntime-web / transformers.js tensor of Float32Array data), got ${describe(type)}`,
    );
  }
  const data = t.data;
  const kind = typedKind(data);
  if (kind === undefined || !kinds.includes(kind)) {
    throw new ArgumentError(
      `${name}: expected data of type ${expected}, got ${data === undefined ? "no data" : describe(data)}${kind === undefined && tag(data).endsWith("Array") ? " (not a genuine typed array)" : ""}`,
    );
  }
  const shape = foreign ? checkShape(`${name}.dims`, t.dims) : checkShape(`${name}.shape`, t.shape);
  const view = honest<Float32Array | Uint8Array>(data);
  if (view.length !== size(shape)) throw new ShapeError(`${name}.data: expected ${size(shape)} elements (shape ${fmt(shape)}), got ${view.length}`);
  return { data: view, shape };
}

/**
 * Reads a shape once into a frozen copy of non-negative integers. A dimension past the kernels'
 * i32 can only belong to an empty tensor (data are at most 2^32 floats): such work is empty and
 * returns before any kernel.
 */
export function checkShape(name: string, shape: unknown): readonly number[] {
  if (!Array.isArray(shape)) throw new ArgumentError(`${name}: expected an array of dimensions, got ${describe(shape)}`);
  const rank = (shape as unknown[]).length;
  if (!Number.isInteger(rank) || rank > MAX_RANK) throw new ShapeError(`${name}: expected at most ${MAX_RANK} dimensions, got ${String(rank)}`);
  const dims: unknown[] = Array.from({ length: rank }, (_, i) => (shape as unknown[])[i]);
  dims.forEach((d, i) => {
    if (typeof d !== "number" || !Number.isInteger(d) || d < 0) {
      throw new ShapeError(`${name}[${i}]: expected a non-negative integer, got ${describe(d)}`);
    }
    if (d > Number.MAX_SAFE_INTEGER) throw new ShapeError(`${name}[${i}]: expected an integer up to 2^53, got ${describe(d)}`);
  });
  return Object.freeze(dims as number[]);
}

export function tag(x: unknown): string {
  return Object.prototype.toString.call(x).slice(8, -1);
}
