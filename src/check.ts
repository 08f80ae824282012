// Checks of scalar arguments. Every message about a bad argument has one style,
// `<name>: expected <what>, got <value>`: <name> the argument, after the function or class it
// belongs to unless it is a plain argument of the call ("Linear inFeatures", "RMSNorm.forward x",
// "generate topK", "rope.theta", "alibi[2]", "query"), <value> as describe() tells it
// ("number 0", "string tanh", "Float64Array") or a shape ("[2, 3]"). Integers must fit the
// kernels' i32 arguments; floats must be finite as float32, the type the kernels take.
import { ArgumentError } from "./errors.js";
import { MAX_DIM, describe } from "./tensor.js";

/** An integer from `min` to `max` (default 2^31 - 1, the kernels' i32). */
export function int(name: string, x: unknown, min: number, max = MAX_DIM): number {
  if (typeof x !== "number" || !Number.isInteger(x) || x < min || x > max) {
    const range =
      max === MAX_DIM
        ? min === 0
          ? "a non-negative integer"
          : min === 1
            ? "a positive integer"
            : `an integer >= ${min}`
        : `an integer from ${min} to ${max}`;
    throw new ArgumentError(
      `${name}: expected ${range}${max === MAX_DIM && x !== undefined && typeof x === "number" && x > max ? " below 2^31" : ""}, got ${describe(x)}`,
    );
  }
  return x;
}

/** `x` as a float32, which must be finite (and > 0 with `positive`, >= 0 with `nonNegative`). */
export function f32(name: string, x: unknown, sign: "any" | "positive" | "nonNegative" = "any"): number {
  const want = sign === "positive" ? "a finite number > 0" : sign === "nonNegative" ? "a finite number >= 0" : "a finite number";
  if (typeof x !== "number" || !Number.isFinite(x)) throw new ArgumentError(`${name}: expected ${want}, got ${describe(x)}`);
  const y = Math.fround(x);
  if (!Number.isFinite(y)) throw new ArgumentError(`${name}: expected ${want} within float32's range (|x| < 3.4e38), got ${describe(x)}`);
  if ((sign === "positive" && !(y > 0)) || (sign === "nonNegative" && y < 0)) {
    throw new ArgumentError(`${name}: expected ${want}${x > 0 ? " that float32 can hold (it rounds to 0)" : ""}, got ${describe(x)}`);
  }
  return y;
}

/** A boolean, or `fallback` when undefined. */
export function bool(name: string, x: unknown, fallback: boolean): boolean {
  if (x === undefined) return fallback;
  if (typeof x !== "boolean") throw new ArgumentError(`${name}: expected a boolean, got ${describe(x)}`);
  return x;
}

/** One of `choices`, or `fallback` when undefined (without a fallback, undefined is an error too). */
export function oneOf<T extends string>(name: string, x: unknown, choices: readonly T[], fallback?: T): T {
  if (x === undefined && fallback !== undefined) return fallback;
  if (typeof x !== "string" || !choices.includes(x as T)) {
    throw new ArgumentError(`${name}: expected ${choices.map((c) => `"${c}"`).join(" or ")}, got ${describe(x)}`);
  }
  return x as T;
}

/** A positive integer option of a module, named `<owner> <name>` ("Linear inFeatures"). */
export function positiveInt(owner: string, name: string, x: unknown): number {
  if (typeof x !== "number" || !Number.isInteger(x) || x < 1) {
    throw new ArgumentError(`${owner} ${name}: expected a positive integer, got ${describe(x)}`);
  }
  return x;
}

/** A boolean option of a module, named `<owner> <name>`, or `fallback` when undefined. */
export function optionBool(owner: string, name: string, x: unknown, fallback: boolean): boolean {
  return bool(`${owner} ${name}`, x, fallback);
}
