import { ArgumentError, ShapeError } from "./errors.js";

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

/**
 * Wraps data and a shape as a tensor after checking that they agree. A `Float32Array` is used as
 * it is (not copied); a `Uint8Array` makes a boolean mask; any other array of numbers is copied
 * into a new `Float32Array`.
 */
export function tensor(data: Uint8Array, shape: readonly number[]): BoolTensor;
export function tensor(data: Float32Array | ArrayLike<number>, shape: readonly number[]): Tensor;
export function tensor(data: Float32Array | Uint8Array | ArrayLike<number>, shape: readonly number[]): Tensor | BoolTensor {
  const dims = checkShape("shape", shape);
  const typed = tag(data) === "Float32Array" || tag(data) === "Uint8Array" ? data : Float32Array.from(data);
  if (typed.length !== size(dims)) {
    throw new ShapeError(`tensor: shape ${fmt(dims)} holds ${size(dims)} elements but data has ${typed.length}`);
  }
  return { data: typed, shape: dims } as Tensor | BoolTensor;
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

/** Checks that `x` is a float32 tensor whose data fits its shape. */
export function checkTensor(name: string, x: unknown): Tensor {
  return checkTyped(name, x, ["Float32Array"]) as Tensor;
}

/** Checks that `x` is a float32 tensor or a boolean (Uint8Array) tensor whose data fits its shape. */
export function checkMask(name: string, x: unknown): Tensor | BoolTensor {
  return checkTyped(name, x, ["Float32Array", "Uint8Array"]) as Tensor | BoolTensor;
}

/** Rejects option names that are not in `known`, naming the ones that are. */
export function checkOptions(what: string, options: unknown, known: readonly string[]): void {
  if (options === undefined) return;
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new ArgumentError(`${what}: expected an object, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new ArgumentError(`${what}: unknown option "${key}"; known options are ${known.map((k) => `"${k}"`).join(", ")}`);
    }
  }
}

export function describe(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return "an Array";
  if (typeof x === "object") return tag(x);
  return `${typeof x} ${String(x)}`;
}

function checkTyped(name: string, x: unknown, dtypes: readonly string[]): Tensor | BoolTensor {
  const expected = dtypes.join(" or ");
  if (x === null || typeof x !== "object" || !("data" in x) || !("shape" in x)) {
    throw new ArgumentError(`${name}: expected a tensor { data: ${expected}, shape }, got ${describe(x)}`);
  }
  const t = x as { data: unknown; shape: unknown };
  if (!dtypes.includes(tag(t.data))) {
    throw new ArgumentError(`${name}: expected data of type ${expected}, got ${describe(t.data)}`);
  }
  const shape = checkShape(`${name}.shape`, t.shape);
  const data = t.data as Float32Array | Uint8Array;
  if (data.length !== size(shape)) {
    throw new ShapeError(`${name}: shape ${fmt(shape)} holds ${size(shape)} elements but data has ${data.length}`);
  }
  return t as Tensor | BoolTensor;
}

function checkShape(name: string, shape: unknown): readonly number[] {
  if (!Array.isArray(shape)) throw new ArgumentError(`${name}: expected an array of dimensions, got ${describe(shape)}`);
  for (const [i, d] of shape.entries()) {
    if (typeof d !== "number" || !Number.isInteger(d) || d < 0) {
      throw new ShapeError(`${name}: dimension ${i} must be a non-negative integer, got ${String(d)}`);
    }
  }
  return shape as number[];
}

export function tag(x: unknown): string {
  return Object.prototype.toString.call(x).slice(8, -1);
}
